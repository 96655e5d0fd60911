/// The header section of an RFC 5322 message, parsed just far enough to read
/// trace and identity fields (Message-ID, Subject). Full MIME walking lives
/// beside it; this part never needs more than the header bytes.
public struct HeaderBlock: Sendable {
    public struct Field: Sendable, Hashable {
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }

        public var name: String
        /// The unfolded value without the leading space.
        public var value: String
    }

    public private(set) var fields: [Field] = []
    /// True when the header section ended with an empty line inside the given bytes.
    public private(set) var complete = false

    /// Parses fields from the start of a CRLF message until the empty line.
    public init(_ bytes: some Collection<UInt8>) {
        var current: (String, [UInt8])?
        var lineStart = bytes.startIndex
        var idx = bytes.startIndex
        func flush() {
            if let (name, value) = current {
                var v = String(decoding: value, as: UTF8.self)
                while v.first == " " || v.first == "\t" { v.removeFirst() }
                while v.last == " " || v.last == "\t" { v.removeLast() }
                fields.append(Field(name: name, value: v))
            }
            current = nil
        }
        while idx != bytes.endIndex {
            guard bytes[idx] == 10 else { idx = bytes.index(after: idx); continue }
            var line = Array(bytes[lineStart..<idx])
            if line.last == 13 { line.removeLast() }
            idx = bytes.index(after: idx)
            lineStart = idx
            if line.isEmpty {
                flush()
                complete = true
                return
            }
            if line[0] == 32 || line[0] == 9 {
                current?.1 += line  // folded continuation (RFC 5322 §2.2.3)
                continue
            }
            flush()
            if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                let name = String(decoding: line[..<colon], as: UTF8.self).trimmingSpaces()
                current = (name, Array(line[(colon + 1)...]))
            }
        }
        flush()
    }

    public func first(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    /// The fields with RFC 2047 encoded-words decoded, for header rules.
    public var decodedFields: [Field] {
        fields.map { Field(name: $0.name, value: EncodedWords.decode($0.value)) }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }

    func caseInsensitiveEquals(_ other: String) -> Bool {
        self.utf8.count == other.utf8.count && self.lowercased() == other.lowercased()
    }
}
