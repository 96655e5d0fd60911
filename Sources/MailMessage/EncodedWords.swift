/// RFC 2047 encoded-words (`=?charset?B|Q?text?=`) in header values, decoded
/// to Unicode so header rules match what a person reads. Charsets:
/// UTF-8, US-ASCII, ISO-8859-1 and Windows-1252; an encoded-word in any
/// other charset is left as written (never dropped, so it stays visible).
public enum EncodedWords {
    public static func decode(_ value: String) -> String {
        guard Self.mayContainEncodedWord(value) else { return value }
        var out = ""
        var rest = Substring(value)
        var lastWasEncoded = false
        var pendingSpace = ""
        while let start = rest.range(of: "=?") {
            let before = rest[..<start.lowerBound]
            if let (decoded, end) = decodeWord(rest[start.lowerBound...]) {
                // RFC 2047 §6.2: white space between adjacent encoded-words is dropped.
                if !(lastWasEncoded && before.allSatisfy({ $0 == " " || $0 == "\t" })) { out += pendingSpace + before }
                pendingSpace = ""
                out += decoded
                lastWasEncoded = true
                rest = rest[end...]
            } else {
                out += pendingSpace + before + "=?"
                pendingSpace = ""
                lastWasEncoded = false
                rest = rest[start.upperBound...]
            }
        }
        out += rest
        return out
    }

    /// A fast scan for "=?" so plain headers cost one pass over their bytes.
    static func mayContainEncodedWord(_ s: String) -> Bool {
        if let found = s.utf8.withContiguousStorageIfAvailable({ buf -> Bool in
            var i = 0
            let n = buf.count
            while i + 1 < n {
                if buf[i] == 61 && buf[i + 1] == 63 { return true }
                i += 1
            }
            return false
        }) {
            return found
        }
        var prev: UInt8 = 0
        for b in s.utf8 {
            if prev == 61 && b == 63 { return true }
            prev = b
        }
        return false
    }

    /// Each encoded-word of `value`, in order: its encoding ("b" or "q") and
    /// its bytes before any charset conversion (a filter asks whether the
    /// encoding hid anything that needed it).
    public static func rawWords(_ value: String) -> [(encoding: Character, bytes: [UInt8])] {
        guard Self.mayContainEncodedWord(value) else { return [] }
        var out: [(encoding: Character, bytes: [UInt8])] = []
        var rest = Substring(value)
        while let start = rest.range(of: "=?") {
            if let word = rawWord(rest[start.lowerBound...]) {
                out.append((word.encoding, word.bytes))
                rest = rest[word.end...]
            } else {
                rest = rest[start.upperBound...]
            }
        }
        return out
    }

    /// Decodes one `=?cs?e?text?=` at the start of `s`; returns the text and where it ends.
    static func decodeWord(_ s: Substring) -> (String, Substring.Index)? {
        guard let word = rawWord(s), let str = convert(word.bytes, charset: word.charset) else { return nil }
        return (str, word.end)
    }

    /// One `=?cs?e?text?=` at the start of `s`, its payload undone but not converted from its charset.
    static func rawWord(_ s: Substring) -> (charset: String, encoding: Character, bytes: [UInt8], end: Substring.Index)? {
        let parts = s.dropFirst(2)
        guard let q1 = parts.firstIndex(of: "?") else { return nil }
        var charset = parts[..<q1].lowercased()
        if let star = charset.firstIndex(of: "*") { charset = String(charset[..<star]) }  // RFC 2231 language
        let afterCharset = parts[parts.index(after: q1)...]
        guard let enc = afterCharset.first, afterCharset.dropFirst().first == "?" else { return nil }
        let text = afterCharset.dropFirst(2)
        guard let end = text.range(of: "?=") else { return nil }
        let payload = text[..<end.lowerBound]
        guard !payload.contains(" ") else { return nil }
        let bytes: [UInt8]?
        switch enc {
        case "B", "b": bytes = base64(payload)
        case "Q", "q": bytes = quoted(payload)
        default: return nil
        }
        guard let b = bytes else { return nil }
        return (charset, Character(enc.lowercased()), b, end.upperBound)
    }

    static func base64(_ s: Substring) -> [UInt8]? {
        var stream = Base64Stream()
        let out = stream.feed(ArraySlice(s.utf8))
        return stream.bad ? nil : out
    }

    static func quoted(_ s: Substring) -> [UInt8]? {
        unescapeHex(Array(s.utf8), escape: UInt8(ascii: "="), underscoreIsSpace: true)
    }

    /// Undoes `escape` + two hex digits (`=41` in Q words, `%41` in RFC 2231
    /// values); anything else is kept as written.
    static func unescapeHex(_ u: [UInt8], escape: UInt8, underscoreIsSpace: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(u.count)
        var i = 0
        while i < u.count {
            if underscoreIsSpace && u[i] == UInt8(ascii: "_") {
                out.append(32)
            } else if u[i] == escape, i + 2 < u.count, let h = hex(u[i + 1]), let l = hex(u[i + 2]) {
                out.append(h << 4 | l)
                i += 2
            } else {
                out.append(u[i])
            }
            i += 1
        }
        return out
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - 48
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - 55
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - 87
        default: return nil
        }
    }

    /// Windows-1252's 0x80–0x9F; elsewhere it equals ISO-8859-1.
    static let cp1252: [UInt32] = [0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
                                   0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                   0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178]

    static func convert(_ b: [UInt8], charset: String) -> String? {
        switch charset {
        case "utf-8", "utf8", "us-ascii", "ascii":
            return String(decoding: b, as: UTF8.self)
        case "iso-8859-1", "latin1", "iso8859-1":
            return String(String.UnicodeScalarView(b.map { Unicode.Scalar($0) }))
        case "windows-1252", "cp1252":
            return String(String.UnicodeScalarView(b.map { $0 >= 0x80 && $0 <= 0x9F ? Unicode.Scalar(cp1252[Int($0 - 0x80)])! : Unicode.Scalar($0) }))
        default:
            return nil
        }
    }
}

extension Substring {
    func range(of needle: String) -> Range<Index>? {
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
