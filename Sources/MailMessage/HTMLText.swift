/// HTML reduced to the text a reader sees, fed line by line as a part
/// streams past. Spam hides words from filters with markup: inline tags
/// inside a word ("V<b></b>iagra"), character references ("&#86;iagra"),
/// and text in <style> or <script> that no one reads. So inline tags join
/// what is on either side, block tags and <br> separate, references are
/// decoded, and the contents of style, script and head (except the title)
/// are dropped. Bounded state: the tag being read is kept to 64 bytes.
struct HTMLText {
    /// What the markup itself shows, for the phishing and obfuscation heuristics.
    var links: [HTMLLink] = []
    var images = 0
    /// Elements styled so no one sees their text (display:none, font-size:0…).
    var hiddenElements = 0
    var forms = 0
    var passwordInputs = 0
    /// <font> tags that shout: size 4 and up (or +2 and up), or red.
    var loudFonts = 0
    private var inTag = false
    private var tag: [UInt8] = []
    /// The open <a>: its href and the text shown so far.
    private var anchor: (href: String, text: [UInt8])?
    /// Inside <style>, <script> or <head>: text is not shown until this
    /// element (its name packed, as `packedName`) closes.
    private var hiddenUntil: UInt64?
    private var inComment = false
    /// Dashes in a row just read inside a comment.
    private var commentDashes = 0
    private var reference: [UInt8]?

    private static let inline: Set<UInt64> = Set([
        "a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "data", "dfn", "em", "font", "i", "kbd", "mark",
        "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr", "o:p",
    ].map { packed(Array($0.utf8)[...]) })
    private static let nameA = packed(Array("a".utf8)[...]), nameImg = packed(Array("img".utf8)[...])
    private static let nameForm = packed(Array("form".utf8)[...]), nameInput = packed(Array("input".utf8)[...])
    private static let nameFont = packed(Array("font".utf8)[...])
    private static let hidingElements = Set(["style", "script", "head"].map { packed(Array($0.utf8)[...]) })

    /// An element name lower-cased into one integer, its length in the top
    /// byte (seven bytes at most; a longer name is none of the few this type
    /// tells apart), so a tag costs no String and no hashing of one.
    static func packed(_ name: ArraySlice<UInt8>) -> UInt64 {
        guard name.count <= 7 else { return UInt64.max }
        var v: UInt64 = 0
        for b in name { v = v << 8 | UInt64(b >= 65 && b <= 90 ? b | 0x20 : b) }
        return v | UInt64(name.count) << 56
    }

    mutating func reduce(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = -1
        while i + 1 < bytes.count {
            i += 1
            let b = bytes[i]
            if inComment {
                // "-->": a ">" after two dashes of the comment.
                if b == 62 && commentDashes >= 2 { inComment = false; inTag = false; tag.removeAll() }
                commentDashes = b == 45 ? commentDashes + 1 : 0
                continue
            }
            if inTag {
                if b == 62 {
                    inTag = false
                    closeTag(&out)
                } else {
                    if tag.count < 2048 { tag.append(b) }
                    // Compared by its bytes: an array literal here was an allocation per byte of every tag.
                    if tag.count == 3 && tag[0] == 33 && tag[1] == 45 && tag[2] == 45 { inComment = true; commentDashes = 0; tag.removeAll() }
                }
                continue
            }
            if b == 60 {
                flushReference(&out)
                inTag = true
                tag.removeAll(keepingCapacity: true)
                continue
            }
            if hiddenUntil != nil { continue }
            if anchor == nil && reference == nil && b != 38 {
                // Plain text up to the next markup: copied in one go.
                var j = i + 1
                while j < bytes.count && bytes[j] != 60 && bytes[j] != 38 { j += 1 }
                out.append(contentsOf: bytes[i..<j])
                i = j - 1
                continue
            }
            if anchor != nil && anchor!.text.count < 200 { anchor!.text.append(b) }
            if reference != nil {
                if b == 59 {
                    let ref = reference!
                    reference = nil
                    if let decoded = Self.decode(ref) { out += decoded } else { out.append(38); out += ref; out.append(59) }
                } else if reference!.count < 10, b == 35 || (b | 0x20 >= 97 && b | 0x20 <= 122) || (b >= 48 && b <= 57) {
                    reference!.append(b)
                } else {
                    flushReference(&out)
                    out.append(b)
                }
                continue
            }
            if b == 38 {
                reference = []
                continue
            }
            out.append(b)
        }
        return out
    }

    private mutating func flushReference(_ out: inout [UInt8]) {
        guard let ref = reference else { return }
        reference = nil
        out.append(38)
        out += ref
    }

    private mutating func closeTag(_ out: inout [UInt8]) {
        var rest = tag[...]
        let closing = rest.first == 47
        if closing { rest = rest.dropFirst() }
        let name = rest.prefix { $0 != 32 && $0 != 9 && $0 != 10 && $0 != 13 && $0 != 47 }
        let lower = Self.packed(name)
        if let until = hiddenUntil {
            if closing && lower == until { hiddenUntil = nil; out.append(32) }
            return
        }
        if !closing && Self.hidingElements.contains(lower) && tag.last != 47 {
            hiddenUntil = lower
            return
        }
        if closing {
            if lower == Self.nameA, let a = anchor, links.count < 200 {
                links.append(HTMLLink(href: a.href, text: String(decoding: a.text, as: UTF8.self)))
                anchor = nil
            }
        } else {
            noteElement(lower)
        }
        if !Self.inline.contains(lower) { out.append(32) }
    }

