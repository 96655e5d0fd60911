import MailMessage

/// How the message addresses and shouts at the reader: styled Unicode
/// letters (𝐩𝐡𝐨𝐭𝐨𝐬, ᴘᴀʏᴍᴇɴᴛ) in the subject or sender name, emoji in either,
/// letters spaced out to dodge filters (C.a.l.l.e.d), a tracking number at
/// the end of the subject, the recipient's own address in the subject or
/// the links, mail "from" the recipient, capitals and exclamation marks.
struct StyleSignals: SignalDetector {
    static let names = ["UNICODE_STYLED_TEXT", "EMOJI_IN_SUBJECT", "EMOJI_IN_SENDER_NAME", "SUBJECT_SPACED_LETTERS", "SUBJECT_TRAILING_ID",
                        "SUBJECT_NAMES_RECIPIENT", "LINK_HAS_RECIPIENT", "FROM_EQUALS_TO", "BODY_SHOUTS", "REPLY_TO_OTHER_DOMAIN", "BODY_CAPS_RUN", "GREETING_NAMES_ADDRESS"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let subject = input.value("Subject") ?? ""
        let from = input.value("From") ?? ""
        let display = SenderSignals.displayName(from)
        if let s = (subject + " " + display).unicodeScalars.first(where: isStyled) {
            out.append(Signal("UNICODE_STYLED_TEXT", "styled letters such as \(s) in the subject or sender name"))
        }
        if subject.unicodeScalars.contains(where: isEmoji) { out.append(Signal("EMOJI_IN_SUBJECT", "emoji in the subject")) }
        if display.unicodeScalars.contains(where: isEmoji) {
            out.append(Signal("EMOJI_IN_SENDER_NAME", "emoji in the sender's name (\(display.prefix(40)))"))
        }
        if spacedLetters(subject) { out.append(Signal("SUBJECT_SPACED_LETTERS", "letters spaced out in the subject (\(subject.prefix(40)))")) }
        if trailingID(subject) { out.append(Signal("SUBJECT_TRAILING_ID", "the subject ends in a tracking number")) }

        let to = AddressList.addresses(in: input.value("To") ?? "").map { $0.lowercased() }
        if let rcpt = to.first, let at = rcpt.firstIndex(of: "@") {
            let local = String(rcpt[..<at])
            if local.count >= 4 && subject.lowercased().containsBytes(local) {
                out.append(Signal("SUBJECT_NAMES_RECIPIENT", "the subject names the recipient (\(local))"))
            }
            let encoded = local + "%40" + rcpt[rcpt.index(after: at)...]
            if input.mime.urls.contains(where: { let u = $0.lowercased(); return u.containsBytes(rcpt) || u.containsBytes(encoded) }) {
                out.append(Signal("LINK_HAS_RECIPIENT", "a link carries the recipient's address"))
            }
            if let greeted = greeting(input.mime.text), greeted == local {
                out.append(Signal("GREETING_NAMES_ADDRESS", "the text greets the address, not a person (\"\(greeted)\")"))
            }
            if let sender = input.fromAddresses.first?.lowercased(), sender == rcpt {
                out.append(Signal("FROM_EQUALS_TO", "the message claims to come from its recipient"))
            }
        }
        if let sender = input.fromAddresses.lazy.compactMap(AddressList.domain(of:)).first.map(Domains.registered),
           let reply = input.replyToAddresses.lazy.compactMap(AddressList.domain(of:)).first.map(Domains.registered), reply != sender {
            out.append(Signal("REPLY_TO_OTHER_DOMAIN", "replies go to \(reply), not to \(sender)"))
        }
        let (words, caps, bangs) = (input.text.words, input.text.capsWords, input.text.bangRuns)
        if bangs >= 3 || (words >= 30 && caps * 4 >= words) {
            out.append(Signal("BODY_SHOUTS", "\(caps) of \(words) words in capitals, \(bangs) runs of !!"))
        }
        // A sentence shouted whole; a row of acronyms is rarely eight long.
        if input.text.capsRun >= 8 { out.append(Signal("BODY_CAPS_RUN", "\(input.text.capsRun) words in capitals in a row")) }
    }

