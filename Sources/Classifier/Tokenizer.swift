/// Turns text into hashed word and word-pair features, in one pass over
/// its UTF-8 bytes, with no string made per word (a 10 KB message must
/// cost well under 100 µs).
///
/// What spammers do to dodge word filters is undone here rather than
/// learnt word by word: case is folded, Cyrillic and Greek letters that
/// look Latin are read as the Latin letter (and the word is marked as
/// mixing scripts, itself a strong sign), fullwidth forms are read as
/// ASCII, zero-width characters and soft hyphens inside a word are
/// dropped, long digit runs become their shape, and overlong tokens are
/// cut to a prefix and a length class.
struct Tokenizer {
    /// Feature hashes, several per word; the caller masks and dedupes them.
    var out: [UInt64] = []
    /// A word mixed Latin with look-alike letters of another script.
    var mixedScript = false

    /// Adds every word of `text` in namespace `ns`, and adjacent pairs in
    /// `pairs` when given. Stops after `maxWords` words.
    mutating func add(_ text: String, ns: UInt64, pairs: UInt64? = nil, maxWords: Int = 8000) {
        var text = text
        text.withUTF8 { add(bytes: $0, ns: ns, pairs: pairs, maxWords: maxWords) }
    }

    mutating func add(bytes: UnsafeBufferPointer<UInt8>, ns: UInt64, pairs: UInt64?, maxWords: Int) {
        var word = Word()
        var previous: UInt64 = 0
        var words = 0
        var i = 0
        let n = bytes.count
        func emit(_ w: inout Word, _ me: inout Tokenizer) {
            defer { w = Word() }
            guard w.length > 0 else { return }
            if w.length == 1 && !w.nonASCII { return }  // single letters and digits carry nothing
            if w.latin && w.foreign { me.mixedScript = true }
            let h = w.finalHash()
            me.out.append(mix(h ^ ns))
            if let pairs, previous != 0 { me.out.append(mix(previous &* 0x9E37_79B9_7F4A_7C15 ^ h ^ pairs)) }
            previous = h
            words += 1
        }
        while i < n && words < maxWords {
            let b = bytes[i]
            if b < 0x80 {
                i += 1
                if b >= 97 && b <= 122 { word.letter(b); continue }
                if b >= 65 && b <= 90 { word.letter(b | 0x20); continue }
                if b >= 48 && b <= 57 { word.digit(b); continue }
                if (b == 39 || b == 45 || b == 46 || b == 95) && word.length > 0 && i < n && Self.isWordByte(bytes[i]) {
                    word.byte(b)  // don't, e-mail, 3.5, user_name: one word
                    continue
                }
                emit(&word, &self)
                if b == 36 || b == 33 { word.byte(b); word.length = 2; emit(&word, &self) }  // "$" and "!" count
                continue
            }
            // Decode one UTF-8 scalar.
            var scalar: UInt32 = 0
            var len = 1
            if b & 0xE0 == 0xC0 { len = 2; scalar = UInt32(b & 0x1F) } else if b & 0xF0 == 0xE0 { len = 3; scalar = UInt32(b & 0x0F) } else if b & 0xF8 == 0xF0 { len = 4; scalar = UInt32(b & 0x07) } else { i += 1; emit(&word, &self); continue }
            guard i + len <= n else { break }
            for k in 1..<len { scalar = scalar << 6 | UInt32(bytes[i + k] & 0x3F) }
            let start = i
            i += len
            switch scalar {
            case 0x200B...0x200D, 0x2060, 0xFEFF, 0x00AD, 0x034F:
                continue  // invisible inside a word
            case 0xFF01...0xFF5E:
                let a = UInt8(scalar - 0xFF01 + 0x21)
                if (a >= 65 && a <= 90) || (a >= 97 && a <= 122) { word.byte(a | 0x20); word.foreign = true } else if a >= 48 && a <= 57 { word.digit(a) } else { emit(&word, &self) }
                continue
            default:
                break
            }
            if let latin = Self.lookAlike(scalar) {
                word.byte(latin)
                word.foreign = true
                continue
            }
            if Self.isLetter(scalar) {
                // Latin-1 capitals fold to small; other scripts are hashed as they are.
                if (0xC0...0xDE).contains(scalar) && scalar != 0xD7 {
                    word.scalar(scalar + 0x20)
                } else {
                    for k in start..<(start + len) { word.byte(bytes[k]) }
                    word.nonASCII = true
                }
                // Ideographs have no spaces between words: each is a word.
                if (0x3040...0x9FFF).contains(scalar) || (0xAC00...0xD7AF).contains(scalar) { emit(&word, &self) }
                continue
            }
            emit(&word, &self)
        }
        emit(&word, &self)
    }

