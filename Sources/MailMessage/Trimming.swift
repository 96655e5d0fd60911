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
    public func containsBytes(_ needle: String) -> Bool {
        let n = Array(needle.utf8)
        if let found = utf8.withContiguousStorageIfAvailable({ Self.find(n, in: $0) }) { return found }
        return Array(utf8).withUnsafeBufferPointer { Self.find(n, in: $0) }
    }

    private static func find(_ n: [UInt8], in h: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let first = n.first else { return false }  // as Foundation: the empty string is in nothing
        guard h.count >= n.count else { return false }
        var i = 0
        while i <= h.count - n.count {
            if h[i] == first {
                var k = 1
                while k < n.count && h[i + k] == n[k] { k += 1 }
                if k == n.count { return true }
            }
            i += 1
        }
        return false
    }
}
