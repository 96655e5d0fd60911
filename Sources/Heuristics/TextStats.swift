/// What the body and style signals count in the decoded text, gathered in
/// one pass over its UTF-8 bytes (walking Characters cost milliseconds a
/// message): visible characters, words and capitalised words, runs of
/// "!!", invisible characters, the first word mixing Latin with look-alike
/// letters, 8-bit letters, and the text in lower case (ASCII and Latin-1's letters) for phrases.
struct TextStats: Sendable {
    var visible = 0
    var words = 0
    var capsWords = 0
    /// The longest run of consecutive words in capitals ("DEEP DOWN YOU KNOW THAT MILLIONAIRES…").
    var capsRun = 0
    var bangRuns = 0
    var invisible = 0
    var mixedWord: String?
    /// Of the first 4,000 characters: how many, and how many are Latin-1 letters (U+00C0–U+00FF).
    var sampled = 0
    var latin1Letters = 0
    /// The first 32 KB, ASCII letters lower-cased, every run of white space one
    /// space (a phrase broken across lines still reads as one), other bytes as they are.
    var lower: [UInt8] = []

    init(_ text: String) {
        let limit = 64 * 1024
        // Copied from the contiguous bytes: the UTF-8 view's prefix copied byte by byte, a tenth of the heuristics.
        var source = text
        var bytes = source.withUTF8 { Array(UnsafeBufferPointer(rebasing: $0.prefix(limit))) }
        let head = bytes.prefix(32 * 1024)
        lower = [UInt8](unsafeUninitializedCapacity: head.count) { out, n in
            head.withUnsafeBufferPointer { head in
                var space = false
                var i = 0
                while i < head.count {
                    let b = head[i]
                    // Invisible characters left out: "wa\u{E0139}llet" reads as wallet to every phrase.
                    if b >= 0xC2, let skip = TextStats.invisibleLength(head, i) {
                        i += skip
                        continue
                    }
                    // À to Þ (C3 80 to C3 9E, not ×) lower-cased too: "NOTIFICAÇÃO" reads as notificação.
                    if b == 0xC3, i + 1 < head.count, head[i + 1] >= 0x80, head[i + 1] <= 0x9E, head[i + 1] != 0x97 {
                        out[n] = b
                        out[n + 1] = head[i + 1] | 0x20
                        n += 2
                        i += 2
                        space = false
                        continue
                    }
                    i += 1
                    let isSpace = b == 32 || b == 10 || b == 13 || b == 9
                    if isSpace && space { continue }
                    space = isSpace
                    out[n] = isSpace ? 32 : b >= 65 && b <= 90 ? b | 0x20 : b
                    n += 1
                }
            }
        }
        bytes.append(32)
        bytes.withUnsafeBufferPointer { count($0) }
    }

    /// The counting pass, over a raw buffer (bounds checks and the array's
    /// uniqueness checks were half its cost). `bytes` ends with a space.
    private mutating func count(_ bytes: UnsafeBufferPointer<UInt8>) {
        var wordStart = 0
        var letters = 0, upper = 0, latin = false, lookAlike = false, bang = false
        var run = 0
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            var scalar: UInt32 = UInt32(b)
            var len = 1
            if b >= 0xC0 {
                (scalar, len) = TextStats.scalar(bytes, i)
            } else if b >= 0x80 {
                i += 1
                continue
            }
            if sampled < 4000 {
                sampled += 1
                if (0xC0...0xFF).contains(scalar) { latin1Letters += 1 }
            }
            let space = b == 32 || b == 10 || b == 13 || b == 9
            if space {
                if i > wordStart {
                    if letters >= 3 {
                        words += 1
                        if upper == letters { capsWords += 1 }
                    }
                    if letters >= 2 && upper == letters {
                        run += 1
                        capsRun = max(capsRun, run)
                    } else {
                        run = 0
                    }
                    if latin && lookAlike && mixedWord == nil {
                        mixedWord = String(decoding: bytes[wordStart..<min(i, wordStart + 60)], as: UTF8.self)
                    }
                    if bang { bangRuns += 1 }
                }
                wordStart = i + 1
                letters = 0; upper = 0; latin = false; lookAlike = false; bang = false
            } else {
                visible += 1
                switch scalar {
                case 65...90: letters += 1; upper += 1; latin = true
                case 97...122: letters += 1; latin = true
                case 33: if i > wordStart && bytes[i - 1] == 33 { bang = true }
                case 0..<0x80: break  // no other ASCII character counts (and none is invisible)
                case 0x400...0x4FF, 0x370...0x3FF: lookAlike = true
                case _ where TextStats.isInvisible(scalar): invisible += 1
                default: break
                }
            }
            i += len
        }
    }

    /// Characters that show nothing and split a word for a filter while the
    /// reader sees it whole: zero-width spaces and joiners, the soft hyphen,
    /// word joiner and invisible operators, the Hangul fillers, and the tag
    /// and variation-selector blocks (phishing since 2024 writes "wa\u{E0139}llet"
    /// with U+E0100–U+E01EF, which no font draws). U+FE0F, which turns a
    /// character into an emoji, is ordinary text and not counted.
    static func isInvisible(_ s: UInt32) -> Bool {
        switch s {
        case 0xAD, 0x34F, 0x115F, 0x1160, 0x180E, 0x200B...0x200D, 0x2060...0x2064, 0x3164, 0xFE00...0xFE0D, 0xFEFF, 0xFFA0,
             0xE0000...0xE007F, 0xE0100...0xE01EF:
            return true
        default:
            return false
        }
    }

    /// The scalar a UTF-8 lead byte (0xC0 and up) at `i` starts, and the
    /// sequence's length; a sequence cut short by the end of `t` keeps the
    /// bits it has.
    static func scalar(_ t: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
        let b = t[i]
        let len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2
        var scalar = UInt32(b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07))
        for k in 1..<len where i + k < t.count { scalar = scalar << 6 | UInt32(t[i + k] & 0x3F) }
        return (scalar, len)
    }

    /// The length of the UTF-8 sequence at `i` when it encodes an invisible character.
    static func invisibleLength(_ t: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int? {
        let (value, len) = scalar(t, i)
        return i + len <= t.count && isInvisible(value) ? len : nil
    }

    /// How many invisible characters `s` holds (a subject or a display name).
    static func invisibleCount(_ s: String) -> Int {
        s.unicodeScalars.reduce(0) { $0 + (isInvisible($1.value) ? 1 : 0) }
    }

    /// The indices of the phrases of `set` the text holds, each once, in one pass.
    func matches(_ set: PhraseSet) -> Set<Int> { set.matches(in: lower) }

    /// Every occurrence of a phrase of `set` in `lower`, in one pass: the
    /// phrase's index and where in `lower` it ends.
    func forEachMatch(_ set: PhraseSet, _ body: (_ phrase: Int, _ end: Int) -> Void) {
        set.forEachMatch(in: lower, body)
    }
}

