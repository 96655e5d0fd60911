/// Where a byte string first occurs in another: the heuristics look for
/// macro stream names in attachments, the scorer clients for the end of an
/// HTTP header, a regular expression for the literals it needs. A
/// first-byte scan, then a compare.
public enum ByteSearch {
    public static func firstIndex(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        hay.withUnsafeBufferPointer { firstIndex(of: needle, in: $0) }
    }

    /// The same over raw bytes. `foldingASCII`: the hay's ASCII capitals
    /// compare as lower case (the needle is then lower case).
    public static func firstIndex(of needle: [UInt8], in hay: UnsafeBufferPointer<UInt8>, foldingASCII: Bool = false) -> Int? {
        guard let first = needle.first, hay.count >= needle.count else { return nil }
        @inline(__always) func at(_ i: Int) -> UInt8 { foldingASCII && hay[i] >= 65 && hay[i] <= 90 ? hay[i] | 0x20 : hay[i] }
        return needle.withUnsafeBufferPointer { n in
            var i = 0
            let last = hay.count - n.count
            while i <= last {
                if at(i) == first {
                    var k = 1
                    while k < n.count && at(i + k) == n[k] { k += 1 }
                    if k == n.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}
