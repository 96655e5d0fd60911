import Foundation

/// The numbers of `mxgate log --stats` and the console's Statistics page,
/// counted by this one type from the same fields, so the two always agree.
/// A decision is an SMTP-stage record (connection, command, recipient,
/// transaction): one answer the gateway gave a client. Queue deliveries,
/// quarantine actions and console events are not decisions and are left out.
public struct AuditStats: Sendable {
    public static let decisionEvents: Set<String> = ["connection", "command", "recipient", "transaction"]
    /// Spam score bins: below 0, then 2 wide up to 16, then 16 and more.
    public static let scoreBins: [Double] = [0, 2, 4, 6, 8, 10, 12, 14, 16]

    public var since: Date
    public var until: Date
    public private(set) var decisions = 0
    public private(set) var byVerdict: [String: Int] = [:]
    /// Hour (or day) start, seconds since 1970, to counts by verdict.
    public private(set) var hourly: [Int: [String: Int]] = [:]
    public private(set) var daily: [Int: [String: Int]] = [:]
    /// Rules behind the decisions that were not accepts.
    public private(set) var refusingRules: [String: Int] = [:]
    public private(set) var refusedClients: [String: Int] = [:]
    public private(set) var refusedSenderDomains: [String: Int] = [:]
    /// Transactions with a spam score, per bin of `scoreBins` (count + 1 bins).
    public private(set) var scores = [Int](repeating: 0, count: AuditStats.scoreBins.count + 1)

    public init(since: Date, until: Date) {
        self.since = since
        self.until = until
    }

    public mutating func add(_ r: AuditRecord) {
        add(time: r.time, event: r.event.rawValue, verdict: r.verdict.rawValue, rules: r.rules, clientIP: r.clientIP,
            mailFrom: r.mailFrom, spamScore: r.spamScore)
    }

    public mutating func add(time: Date, event: String, verdict: String, rules: [String], clientIP: String, mailFrom: String?, spamScore: Double?) {
        guard Self.decisionEvents.contains(event), time >= since, time < until else { return }
        decisions += 1
        byVerdict[verdict, default: 0] += 1
        let t = Int(time.timeIntervalSince1970.rounded(.down))
        hourly[t - t % 3600, default: [:]][verdict, default: 0] += 1
        daily[t - t % 86400, default: [:]][verdict, default: 0] += 1
        if verdict != "accepted" {
            for rule in rules { refusingRules[rule, default: 0] += 1 }
        }
        if verdict == "rejected" || verdict == "tempfailed" {
            refusedClients[clientIP, default: 0] += 1
            if let from = mailFrom {
                let domain = from.isEmpty ? "<>" : from.split(separator: "@").last.map { $0.lowercased() } ?? from
                refusedSenderDomains[domain, default: 0] += 1
            }
        }
        if event == "transaction", let s = spamScore {
            scores[Self.scoreBins.firstIndex { s < $0 } ?? Self.scoreBins.count] += 1
        }
    }

    /// A bin's label: "<0", "0–2", …, "≥16".
    public static func binLabel(_ i: Int) -> String {
        if i == 0 { return "<\(Int(scoreBins[0]))" }
        if i == scoreBins.count { return "≥\(Int(scoreBins[i - 1]))" }
        return "\(Int(scoreBins[i - 1]))–\(Int(scoreBins[i]))"
    }

    /// The `n` largest counts, ties in name order.
    public static func top(_ counts: [String: Int], _ n: Int) -> [(String, Int)] {
        Array(counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(n)).map { ($0.key, $0.value) }
    }

    public static let verdictOrder = ["accepted", "rejected", "tempfailed", "quarantined", "discarded"]

    /// The shell summary (`mxgate log --stats`).
    public func text(top n: Int = 10) -> String {
        var out = "decisions from \(AuditRecord.formatTime(since)) to \(AuditRecord.formatTime(until)): \(decisions)\n"
        for v in Self.verdictOrder where byVerdict[v] != nil { out += "  \(v.padding(toLength: 12, withPad: " ", startingAt: 0)) \(byVerdict[v]!)\n" }
        func section(_ title: String, _ buckets: [Int: [String: Int]], _ format: String) {
            guard !buckets.isEmpty else { return }
            out += "\n\(title)\n"
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = format
            for (t, counts) in buckets.sorted(by: { $0.key < $1.key }) {
                let parts = Self.verdictOrder.compactMap { v in counts[v].map { "\(v) \($0)" } }
                out += "  \(f.string(from: Date(timeIntervalSince1970: Double(t))))  " + parts.joined(separator: ", ") + "\n"
            }
        }
        section("by day (UTC)", daily, "yyyy-MM-dd")
        section("by hour (UTC)", hourly, "yyyy-MM-dd HH:00")
        for (title, counts) in [("top refusing rules", refusingRules), ("top refused clients", refusedClients),
                                ("top refused sender domains", refusedSenderDomains)] where !counts.isEmpty {
            out += "\n\(title)\n" + Self.top(counts, n).map { "  \(String($0.1).padding(toLength: 8, withPad: " ", startingAt: 0)) \($0.0)\n" }.joined()
        }
        if scores.contains(where: { $0 > 0 }) {
            out += "\nspam score (transactions)\n"
            for (i, c) in scores.enumerated() { out += "  \(Self.binLabel(i).padding(toLength: 6, withPad: " ", startingAt: 0)) \(c)\n" }
        }
        return out
    }

    /// The same numbers for the console's API (and scripts).
    public func json(top n: Int = 10) -> [String: Any] {
        func buckets(_ b: [Int: [String: Int]]) -> [[String: Any]] {
            b.sorted { $0.key < $1.key }.map { ["start": AuditRecord.formatTime(Date(timeIntervalSince1970: Double($0.key))), "counts": $0.value] }
        }
        func pairs(_ c: [String: Int]) -> [[String: Any]] { Self.top(c, n).map { ["name": $0.0, "count": $0.1] } }
        return [
            "since": AuditRecord.formatTime(since), "until": AuditRecord.formatTime(until), "decisions": decisions,
            "by_verdict": byVerdict, "hourly": buckets(hourly), "daily": buckets(daily),
            "top_rules": pairs(refusingRules), "top_clients": pairs(refusedClients), "top_sender_domains": pairs(refusedSenderDomains),
            "spam_scores": scores.enumerated().map { ["bin": Self.binLabel($0.offset), "count": $0.element] },
        ]
    }
}