    /// Adds every run of four characters of `text` (case folded, look-alikes
    /// read as Latin, anything not a letter, a digit, "$" or "!" as one
    /// space): what a word split cannot see, "v1agra" and "viagra" sharing
    /// "agra", "FREE!!!" and "free!" sharing "ree!". For short texts (the
    /// subject): measured on the corpus it helped there and not on bodies.
    mutating func addGrams(_ text: String, ns: UInt64, maxScalars: Int = 200) {
        var chars: [UInt32] = [32]
        chars.reserveCapacity(min(text.unicodeScalars.count, maxScalars) + 2)
        for u in text.unicodeScalars.prefix(maxScalars) {
            var v = u.value
            if v >= 65 && v <= 90 { v |= 0x20 } else if (0xC0...0xDE).contains(v) && v != 0xD7 { v += 0x20 }
            if let latin = Self.lookAlike(v) { v = UInt32(latin) }
            let kept = (v >= 97 && v <= 122) || (v >= 48 && v <= 57) || v == 36 || v == 33 || (v >= 0x80 && Self.isLetter(v))
            if kept { chars.append(v) } else if chars.last != 32 { chars.append(32) }
        }
        if chars.last != 32 { chars.append(32) }
        guard chars.count >= 4 else { return }
        for i in 0...(chars.count - 4) {
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            for k in i..<(i + 4) { h = (h ^ UInt64(chars[k])) &* 0x100_0000_01B3 }
            out.append(mix(h ^ ns))
        }
    }

    static func isWordByte(_ b: UInt8) -> Bool {
        (b >= 97 && b <= 122) || (b >= 65 && b <= 90) || (b >= 48 && b <= 57)
    }

    static func isLetter(_ s: UInt32) -> Bool {
        if (0xC0...0x24F).contains(s) { return s != 0xD7 && s != 0xF7 }
        if (0x370...0x52F).contains(s) || (0x3040...0x9FFF).contains(s) || (0xAC00...0xD7AF).contains(s) { return true }
        if (0x590...0x6FF).contains(s) || (0xE00...0xE7F).contains(s) { return true }
        return false
    }

    /// Cyrillic and Greek letters drawn like Latin ones (Unicode's
    /// confusables, the common subset), read as the Latin letter.
    static func lookAlike(_ s: UInt32) -> UInt8? {
        switch s {
        case 0x430, 0x410, 0x3B1, 0x391: return 97   // а А α Α
        case 0x432, 0x412, 0x392: return 98          // в В Β
        case 0x441, 0x421, 0x3F2: return 99          // с С ϲ
        case 0x435, 0x415, 0x395: return 101         // е Е Ε
        case 0x41D, 0x397: return 104                // Н Η
        case 0x456, 0x406, 0x3B9, 0x399: return 105  // і І ι Ι
        case 0x458, 0x408: return 106                // ј Ј
        case 0x43A, 0x41A, 0x3BA, 0x39A: return 107  // к К κ Κ
        case 0x41C, 0x39C: return 109                // М Μ
        case 0x3B7: return 110                       // η
        case 0x43E, 0x41E, 0x3BF, 0x39F: return 111  // о О ο Ο
        case 0x440, 0x420, 0x3C1, 0x3A1: return 112  // р Р ρ Ρ
        case 0x455, 0x405: return 115                // ѕ Ѕ
        case 0x422, 0x3A4, 0x3C4: return 116         // Т Τ τ
        case 0x3C5, 0x3C2: return 117                // υ ς
        case 0x3BD: return 118                       // ν
        case 0x445, 0x425, 0x3C7, 0x3A7: return 120  // х Х χ Χ
        case 0x443, 0x423, 0x3B3, 0x3A5: return 121  // у У γ Υ
        case 0x396: return 122                       // Ζ
        default: return nil
        }
    }
}

/// One word being read: its hash so far and what kinds of letters it has.
private struct Word {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    var length = 0
    var digits = 0
    var latin = false
    var foreign = false
    var nonASCII = false
    /// The first 12 bytes' hash, kept for words too long to be words.
    var prefixHash: UInt64 = 0

    mutating func byte(_ b: UInt8) {
        if length < 24 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01B3 }
        length += 1
        if length == 12 { prefixHash = hash }
    }
    mutating func letter(_ b: UInt8) { latin = true; byte(b) }
    mutating func digit(_ b: UInt8) { digits += 1; byte(b) }
    mutating func scalar(_ s: UInt32) {
        for b in String(Character(Unicode.Scalar(s)!)).utf8 { byte(b) }
        nonASCII = true
    }

    /// Long numbers (phone numbers, ids, prices) are kept as their shape,
    /// and overlong tokens (base64 debris, tracking ids) as a prefix and a
    /// length class, so one-off strings do not each take a feature.
    func finalHash() -> UInt64 {
        if digits == length && length > 4 { return 0xD161_7000 &+ UInt64(min(length, 12)) }
        if length > 24 { return prefixHash ^ 0x10_0000 &+ UInt64(min(length / 8, 8)) }
        return hash
    }
}

/// A 64-bit finalizer (MurmurHash3's), so masked low bits spread well.
@inline(__always) func mix(_ x: UInt64) -> UInt64 {
    var h = x
    h ^= h >> 33
    h &*= 0xFF51_AFD7_ED55_8CCD
    h ^= h >> 33
    h &*= 0xC4CE_B9FE_1A85_EC53
    h ^= h >> 33
    return h
}

/// Hash of a short string in a namespace (a header name, a host).
func featureHash(_ s: String, ns: UInt64) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b >= 65 && b <= 90 ? b | 0x20 : b)) &* 0x100_0000_01B3 }
    return mix(h ^ ns)
}
