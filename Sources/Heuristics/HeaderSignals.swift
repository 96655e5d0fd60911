import Foundation
import MailMessage

/// Header fields that a real mail program writes right and spamware does
/// not: a Date near the time of receipt, a well-formed Message-ID, a reply
/// that answers something, a subject that does not shout.
struct HeaderSignals: SignalDetector {
    /// Made once: CharacterSet's static getters build a set at every call, per character of every subject.
    static let letters = CharacterSet.letters
    static let lowercase = CharacterSet.lowercaseLetters
    static let names = ["DATE_MISSING", "DATE_MALFORMED", "DATE_IN_FUTURE", "DATE_IN_PAST", "MSGID_MISSING", "MSGID_MALFORMED",
                        "FAKE_REPLY", "SUBJECT_ALL_CAPS", "SUBJECT_SHOUTS", "TO_MISSING", "TO_UNDISCLOSED", "SUBJECT_MISSING", "DATE_BAD_ZONE"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let h = input.headers
        if let date = h.first("Date") {
            if let zone = badZone(date) {
                out.append(Signal("DATE_BAD_ZONE", "Date's time zone \(zone) is no zone on Earth"))
            }
            if let d = RFC5322Date.parse(date) {
                let skew = d.timeIntervalSince(input.receivedAt)
                if skew > 12 * 3600 { out.append(Signal("DATE_IN_FUTURE", "Date is \(hours(skew)) hours after the message arrived")) }
                if skew < -96 * 3600 { out.append(Signal("DATE_IN_PAST", "Date is \(hours(-skew) / 24) days before the message arrived")) }
            } else {
                out.append(Signal("DATE_MALFORMED", "Date \"\(date.prefix(40))\" is not an RFC 5322 date"))
            }
        } else {
            out.append(Signal("DATE_MISSING", "no Date field"))
        }
        if let id = h.first("Message-ID") {
            let t = id.trimmed
            let ok = t.hasPrefix("<") && t.hasSuffix(">") && t.utf8.contains(UInt8(ascii: "@")) && !t.utf8.contains(UInt8(ascii: " ")) && t.utf8.count > 6
            if !ok { out.append(Signal("MSGID_MALFORMED", "Message-ID \"\(t.prefix(40))\" is not <left@right>")) }
        } else {
            out.append(Signal("MSGID_MISSING", "no Message-ID field"))
        }
        let subject = input.value("Subject") ?? ""
        if h.first("Subject") == nil { out.append(Signal("SUBJECT_MISSING", "no Subject field")) }
        let lowerSubject = subject.lowercased()
        if (lowerSubject.hasPrefix("re:") || lowerSubject.hasPrefix("re :")) && h.first("In-Reply-To") == nil && h.first("References") == nil {
            out.append(Signal("FAKE_REPLY", "the subject says Re: but nothing is replied to (no In-Reply-To or References)"))
        }
        // ASCII letters read directly; CharacterSet (a Foundation call per scalar) only for the rest.
        var letterCount = 0, anyLower = false
        for u in subject.unicodeScalars {
            let v = u.value
            if v < 0x80 {
                if v >= 97 && v <= 122 { letterCount += 1; anyLower = true } else if v >= 65 && v <= 90 { letterCount += 1 }
            } else if Self.letters.contains(u) {
                letterCount += 1
                if !anyLower && Self.lowercase.contains(u) { anyLower = true }
            }
        }
        if letterCount >= 12 && !anyLower {
            out.append(Signal("SUBJECT_ALL_CAPS", "the subject is in capitals"))
        }
        if subject.containsBytes("!!") || subject.containsBytes("$$") || subject.utf8.filter({ $0 == UInt8(ascii: "!") }).count >= 3 {
            out.append(Signal("SUBJECT_SHOUTS", "the subject shouts (\(subject.prefix(40)))"))
        }
        if let to = h.first("To") {
            let v = to.lowercased()
            if v.containsBytes("undisclosed") || v.trimmed.isEmpty || v.trimmed.hasSuffix(":;") {
                out.append(Signal("TO_UNDISCLOSED", "To: \(to.prefix(40))"))
            }
        } else if h.first("Cc") == nil {
            out.append(Signal("TO_MISSING", "no To or Cc field"))
        }
    }

    static func hours(_ s: Double) -> Int { Int(s / 3600) }

    /// A numeric zone past ±14 hours or with minutes other than 00, 30 and
    /// 45 (Nepal's +0545, Chatham's +1245): a program made the date up.
    static func badZone(_ date: String) -> String? {
        // The zone is the last word before any comment; read on the bytes (every message's Date is asked).
        let u = Array(date.utf8)
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 13 || b == 10 }
        var end = u.firstIndex(of: UInt8(ascii: "(")) ?? u.count
        while end > 0 && isSpace(u[end - 1]) { end -= 1 }
        guard end >= 5, end == 5 || isSpace(u[end - 6]) else { return nil }
        let z = u[(end - 5)..<end]
        guard z.first == UInt8(ascii: "+") || z.first == UInt8(ascii: "-"), z.dropFirst().allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        let d = z.map { Int($0) - 48 }
        let hh = d[1] * 10 + d[2], mm = d[3] * 10 + d[4]
        return hh > 14 || ![0, 30, 45].contains(mm) ? String(decoding: z, as: UTF8.self) : nil
    }
}
