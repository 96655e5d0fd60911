extension String {
    /// Without surrounding white space (Unicode's, as Foundation's
    /// whitespacesAndNewlines). Here and not through Foundation, whose
    /// bridged trimming was a twentieth of the heuristics and most of
    /// parsing a DMARC record.
    public var trimmed: String { self[...].trimmed }

    /// Without the surrounding characters `drop` says are to go.
    public func trimming(_ drop: (Unicode.Scalar) -> Bool) -> String { self[...].trimming(drop) }
    public func trimming(_ set: Set<Character>) -> String { self[...].trimming(set) }
}

extension Substring {
    public var trimmed: String { trimming { $0.isASCII ? ($0 == " " || ($0.value >= 9 && $0.value <= 13)) : $0.properties.isWhitespace } }

    public func trimming(_ set: Set<Character>) -> String { trimming { set.contains(Character($0)) } }

    public func trimming(_ drop: (Unicode.Scalar) -> Bool) -> String {
        let s = unicodeScalars
        guard let first = s.firstIndex(where: { !drop($0) }), let last = s.lastIndex(where: { !drop($0) }) else { return "" }
        return String(self[first...last])
    }
}

extension StringProtocol {
    /// Whether `needle` occurs, byte for byte (case counts). Here because
    /// `contains` with a string argument resolves to Foundation's bridged
    /// range(of:), which cost the heuristics a tenth of their time.
    /// As Foundation's, the empty string is in nothing.
    public func containsBytes(_ needle: String) -> Bool {
        let n = Array(needle.utf8)
        if let found = utf8.withContiguousStorageIfAvailable({ ByteSearch.firstIndex(of: n, in: $0) != nil }) { return found }
        return ByteSearch.firstIndex(of: n, in: Array(utf8)) != nil
    }
}
