#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Dates as mail headers write them, formatted by hand: a DateFormatter
/// per message (ICU under Foundation) cost a sixth of a relayed message's CPU.
public enum MailDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// RFC 5322 §3.3 in UTC: "Mon, 30 Nov 2026 06:11:39 +0000".
    public static func rfc5322(secondsSince1970 seconds: Double) -> String {
        // Every message of a second carries the same date: formatted once.
        let whole = Int(seconds.rounded(.down))
        if let hit = lastFormatted.withLock({ $0.second == whole ? $0.text : nil }) { return hit }
        let text = format(whole)
        lastFormatted.withLock { $0 = (whole, text) }
        return text
    }

    private static let lastFormatted = Mutex<(second: Int, text: String)>((Int.min, ""))

    private static func format(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) +0000"
    }

    private static func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
}
