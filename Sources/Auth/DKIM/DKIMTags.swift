/// A DKIM tag=value list (RFC 6376 §3.2): the DKIM-Signature field's value
/// and a key record's text. White space around tags and values is ignored;
/// a duplicate tag makes the list invalid. Worked on as bytes: Foundation's
/// trimming cost a third of a signature's verification.
struct DKIMTags {
    /// In the order given: a list has a dozen tags at most, so a search
    /// through them costs less than hashing each name into a dictionary.
    var values: [(name: String, value: String)] = []

    static func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 13 || b == 10 }

    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = s.startIndex, hi = s.endIndex
        while lo < hi && isSpace(s[lo]) { lo += 1 }
        while hi > lo && isSpace(s[hi - 1]) { hi -= 1 }
        return s[lo..<hi]
    }

    init?(_ text: String) {
        let bytes = Array(text.utf8)
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: ";") { end += 1 }
            let part = Self.trimmed(bytes[start..<end])
            start = end + 1
            if part.isEmpty { continue }
            guard let eq = part.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            let name = String(decoding: Self.trimmed(part[part.startIndex..<eq]), as: UTF8.self)
            let value = String(decoding: Self.trimmed(part[(eq + 1)...]), as: UTF8.self)
            guard !name.isEmpty, self[name] == nil else { return nil }
            values.append((name, value))
        }
    }

    subscript(_ name: String) -> String? { values.first { $0.name == name }?.value }

    /// A colon-separated value (h=, t=) as trimmed, lower-case items.
    static func list(_ value: String) -> [String] {
        Array(value.utf8).split(separator: UInt8(ascii: ":")).map { String(decoding: trimmed($0), as: UTF8.self).lowercased() }
    }

    /// A value with all folding white space removed (b=, bh=, p=).
    func compact(_ name: String) -> String? {
        guard var v = self[name] else { return nil }
        return v.withUTF8 { bytes in
            String(unsafeUninitializedCapacity: bytes.count) { out in
                var n = 0
                for b in bytes where !Self.isSpace(b) { out[n] = b; n += 1 }
                return n
            }
        }
    }
}