    /// Counts what an opening tag shows of the message's intent. On bytes:
    /// this runs for every tag of every HTML part, and String searches
    /// were a tenth of a message's cost.
    private mutating func noteElement(_ name: UInt64) {
        if name == Self.nameImg { images += 1 }
        if name == Self.nameForm { forms += 1 }
        // Only a tag with a style can hide itself.
        let styled = tag.contains(58)
        guard styled || name == Self.nameA || name == Self.nameInput || name == Self.nameFont else { return }
        // Lower-cased byte for byte, so offsets in it are offsets in the tag (invalid UTF-8 included).
        let lowered = tag.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }
        switch name {
        case Self.nameA:
            if let href = Self.attribute("href", in: lowered, original: tag) {
                if let a = anchor, links.count < 200 { links.append(HTMLLink(href: a.href, text: String(decoding: a.text, as: UTF8.self))) }
                anchor = (href, [])
            }
        case Self.nameInput: if ByteSearch.firstIndex(of: Self.password, in: lowered) != nil { passwordInputs += 1 }
        case Self.nameFont: if Self.isLoud(lowered) { loudFonts += 1 }
        default: break
        }
        guard styled else { return }
        let squeezed = lowered.filter { $0 != 32 && $0 != 9 }
        if Self.hiding.contains(where: { ByteSearch.firstIndex(of: $0, in: squeezed) != nil }) { hiddenElements += 1 }
    }

    /// Advertising's big and red type (SpamAssassin's HTML_FONT_SIZE_LARGE and
    /// FONT_COLOR_RED); a mail program writing a signature seldom does either.
    static func isLoud(_ lowered: [UInt8]) -> Bool {
        if let size = attribute("size", in: lowered, original: lowered)?.utf8, let last = size.last {
            let plus = size.first == 43
            if size.count <= 2 && last >= 48 && last <= 57 && (plus ? last >= 50 : last >= 52) { return true }
        }
        guard let color = attribute("color", in: lowered, original: lowered) else { return false }
        return color == "red" || color == "#ff0000" || color == "ff0000" || color == "#f00"
    }

    private static let password = Array("password".utf8)
    /// Styles that hide an element from the reader, spaces squeezed out.
    private static let hiding = ["display:none", "visibility:hidden", "font-size:0", "font-size:1px", "opacity:0;"].map { Array($0.utf8) }

    /// An attribute's value (quoted or not), with its original case.
    static func attribute(_ name: String, in l: [UInt8], original: [UInt8]) -> String? {
        precondition(l.count == original.count)
        let key = Array(name.utf8)
        var i = 0
        while i + key.count < l.count {
            if (i == 0 || l[i - 1] == 32 || l[i - 1] == 9 || l[i - 1] == 10 || l[i - 1] == 13) && Array(l[i..<(i + key.count)]) == key {
                var j = i + key.count
                while j < l.count && l[j] == 32 { j += 1 }
                guard j < l.count, l[j] == 61 else { i += 1; continue }
                j += 1
                while j < l.count && l[j] == 32 { j += 1 }
                guard j < l.count else { return "" }
                let quote = l[j] == 34 || l[j] == 39 ? l[j] : nil
                if quote != nil { j += 1 }
                var k = j
                while k < l.count && (quote.map { l[k] != $0 } ?? (l[k] != 32 && l[k] != 62)) { k += 1 }
                return String(decoding: original[j..<k], as: UTF8.self).trimmingSpaces()
            }
            i += 1
        }
        return nil
    }

    /// A character reference's text, without & and ;.
    static func decode(_ ref: [UInt8]) -> [UInt8]? {
        var scalar: UInt32?
        if ref.first == 35 {
            let digits = ref.dropFirst()
            if digits.first == 120 || digits.first == 88 {
                scalar = UInt32(String(decoding: digits.dropFirst(), as: UTF8.self), radix: 16)
            } else {
                scalar = UInt32(String(decoding: digits, as: UTF8.self))
            }
        } else {
            switch String(decoding: ref, as: UTF8.self) {
            case "nbsp", "ensp", "emsp", "thinsp": return [32]
            case "amp": return [38]
            case "lt": return [60]
            case "gt": return [62]
            case "quot": return [34]
            case "apos": return [39]
            case "zwnj", "zwj", "shy": return []
            case "copy": scalar = 0xA9
            case "reg": scalar = 0xAE
            case "euro": scalar = 0x20AC
            case "pound": scalar = 0xA3
            default: return nil
            }
        }
        guard let s = scalar.flatMap(Unicode.Scalar.init) else { return nil }
        return Array(String(Character(s)).utf8)
    }
}

/// A link as the reader sees it: where it goes and the text it shows.
public struct HTMLLink: Sendable, Equatable {
    public var href: String
    public var text: String
    public init(href: String, text: String) {
        self.href = href
        self.text = text
    }
}
