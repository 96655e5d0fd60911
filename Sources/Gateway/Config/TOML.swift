/// A small TOML reader that keeps the line and column of every key and value,
/// so that configuration errors can name `FILE:LINE:COL` the way `mxgate check`
/// promises. It covers what mxgate.toml uses: tables, dotted and quoted keys,
/// arrays of tables, basic and literal strings, integers, floats, booleans,
/// arrays and inline tables. Multi-line strings and dates are refused with a
/// clear message rather than misread.
public struct TOMLPosition: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var description: String { "\(line):\(column)" }
}

public indirect enum TOMLValue: Sendable {
    case string(String)
    case integer(Int)
    case float(Double)
    case bool(Bool)
    case array([TOMLNode])
    case table(TOMLTable)

    public var typeName: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a number"
        case .bool: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}

public struct TOMLNode: Sendable {
    public var value: TOMLValue
    public var position: TOMLPosition
}

/// Keys in file order, each with where it was written.
public struct TOMLTable: Sendable {
    public private(set) var keys: [String] = []
    public private(set) var entries: [String: TOMLNode] = [:]
    public var keyPositions: [String: TOMLPosition] = [:]
    /// True for tables created implicitly by a dotted header, which may later be defined.
    var implicit = false

    public subscript(key: String) -> TOMLNode? {
        get { entries[key] }
        set {
            if entries[key] == nil { keys.append(key) }
            entries[key] = newValue
        }
    }
}

public struct TOMLError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var position: TOMLPosition
    public var description: String { "\(position): \(message)" }
}

public struct TOMLParser {
    private let bytes: [UInt8]
    private var i = 0
    private var line = 1
    private var lineStart = 0

    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var p = TOMLParser(bytes: Array(text.utf8))
        return try p.document()
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private var position: TOMLPosition { TOMLPosition(line: line, column: i - lineStart + 1) }

    private func fail(_ message: String) -> TOMLError { TOMLError(message: message, position: position) }

    private var atEnd: Bool { i >= bytes.count }
    private var current: UInt8 { bytes[i] }

    private mutating func skipWhitespace() {
        while !atEnd, current == 32 || current == 9 { i += 1 }
    }

    private mutating func skipComment() {
        if !atEnd, current == UInt8(ascii: "#") {
            while !atEnd, current != 10 { i += 1 }
        }
    }

    private mutating func newline() -> Bool {
        if !atEnd, current == 13, i + 1 < bytes.count, bytes[i + 1] == 10 { i += 1 }
        if !atEnd, current == 10 {
            i += 1
            line += 1
            lineStart = i
            return true
        }
        return false
    }

    /// Skips blank lines, comments and (inside arrays) newlines.
    private mutating func skipTrivia() {
        while true {
            skipWhitespace()
            skipComment()
            if !newline() { return }
        }
    }

    private mutating func endOfLine() throws(TOMLError) {
        skipWhitespace()
        skipComment()
        if atEnd { return }
        if !newline() { throw fail("expected the end of the line") }
    }

