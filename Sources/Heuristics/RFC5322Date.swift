import Foundation

/// RFC 5322 §3.3 dates, with the obsolete forms real mail still uses
/// (two-digit years, named zones, missing day of week or seconds).
public enum RFC5322Date {
    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let zones: [String: Int] = ["ut": 0, "gmt": 0, "utc": 0, "z": 0, "est": -300, "edt": -240, "cst": -360, "cdt": -300,
                                       "mst": -420, "mdt": -360, "pst": -480, "pdt": -420]

    public static func parse(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { parse(bytes: $0) }
    }

    /// The same reading over the field's bytes: a comment cut off, the day
    /// of week before a comma dropped, fields split at spaces and tabs,
    /// ASCII case folded. Strings for each field were most of the cost.
    static func parse(bytes raw: UnsafeBufferPointer<UInt8>) -> Date? {
        let end = raw.firstIndex(of: UInt8(ascii: "(")) ?? raw.count
        var start = raw[..<end].firstIndex(of: UInt8(ascii: ",")).map { $0 + 1 } ?? 0
        // Up to five fields: day, month, year, time, zone.
        var fields: [Range<Int>] = []
        fields.reserveCapacity(5)
        while start < end && fields.count < 5 {
            while start < end && (raw[start] == 32 || raw[start] == 9) { start += 1 }
            var stop = start
            while stop < end && raw[stop] != 32 && raw[stop] != 9 { stop += 1 }
            if stop > start { fields.append(start..<stop) }
            start = stop
        }
        guard fields.count >= 4, let day = integer(raw, fields[0]), (1...31).contains(day),
              let month = monthIndex(raw, fields[1]), var year = integer(raw, fields[2]) else { return nil }
        if year < 50 { year += 2000 } else if year < 1000 { year += 1900 }
        // "10:00:00": the numbers between colons, empty and unreadable ones skipped.
        var hms: [Int] = []
        var from = fields[3].lowerBound
        for i in fields[3].lowerBound...fields[3].upperBound where i == fields[3].upperBound || raw[i] == UInt8(ascii: ":") {
            if i > from, let v = integer(raw, from..<i) { hms.append(v) }
            from = i + 1
        }
        guard hms.count >= 2, (0...23).contains(hms[0]), (0...59).contains(hms[1]) else { return nil }
        var offset = 0
        if fields.count >= 5 {
            let z = fields[4]
            let sign = raw[z.lowerBound]
            if (sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-")) && z.count == 5, let v = integer(raw, z.lowerBound + 1..<z.upperBound) {
                offset = (v / 100 * 60 + v % 100) * (sign == UInt8(ascii: "-") ? -1 : 1)
            } else if z.count <= 3 {
                offset = zones[folded(raw, z)] ?? 0
            }
        }
        let seconds = daysFromCivil(year, month + 1, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + (hms.count > 2 ? hms[2] : 0)
        return Date(timeIntervalSince1970: Double(seconds - offset * 60))
    }

    /// What Int(String) reads: an optional sign and one or more digits, nil on overflow.
    static func integer(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> Int? {
        var i = r.lowerBound
        var negative = false
        if i < r.upperBound && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) {
            negative = b[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < r.upperBound else { return nil }
        var v = 0
        while i < r.upperBound {
            let d = b[i] &- 48
            guard d < 10 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(Int(d)) : m.addingReportingOverflow(Int(d))
            guard !o1 && !o2 else { return nil }
            v = s
            i += 1
        }
        return v
    }

    /// The month whose three-letter name starts the field, case folded.
    static func monthIndex(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> Int? {
        r.count >= 3 ? months.firstIndex(of: folded(b, r.lowerBound..<(r.lowerBound + 3))) : nil
    }

    /// The bytes of `r` as a String, ASCII letters lower-cased (a month's or a zone's name).
    static func folded(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> String {
        String(decoding: b[r].map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    /// days_from_civil): what Calendar.date(from:) computed, at a fiftieth of
    /// its cost, and every message has a Date. Day 31 of a 30-day month
    /// rolls into the next, as Calendar's does.
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// When the message reached the newest hop that wrote a Received field:
    /// a stored message is judged as of when it arrived, not as of today.
    public static func newestReceived(_ values: [String]) -> Date? {
        for v in values {
            guard let semi = v.lastIndex(of: ";") else { continue }
            if let d = parse(String(v[v.index(after: semi)...])) { return d }
        }
        return nil
    }
}
