import Foundation

/// RFC 5322 §3.3 dates, with the obsolete forms real mail still uses
/// (two-digit years, named zones, missing day of week or seconds).
public enum RFC5322Date {
    static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let zones: [String: Int] = ["ut": 0, "gmt": 0, "utc": 0, "z": 0, "est": -300, "edt": -240, "cst": -360, "cdt": -300,
                                       "mst": -420, "mdt": -360, "pst": -480, "pdt": -420]

    public static func parse(_ text: String) -> Date? {
        var s = text.lowercased()
        if let comment = s.firstIndex(of: "(") { s = String(s[..<comment]) }
        if let comma = s.firstIndex(of: ",") { s = String(s[s.index(after: comma)...]) }
        let parts = s.split { $0 == " " || $0 == "\t" }.map(String.init)
        guard parts.count >= 4, let day = Int(parts[0]), (1...31).contains(day),
              let month = months.firstIndex(where: { parts[1].hasPrefix($0) }), var year = Int(parts[2]) else { return nil }
        if year < 50 { year += 2000 } else if year < 1000 { year += 1900 }
        let hms = parts[3].split(separator: ":").compactMap { Int($0) }
        guard hms.count >= 2, (0...23).contains(hms[0]), (0...59).contains(hms[1]) else { return nil }
        var offset = 0
        if parts.count >= 5 {
            let z = parts[4]
            if let sign = z.first, sign == "+" || sign == "-", z.count == 5, let v = Int(z.dropFirst()) {
                offset = (v / 100 * 60 + v % 100) * (sign == "-" ? -1 : 1)
            } else if let named = zones[z] {
                offset = named
            }
        }
        let seconds = daysFromCivil(year, month + 1, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + (hms.count > 2 ? hms[2] : 0)
        return Date(timeIntervalSince1970: Double(seconds - offset * 60))
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