    /// The word a text opens by greeting ("Dear jm ," gives "jm"), when it is
    /// written in lower case as an address is: a mail merge fills in the local
    /// part of each address of its list; a person writes a name ("Dear John,").
    static func greeting(_ text: String) -> String? {
        // Bytes, not Characters: this runs on every message, and almost every text starts otherwise.
        let head = Array(text.utf8.prefix(120))
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 10 || b == 13 || b == 9 }
        var i = 0
        while i < head.count && isSpace(head[i]) { i += 1 }
        let wordStart = i
        while i < head.count && !isSpace(head[i]) { i += 1 }
        let first = head[wordStart..<i].map { $0 | 0x20 }
        guard [Array("dear".utf8), Array("hi".utf8), Array("hello".utf8), Array("hey".utf8)].contains(first) else { return nil }
        while i < head.count && isSpace(head[i]) { i += 1 }
        let nameStart = i
        while i < head.count && !isSpace(head[i]) && head[i] != 44 && head[i] != 33 { i += 1 }
        let name = head[nameStart..<i]
        // Lower case (no A-Z), with a letter, as an address's local part is written.
        guard name.count >= 2, !name.contains(where: { $0 >= 65 && $0 <= 90 }), name.contains(where: { $0 >= 97 && $0 <= 122 }) else { return nil }
        // And filled in by a program: a space left before the comma ("Dear jm ,"), or
        // digits, dots or underscores no one calls a person by. "Hello fork," to the
        // fork list is a person greeting the list.
        let spaceBeforeComma = i + 1 < head.count && head[i] == 32 && head[i + 1] == 44
        let addressLike = name.contains(where: { ($0 >= 48 && $0 <= 57) || $0 == 46 || $0 == 95 })
        guard spaceBeforeComma || addressLike else { return nil }
        return String(decoding: name, as: UTF8.self)
    }

    static func isEmoji(_ s: Unicode.Scalar) -> Bool { (0x1F300...0x1FAFF).contains(s.value) || (0x2600...0x27BF).contains(s.value) }

    /// Mathematical alphanumerics, small capitals and the like: letters drawn to look like others.
    static func isStyled(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        return (0x1D400...0x1D7FF).contains(v) || (0x1D00...0x1D2B).contains(v) || (0x24B6...0x24E9).contains(v)
            || (0x1F130...0x1F189).contains(v) || v == 0x0280 || v == 0x028F || v == 0x026A || v == 0x0274 || v == 0x029F
    }

    /// At least four letters in a row each followed by one ., _, - or space: "F.R.E.E", "c a l l".
    static func spacedLetters(_ s: String) -> Bool {
        s.utf8.allSatisfy({ $0 < 0x80 }) ? asciiSpacedLetters(s.utf8) : spacedLettersByCharacter(s)
    }

    /// spacedLetters over ASCII, byte by byte: a byte is a Character there
    /// (CR LF, the one pair that is not, counts as neither kind either way),
    /// and walking Characters cost a grapheme break test per byte.
    static func asciiSpacedLetters(_ bytes: String.UTF8View) -> Bool {
        spacedRun(bytes, isLetter: { ($0 | 0x20) >= 97 && ($0 | 0x20) <= 122 }, isSpacer: { $0 == 46 || $0 == 95 || $0 == 45 || $0 == 32 })
    }

    static func spacedLettersByCharacter(_ s: String) -> Bool {
        spacedRun(s, isLetter: \.isLetter, isSpacer: { $0 == "." || $0 == "_" || $0 == "-" || $0 == " " })
    }

    @inline(__always)
    static func spacedRun<S: Sequence>(_ s: S, isLetter: (S.Element) -> Bool, isSpacer: (S.Element) -> Bool) -> Bool {
        var run = 0
        var previousLetter = false
        for c in s {
            if isLetter(c) {
                if previousLetter { run = 0 }
                previousLetter = true
            } else if previousLetter && isSpacer(c) {
                run += 1
                previousLetter = false
                if run >= 4 { return true }
            } else {
                run = 0
                previousLetter = false
            }
        }
        return false
    }

    /// "Get out of debt     29521": spaces and then a number or a random token at the very end.
    static func trailingID(_ s: String) -> Bool {
        guard let lastSpace = Self.lastTripleSpace(s) else {
            return s.utf8.allSatisfy({ $0 < 0x80 }) ? asciiTrailingNumber(Array(s.utf8)) : trailingNumberByCharacter(s)
        }
        let tail = s[lastSpace...].trimming { $0 == " " || $0 == "\t" || $0.properties.generalCategory == .spaceSeparator }
        return !tail.isEmpty && tail.count <= 12 && !tail.utf8.contains(UInt8(ascii: " "))
    }

    /// At least three words, the last a number of five digits or more
    /// (brackets, "#" and "-" around it dropped) that is not a year.
    static func trailingNumberByCharacter(_ s: String) -> Bool {
        let parts = s.split(separator: " ")
        guard parts.count >= 3, let last = parts.last else { return false }
        let t = last.trimming(["[", "]", "(", ")", "#", "-"])
        return t.count >= 5 && t.allSatisfy(\.isNumber) && !(1900...2100).contains(Int(t) ?? 0)
    }

    /// trailingNumberByCharacter over ASCII, on the bytes (no Substring per word).
    static func asciiTrailingNumber(_ b: [UInt8]) -> Bool {
        var words = 0, lastStart = 0, lastEnd = 0, i = 0
        while i < b.count {
            while i < b.count && b[i] == 32 { i += 1 }
            guard i < b.count else { break }
            let start = i
            while i < b.count && b[i] != 32 { i += 1 }
            words += 1
            (lastStart, lastEnd) = (start, i)
        }
        guard words >= 3 else { return false }
        func trimmed(_ c: UInt8) -> Bool { c == 91 || c == 93 || c == 40 || c == 41 || c == 35 || c == 45 }  // [ ] ( ) # -
        while lastStart < lastEnd && trimmed(b[lastStart]) { lastStart += 1 }
        while lastEnd > lastStart && trimmed(b[lastEnd - 1]) { lastEnd -= 1 }
        guard lastEnd - lastStart >= 5, b[lastStart..<lastEnd].allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return false }
        return !(1900...2100).contains(Int(String(decoding: b[lastStart..<lastEnd], as: UTF8.self)) ?? 0)
    }

    /// Where the text after the last run of three spaces starts (Foundation's backwards range(of:) was bridged).
    static func lastTripleSpace(_ s: String) -> String.Index? {
        let u = s.utf8
        var run = 0
        var i = u.endIndex
        while i > u.startIndex {
            let j = u.index(before: i)
            if u[j] == UInt8(ascii: " ") {
                run += 1
                if run == 3 { return u.index(j, offsetBy: 3) }
            } else {
                run = 0
            }
            i = j
        }
        return nil
    }
}