    private mutating func document() throws(TOMLError) -> TOMLTable {
        var root = TOMLTable()
        var path: [String] = []
        var definedTables = Set<[String]>()
        while true {
            skipTrivia()
            if atEnd { return root }
            if current == UInt8(ascii: "[") {
                let pos = position
                let isArray = i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "[")
                i += isArray ? 2 : 1
                skipWhitespace()
                let keyPath = try key()
                skipWhitespace()
                guard !atEnd, current == UInt8(ascii: "]") else { throw fail("expected ']' to close the table header") }
                i += 1
                if isArray {
                    guard !atEnd, current == UInt8(ascii: "]") else { throw fail("expected ']]' to close the array of tables") }
                    i += 1
                }
                try endOfLine()
                if isArray {
                    try appendTableToArray(&root, keyPath.map(\.0), at: pos)
                    path = keyPath.map(\.0) + ["\u{0}last"]
                } else {
                    let names = keyPath.map(\.0)
                    if definedTables.contains(names) { throw TOMLError(message: "table [\(names.joined(separator: "."))] defined twice", position: pos) }
                    definedTables.insert(names)
                    try ensureTable(&root, names, at: pos, define: true)
                    path = names
                }
            } else {
                let keyPath = try key()
                skipWhitespace()
                guard !atEnd, current == UInt8(ascii: "=") else { throw fail("expected '=' after the key") }
                i += 1
                skipWhitespace()
                let node = try value()
                try endOfLine()
                try insert(&root, path, keyPath, node)
            }
        }
    }

    // key = simple-key / dotted-key
    private mutating func key() throws(TOMLError) -> [(String, TOMLPosition)] {
        var parts: [(String, TOMLPosition)] = []
        repeat {
            skipWhitespace()
            let pos = position
            guard !atEnd else { throw fail("expected a key") }
            if current == UInt8(ascii: "\"") {
                parts.append((try basicString(), pos))
            } else if current == UInt8(ascii: "'") {
                parts.append((try literalString(), pos))
            } else {
                let start = i
                while !atEnd, Self.isBareKeyChar(current) { i += 1 }
                guard i > start else { throw fail("expected a key") }
                parts.append((String(decoding: bytes[start..<i], as: UTF8.self), pos))
            }
            skipWhitespace()
            if !atEnd, current == UInt8(ascii: ".") { i += 1; continue }
            return parts
        } while true
    }

    private static func isBareKeyChar(_ b: UInt8) -> Bool {
        (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b == 95 || b == 45
    }

    private mutating func value() throws(TOMLError) -> TOMLNode {
        let pos = position
        guard !atEnd else { throw fail("expected a value") }
        switch current {
        case UInt8(ascii: "\""):
            if i + 2 < bytes.count, bytes[i + 1] == 34, bytes[i + 2] == 34 { throw fail("multi-line strings are not supported in mxgate.toml") }
            return TOMLNode(value: .string(try basicString()), position: pos)
        case UInt8(ascii: "'"):
            if i + 2 < bytes.count, bytes[i + 1] == 39, bytes[i + 2] == 39 { throw fail("multi-line strings are not supported in mxgate.toml") }
            return TOMLNode(value: .string(try literalString()), position: pos)
        case UInt8(ascii: "["):
            i += 1
            var items: [TOMLNode] = []
            while true {
                skipTrivia()
                guard !atEnd else { throw fail("unterminated array") }
                if current == UInt8(ascii: "]") { i += 1; break }
                items.append(try value())
                skipTrivia()
                guard !atEnd else { throw fail("unterminated array") }
                if current == UInt8(ascii: ",") { i += 1; continue }
                if current == UInt8(ascii: "]") { i += 1; break }
                throw fail("expected ',' or ']' in array")
            }
            return TOMLNode(value: .array(items), position: pos)
        case UInt8(ascii: "{"):
            i += 1
            var table = TOMLTable()
            skipWhitespace()
            if !atEnd, current == UInt8(ascii: "}") { i += 1; return TOMLNode(value: .table(table), position: pos) }
            while true {
                skipWhitespace()
                let k = try key()
                skipWhitespace()
                guard !atEnd, current == UInt8(ascii: "=") else { throw fail("expected '=' in inline table") }
                i += 1
                skipWhitespace()
                let v = try value()
                try insert(&table, [], k, v)
                skipWhitespace()
                guard !atEnd else { throw fail("unterminated inline table") }
                if current == UInt8(ascii: ",") { i += 1; continue }
                if current == UInt8(ascii: "}") { i += 1; break }
                throw fail("expected ',' or '}' in inline table")
            }
            return TOMLNode(value: .table(table), position: pos)
        default:
            let start = i
            while !atEnd, !(current == 32 || current == 9 || current == 10 || current == 13 || current == UInt8(ascii: ",")
                            || current == UInt8(ascii: "]") || current == UInt8(ascii: "}") || current == UInt8(ascii: "#")) { i += 1 }
            let word = String(decoding: bytes[start..<i], as: UTF8.self)
            if word == "true" { return TOMLNode(value: .bool(true), position: pos) }
            if word == "false" { return TOMLNode(value: .bool(false), position: pos) }
            let digits = word.replacingOccurrences(of: "_", with: "")
            if let n = Int(digits) { return TOMLNode(value: .integer(n), position: pos) }
            if digits.hasPrefix("0x"), let n = Int(digits.dropFirst(2), radix: 16) { return TOMLNode(value: .integer(n), position: pos) }
            if digits.hasPrefix("0o"), let n = Int(digits.dropFirst(2), radix: 8) { return TOMLNode(value: .integer(n), position: pos) }
            if let d = Double(digits), digits.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
                return TOMLNode(value: .float(d), position: pos)
            }
            if word.isEmpty { throw TOMLError(message: "expected a value", position: pos) }
            throw TOMLError(message: "invalid value '\(word)' (strings need quotes)", position: pos)
        }
    }

    private mutating func basicString() throws(TOMLError) -> String {
        i += 1
        var out: [UInt8] = []
        while !atEnd {
            let b = current
            if b == 34 { i += 1; return String(decoding: out, as: UTF8.self) }
            if b == 10 || b == 13 { throw fail("unterminated string") }
            if b == 92 {
                i += 1
                guard !atEnd else { break }
                switch current {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "\""): out.append(34)
                case UInt8(ascii: "\\"): out.append(92)
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let len = current == UInt8(ascii: "u") ? 4 : 8
                    guard i + len < bytes.count,
                          let code = UInt32(String(decoding: bytes[(i + 1)...(i + len)], as: UTF8.self), radix: 16),
                          let scalar = Unicode.Scalar(code) else { throw fail("bad unicode escape") }
                    out += Array(String(Character(scalar)).utf8)
                    i += len
                default:
                    throw fail("unknown escape sequence")
                }
                i += 1
                continue
            }
            out.append(b)
            i += 1
        }
        throw fail("unterminated string")
    }

    private mutating func literalString() throws(TOMLError) -> String {
        i += 1
        let start = i
        while !atEnd, current != 39 {
            if current == 10 { throw fail("unterminated string") }
            i += 1
        }
        guard !atEnd else { throw fail("unterminated string") }
        let s = String(decoding: bytes[start..<i], as: UTF8.self)
        i += 1
        return s
    }

    // MARK: building the tree

    private func ensureTable(_ root: inout TOMLTable, _ names: [String], at pos: TOMLPosition, define: Bool) throws(TOMLError) {
        guard let first = names.first else { return }
        var child: TOMLTable
        if let existing = root[first] {
            switch existing.value {
            case .table(let t): child = t
            case .array(let items) where names.count > 1:
                // [[a]] then [a.b]: descend into the last table of the array.
                guard let last = items.last, case .table(var t) = last.value else {
                    throw TOMLError(message: "key '\(first)' is already \(existing.value.typeName)", position: pos)
                }
                try ensureTable(&t, Array(names.dropFirst()), at: pos, define: define)
                var newItems = items
                newItems[newItems.count - 1] = TOMLNode(value: .table(t), position: last.position)
                root[first] = TOMLNode(value: .array(newItems), position: existing.position)
                return
            default:
                throw TOMLError(message: "key '\(first)' is already \(existing.value.typeName)", position: pos)
            }
        } else {
            child = TOMLTable()
            child.implicit = names.count > 1
            root.keyPositions[first] = pos
        }
        if names.count > 1 {
            try ensureTable(&child, Array(names.dropFirst()), at: pos, define: define)
        } else if define {
            child.implicit = false
        }
        root[first] = TOMLNode(value: .table(child), position: root[first]?.position ?? pos)
    }

    private func appendTableToArray(_ root: inout TOMLTable, _ names: [String], at pos: TOMLPosition) throws(TOMLError) {
        if names.count > 1 {
            let head = names[0]
            try ensureTable(&root, [head], at: pos, define: false)
            guard case .table(var t) = root[head]!.value else { return }
            try appendTableToArray(&t, Array(names.dropFirst()), at: pos)
            root[head] = TOMLNode(value: .table(t), position: root[head]!.position)
            return
        }
        let name = names[0]
        var items: [TOMLNode] = []
        if let existing = root[name] {
            guard case .array(let a) = existing.value else {
                throw TOMLError(message: "key '\(name)' is already \(existing.value.typeName)", position: pos)
            }
            items = a
        } else {
            root.keyPositions[name] = pos
        }
        items.append(TOMLNode(value: .table(TOMLTable()), position: pos))
        root[name] = TOMLNode(value: .array(items), position: root[name]?.position ?? pos)
    }

    /// Inserts `key = value` under the current table path. A path component
    /// "\0last" means the last element of an array of tables.
    private func insert(_ table: inout TOMLTable, _ path: [String], _ key: [(String, TOMLPosition)], _ node: TOMLNode) throws(TOMLError) {
        if let head = path.first {
            if path.count > 1, path[1] == "\u{0}last" {
                guard case .array(var items) = table[head]!.value, case .table(var t) = items[items.count - 1].value else { return }
                try insert(&t, Array(path.dropFirst(2)), key, node)
                items[items.count - 1] = TOMLNode(value: .table(t), position: items[items.count - 1].position)
                table[head] = TOMLNode(value: .array(items), position: table[head]!.position)
                return
            }
            guard let existing = table[head] else { return }
            switch existing.value {
            case .table(var t):
                try insert(&t, Array(path.dropFirst()), key, node)
                table[head] = TOMLNode(value: .table(t), position: existing.position)
            case .array(var items):
                guard case .table(var t) = items[items.count - 1].value else { return }
                try insert(&t, Array(path.dropFirst()), key, node)
                items[items.count - 1] = TOMLNode(value: .table(t), position: items[items.count - 1].position)
                table[head] = TOMLNode(value: .array(items), position: existing.position)
            default:
                return
            }
            return
        }
        let (name, pos) = key[0]
        if key.count > 1 {
            var child = TOMLTable()
            if let existing = table[name] {
                guard case .table(let t) = existing.value else {
                    throw TOMLError(message: "key '\(name)' is already \(existing.value.typeName)", position: pos)
                }
                child = t
            } else {
                table.keyPositions[name] = pos
            }
            try insert(&child, [], Array(key.dropFirst()), node)
            table[name] = TOMLNode(value: .table(child), position: table[name]?.position ?? pos)
            return
        }
        if table[name] != nil {
            throw TOMLError(message: "key '\(name)' defined twice", position: pos)
        }
        table.keyPositions[name] = pos
        table[name] = node
    }
}