/// Phrases to look for, made once: the phrases grouped by their first two
/// bytes (bucketStart[key] ..< bucketStart[key + 1] in `order`), so each
/// position of the text costs one table read, and only the phrases that
/// start with its two bytes are compared (every phrase at every hit cost
/// 0.7 ms a message once there were 250 of them).
public struct PhraseSet: Sendable {
    public let phrases: [String]
    /// Every phrase's bytes, one after another.
    let flat: [UInt8]
    /// In bucket order: the phrase's index, where its bytes start in `flat`, and how many.
    let entries: [(phrase: Int, offset: Int, count: Int)]
    let bucketStart: [Int32]
    /// One bit per two-byte key that starts a phrase shorter than four
    /// bytes: 8 KB that stay in the first-level cache, where the 256 KB of
    /// bucketStart do not.
    let present: [UInt64]
    /// One bit per hash of the first four bytes of the other phrases: in
    /// English text most two-byte keys ("th", "yo") start some phrase, and
    /// comparing the phrases of those buckets was most of the search's time.
    let present4: [UInt64]

    /// A 16-bit hash of the four bytes at `i`.
    @inline(__always) static func hash4(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        let w = UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
        return Int((w &* 0x9E37_79B1) >> 16)
    }

    /// Phrases shorter than two bytes are left out (`phrases` holds those kept).
    public init(_ phrases: [String]) {
        let kept = phrases.filter { $0.utf8.count >= 2 }
        let all = kept.map { Array($0.utf8) }
        let key = { (b: [UInt8]) -> Int in Int(b[0]) << 8 | Int(b[1]) }
        self.phrases = kept
        var offsets: [Int] = []
        var flat: [UInt8] = []
        for b in all { offsets.append(flat.count); flat += b }
        self.flat = flat
        let order = all.indices.sorted { (key(all[$0]), $0) < (key(all[$1]), $1) }
        entries = order.map { ($0, offsets[$0], all[$0].count) }
        var start = [Int32](repeating: 0, count: 65537)
        var bits = [UInt64](repeating: 0, count: 1024)
        var bits4 = [UInt64](repeating: 0, count: 1024)
        for b in all {
            start[key(b) + 1] += 1
            if b.count >= 4 {
                let h = b.withUnsafeBufferPointer { Self.hash4($0, 0) }
                bits4[h >> 6] |= 1 << UInt64(h & 63)
            } else {
                bits[key(b) >> 6] |= 1 << UInt64(key(b) & 63)
            }
        }
        present = bits
        present4 = bits4
        for k in 1...65536 { start[k] += start[k - 1] }
        bucketStart = start
    }
}

extension PhraseSet {
    /// The indices of the phrases `hay` holds, each once, in one pass.
    public func matches(in hay: [UInt8]) -> Set<Int> {
        var found = Set<Int>()
        forEachMatch(in: hay) { n, _ in found.insert(n) }
        return found
    }

    /// Every occurrence of a phrase in `hay`, in one pass: the phrase's
    /// index and where in `hay` it ends.
    public func forEachMatch(in hay: [UInt8], _ body: (_ phrase: Int, _ end: Int) -> Void) {
        // Raw buffers throughout: an array slice per position of the text was a retain and a release each.
        hay.withUnsafeBufferPointer { hay in
            guard hay.count >= 2 else { return }
            present.withUnsafeBufferPointer { present in
              present4.withUnsafeBufferPointer { present4 in
                bucketStart.withUnsafeBufferPointer { start in
                    entries.withUnsafeBufferPointer { entries in
                        flat.withUnsafeBufferPointer { flat in
                            for i in 0..<(hay.count - 1) {
                                let key = Int(hay[i]) << 8 | Int(hay[i + 1])
                                // A phrase of four bytes or more can start here only if its first four hash here.
                                var candidate = present[key >> 6] & (1 << UInt64(key & 63)) != 0
                                if !candidate && i + 4 <= hay.count {
                                    let h = Self.hash4(hay, i)
                                    candidate = present4[h >> 6] & (1 << UInt64(h & 63)) != 0
                                }
                                guard candidate else { continue }
                                for e in Int(start[key])..<Int(start[key + 1]) {
                                    let (n, offset, count) = entries[e]
                                    guard i + count <= hay.count else { continue }
                                    var k = 2
                                    while k < count && hay[i + k] == flat[offset + k] { k += 1 }
                                    if k == count { body(n, i + count) }
                                }
                            }
                        }
                    }
                }
              }
            }
        }
    }
}
