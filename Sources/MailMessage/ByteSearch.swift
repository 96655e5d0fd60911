/// Where a byte string first occurs in another: the heuristics look for
/// macro stream names in attachments, the scorer clients for the end of an
/// HTTP header. A first-byte scan, then a compare.
public enum ByteSearch {
    public static func firstIndex(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard let first = needle.first, hay.count >= needle.count else { return nil }
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
