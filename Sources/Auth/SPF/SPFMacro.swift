import Foundation
import Policy

/// A macro-string (RFC 7208 §7): literal text and %{…} expansions, parsed
/// when the record is, so a bad macro is a syntax error (permerror).
struct MacroString: Equatable, Sendable {
    enum Part: Equatable, Sendable {
        case literal(String)
        /// %{letter digits r delimiters}; an uppercase letter URL-escapes the value.
        case macro(letter: Character, escape: Bool, digits: Int?, reverse: Bool, delimiters: [Character])
    }

    var parts: [Part] = []

    static let letters: Set<Character> = ["s", "l", "o", "d", "i", "p", "h", "v"]
    /// Only in the text of an explanation (§7.2).
    static let explanationLetters: Set<Character> = ["c", "r", "t"]
    static let delimiters: Set<Character> = [".", "-", "+", ",", "/", "_", "="]

    static func parse(_ text: String, explanation: Bool) throws(SPFRecord.SyntaxError) -> MacroString {
        var m = MacroString()
        var literal = ""
        var i = text.startIndex
        func flush() {
            if !literal.isEmpty { m.parts.append(.literal(literal)) }
            literal = ""
        }
        while i < text.endIndex {
            let c = text[i]
            if c != "%" {
                // macro-literal = %x21-24 / %x26-7E; an explanation may also hold spaces.
                guard let a = c.asciiValue, (a >= 0x21 && a <= 0x7E) || (explanation && a == 0x20) else {
                    throw SPFRecord.SyntaxError("character not allowed in a macro-string: \(text.debugDescription)")
                }
                literal.append(c)
                i = text.index(after: i)
                continue
            }
            let n = text.index(after: i)
            guard n < text.endIndex else { throw SPFRecord.SyntaxError("lone % at the end: \(text)") }
            switch text[n] {
            case "%": literal.append("%"); i = text.index(after: n)
            case "_": literal.append(" "); i = text.index(after: n)
            case "-": literal.append("%20"); i = text.index(after: n)
            case "{":
                guard let close = text[n...].firstIndex(of: "}") else { throw SPFRecord.SyntaxError("unclosed macro: \(text)") }
                var body = Substring(text[text.index(after: n)..<close])
                guard let letter = body.first?.lowercased().first,
                      letters.contains(letter) || (explanation && explanationLetters.contains(letter)) else {
                    throw SPFRecord.SyntaxError("unknown macro letter in: \(text)")
                }
                let escape = body.first!.isUppercase
                body.removeFirst()
                var digitText = ""
                while let d = body.first, d.isASCII, d.isNumber { digitText.append(d); body.removeFirst() }
                var digits: Int?
                if !digitText.isEmpty {
                    guard let v = Int(digitText.prefix(4)), v > 0 else { throw SPFRecord.SyntaxError("macro keeps no parts: \(text)") }
                    digits = min(v, 128)
                }
                var reverse = false
                if body.first == "r" || body.first == "R" { reverse = true; body.removeFirst() }
                guard body.allSatisfy({ delimiters.contains($0) }) else { throw SPFRecord.SyntaxError("bad macro delimiter in: \(text)") }
                flush()
                m.parts.append(.macro(letter: letter, escape: escape, digits: digits, reverse: reverse, delimiters: Array(body)))
                i = text.index(after: close)
            default:
                throw SPFRecord.SyntaxError("bad % escape in: \(text)")
            }
        }
        flush()
        return m
    }

    /// Expands with `value` giving each letter's text.
    func expand(_ value: (Character) async -> String) async -> String {
        var out = ""
        for p in parts {
            switch p {
            case .literal(let s):
                out += s
            case .macro(let letter, let escape, let digits, let reverse, let delims):
                let v = await value(letter)
                let seps = delims.isEmpty ? ["."] : delims
                var pieces = v.split(omittingEmptySubsequences: false, whereSeparator: { seps.contains($0) }).map(String.init)
                if reverse { pieces.reverse() }
                if let digits, digits < pieces.count { pieces = Array(pieces.suffix(digits)) }
                let joined = pieces.joined(separator: ".")
                out += escape ? Self.urlEscape(joined) : joined
            }
        }
        return out
    }

    /// RFC 3986 unreserved characters stay; everything else is %XX.
    static func urlEscape(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(UnicodeScalar(b))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) { out.append(c) } else { out += String(format: "%%%02X", b) }
        }
        return out
    }

    /// A name longer than 253 octets loses labels from the left until it fits (§7.3).
    static func truncated(_ name: String) -> String {
        var n = name
        while n.utf8.count > 253, let dot = n.firstIndex(of: ".") { n = String(n[n.index(after: dot)...]) }
        return n
    }
}
