import Foundation
import Testing

@testable import Heuristics

/// The byte-level readings that replaced String and Character walks in the
/// heuristics give the same answers as the walks, on generated input that
/// leans on the edge cases (signs, empty fields, comments, CR LF, brackets).
struct ByteReadingTests {
    /// A deterministic generator, so a failure names an input that can be replayed.
    struct Rand {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        mutating func string(_ alphabet: [String], _ maxCount: Int) -> String {
            (0..<next(maxCount + 1)).map { _ in alphabet[next(alphabet.count)] }.joined()
        }
    }

    /// RFC5322Date.parse as it was, on Strings: the reference.
    static func referenceDate(_ text: String) -> Date? {
        var s = text.lowercased()
        if let comment = s.firstIndex(of: "(") { s = String(s[..<comment]) }
        if let comma = s.firstIndex(of: ",") { s = String(s[s.index(after: comma)...]) }
        let parts = s.split { $0 == " " || $0 == "\t" }.map(String.init)
        guard parts.count >= 4, let day = Int(parts[0]), (1...31).contains(day),
              let month = RFC5322Date.months.firstIndex(where: { parts[1].hasPrefix($0) }), var year = Int(parts[2]) else { return nil }
        if year < 50 { year += 2000 } else if year < 1000 { year += 1900 }
        let hms = parts[3].split(separator: ":").compactMap { Int($0) }
        guard hms.count >= 2, (0...23).contains(hms[0]), (0...59).contains(hms[1]) else { return nil }
        var offset = 0
        if parts.count >= 5 {
            let z = parts[4]
            if let sign = z.first, sign == "+" || sign == "-", z.count == 5, let v = Int(z.dropFirst()) {
                offset = (v / 100 * 60 + v % 100) * (sign == "-" ? -1 : 1)
            } else if let named = RFC5322Date.zones[z] {
                offset = named
            }
        }
        let seconds = RFC5322Date.daysFromCivil(year, month + 1, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + (hms.count > 2 ? hms[2] : 0)
        return Date(timeIntervalSince1970: Double(seconds - offset * 60))
    }

    @Test func datesReadAsTheStringReadingDid() {
        let fixed = ["Tue, 01 Dec 2026 10:00:00 +0000", "1 Jan 99 00:00 GMT", "Thu, 29 Feb 2024 23:59:59 EST (Eastern)",
                     "+5 MAR 2026 10::30 -0100", "05 March 2026 1:2:3:4 pdt extra", "5 jan 2026 10:00 +-050", "5 Jan +2026 10:00 z",
                     "(comment, first) 5 Jan 2026 10:00 ut", "Mon,5\tFeb\t2026\t23:59:60\t+9999", "31 Dec 0 0:0 UTC",
                     "9223372036854775808 Jan 2026 10:00", "5 Ja 2026 10:00", "5 Jan 2026", "", ",,", "5 JAN 2026 24:00 +0000"]
        for s in fixed { #expect(RFC5322Date.parse(s) == Self.referenceDate(s), "\(s)") }
        var r = Rand(state: 17)
        let pieces = ["Mon, ", "1", "5", "31", "32", " ", " ", "\t", "Jan", "FEB", "dec", "x", "2026", "99", "0", "10", ":", "00", "59",
                      "+", "-", "0530", "EST", "gmt", "z", "(", ")", ","]
        for _ in 0..<5000 {
            let s = r.string(pieces, 14)
            #expect(RFC5322Date.parse(s) == Self.referenceDate(s), "\(s)")
        }
    }

    @Test func spacedLettersOverBytesAsOverCharacters() {
        var r = Rand(state: 5)
        let pieces = ["a", "B", "z", ".", "_", "-", " ", "1", "!", "\r\n", "\r", "\n", "\t"]
        for _ in 0..<5000 {
            let s = r.string(pieces, 20)
            #expect(StyleSignals.asciiSpacedLetters(s.utf8) == StyleSignals.spacedLettersByCharacter(s), "\(s.debugDescription)")
        }
        #expect(StyleSignals.spacedLetters("F.R.E.E m.o.n.e.y") && StyleSignals.spacedLetters("c a l l n o w"))
        #expect(!StyleSignals.spacedLetters("U.S. news") && !StyleSignals.spacedLetters("plain subject"))
        #expect(StyleSignals.spacedLetters("f.r.e.é.x") == StyleSignals.spacedLettersByCharacter("f.r.e.é.x"), "non-ASCII takes the Character walk")
    }

    @Test func trailingNumberOverBytesAsOverCharacters() {
        var r = Rand(state: 9)
        let pieces = ["1", "2", "0", "9", " ", " ", "[", "]", "(", ")", "#", "-", "x", "\r\n", "1999", "20000"]
        for _ in 0..<5000 {
            let s = r.string(pieces, 16)
            #expect(StyleSignals.asciiTrailingNumber(Array(s.utf8)) == StyleSignals.trailingNumberByCharacter(s), "\(s.debugDescription)")
        }
        #expect(StyleSignals.trailingID("Your invoice is ready #[884213]"))
        #expect(!StyleSignals.trailingID("Report for 2026 2026 02026"), "a year, leading zero or not")
    }
}
