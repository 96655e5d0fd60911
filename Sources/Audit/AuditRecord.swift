import Foundation
import Synchronization

/// One decision, as an admin reads it later: who connected, what they asked
/// for, what mxgate answered and why. One JSON object per line; the field
/// names are part of mxgate's contract (DESIGN.md) and never change meaning.
public struct AuditRecord: Codable, Sendable, Equatable {
    /// The outcome. `connection` records a refused or dropped connection with no transaction.
    public enum Verdict: String, Codable, Sendable, CaseIterable {
        case accepted, rejected, tempfailed, quarantined, discarded
    }

    /// What the record is about: a whole transaction, one refused recipient,
    /// or a connection refused before any transaction.
    public enum Event: String, Codable, Sendable {
        case transaction, recipient, connection, command
        /// A release or deletion of a quarantined message (`mxgate quarantine`).
        case quarantine
        /// What the queue did with a message it holds: delivered, deferred,
        /// failed, expired, bounced, held, released, deleted (in `reason`).
        case delivery
        /// What a review console user did: logins, failed logins, releases, deletions, queue actions.
        case console
    }

    public var time: Date
    public var event: Event
    public var session: String
    public var clientIP: String
    public var clientPort: Int?
    public var helo: String?
    public var tls: Bool
    public var mailFrom: String?
    public var rcptTo: [String]
    public var messageID: String?
    public var size: Int?
    public var verdict: Verdict
    public var reply: String
    public var rules: [String]
    public var spamScore: Double?
    public var virus: String?
    public var relay: String?
    /// Why, in words, when no rule name says it (e.g. "downstream unreachable").
    public var reason: String?
    /// What `warn` rules would have done ("policies/x.policy:3: warn: would reject: 550 …").
    public var warnings: [String] = []
    /// Each spam symbol (the rule or table entry that scored) and its score.
    public var symbols: [String: Double] = [:]
    /// Sender authentication (SPF), when it was checked.
    public var auth: AuditAuth?
    /// The classifier's spam probability, when it is trained and was asked.
    public var classifier: Double?
    /// The heuristic signals found (scored or not), by name.
    public var signals: [String] = []
    /// Why each rule in `rules` fired, in words (the explanation `mxgate
    /// test` prints: "header Subject matches /hold me/"), by rule name.
    public var because: [String: String] = [:]
    /// The client's country (ISO 3166 code) when a GeoIP database knew it.
    public var country: String?
    /// What a `greylist` rule found: the triplet, the outcome and how long the sender waited.
    public var greylist: AuditGreylist?
    /// Set when the session came through the milter protocol: the MTA that asked, and its queue id.
    public var milter: AuditMilter?

    public init(time: Date = Date(), event: Event, session: String, clientIP: String, clientPort: Int? = nil,
                helo: String? = nil, tls: Bool = false, mailFrom: String? = nil, rcptTo: [String] = [],
                messageID: String? = nil, size: Int? = nil, verdict: Verdict, reply: String,
                rules: [String] = [], spamScore: Double? = nil, virus: String? = nil, relay: String? = nil,
                reason: String? = nil) {
        self.time = time
        self.event = event
        self.session = session
        self.clientIP = clientIP
        self.clientPort = clientPort
        self.helo = helo
        self.tls = tls
        self.mailFrom = mailFrom
        self.rcptTo = rcptTo
        self.messageID = messageID
        self.size = size
        self.verdict = verdict
        self.reply = reply
        self.rules = rules
        self.spamScore = spamScore
        self.virus = virus
        self.relay = relay
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case time, event, session
        case clientIP = "client_ip"
        case clientPort = "client_port"
        case helo, tls
        case mailFrom = "mail_from"
        case rcptTo = "rcpt_to"
        case messageID = "message_id"
        case size, verdict, reply, rules
        case spamScore = "spam_score"
        case virus, relay, reason, warnings, symbols, auth, classifier, signals, because, country, greylist, milter
    }

    // Every contract field is written even when empty (as null), so a reader
    // never has to guess whether a field is missing or unknown.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(AuditRecord.formatTime(time), forKey: .time)
        try c.encode(event, forKey: .event)
        try c.encode(session, forKey: .session)
        try c.encode(clientIP, forKey: .clientIP)
        try c.encodeIfPresent(clientPort, forKey: .clientPort)
        try c.encode(helo, forKey: .helo)
        try c.encode(tls, forKey: .tls)
        try c.encode(mailFrom, forKey: .mailFrom)
        try c.encode(rcptTo, forKey: .rcptTo)
        try c.encode(messageID, forKey: .messageID)
        try c.encode(size, forKey: .size)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(reply, forKey: .reply)
        try c.encode(rules, forKey: .rules)
        try c.encode(spamScore, forKey: .spamScore)
        try c.encode(virus, forKey: .virus)
        try c.encode(relay, forKey: .relay)
        try c.encodeIfPresent(reason, forKey: .reason)
        if !warnings.isEmpty { try c.encode(warnings, forKey: .warnings) }
        if !symbols.isEmpty { try c.encode(symbols, forKey: .symbols) }
        if let auth, !auth.isEmpty { try c.encode(auth, forKey: .auth) }
        try c.encodeIfPresent(classifier, forKey: .classifier)
        if !signals.isEmpty { try c.encode(signals, forKey: .signals) }
        if !because.isEmpty { try c.encode(because, forKey: .because) }
        try c.encodeIfPresent(country, forKey: .country)
        try c.encodeIfPresent(greylist, forKey: .greylist)
        try c.encodeIfPresent(milter, forKey: .milter)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let t = try c.decode(String.self, forKey: .time)
        guard let date = AuditRecord.parseTime(t) else {
            throw DecodingError.dataCorruptedError(forKey: .time, in: c, debugDescription: "not RFC 3339: \(t)")
        }
        time = date
        event = try c.decodeIfPresent(Event.self, forKey: .event) ?? .transaction
        session = try c.decode(String.self, forKey: .session)
        clientIP = try c.decode(String.self, forKey: .clientIP)
        clientPort = try c.decodeIfPresent(Int.self, forKey: .clientPort)
        helo = try c.decodeIfPresent(String.self, forKey: .helo)
        tls = try c.decodeIfPresent(Bool.self, forKey: .tls) ?? false
        mailFrom = try c.decodeIfPresent(String.self, forKey: .mailFrom)
        rcptTo = try c.decodeIfPresent([String].self, forKey: .rcptTo) ?? []
        messageID = try c.decodeIfPresent(String.self, forKey: .messageID)
        size = try c.decodeIfPresent(Int.self, forKey: .size)
        verdict = try c.decode(Verdict.self, forKey: .verdict)
        reply = try c.decode(String.self, forKey: .reply)
        rules = try c.decodeIfPresent([String].self, forKey: .rules) ?? []
        spamScore = try c.decodeIfPresent(Double.self, forKey: .spamScore)
        virus = try c.decodeIfPresent(String.self, forKey: .virus)
        relay = try c.decodeIfPresent(String.self, forKey: .relay)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        warnings = try c.decodeIfPresent([String].self, forKey: .warnings) ?? []
        symbols = try c.decodeIfPresent([String: Double].self, forKey: .symbols) ?? [:]
        auth = try c.decodeIfPresent(AuditAuth.self, forKey: .auth)
        classifier = try c.decodeIfPresent(Double.self, forKey: .classifier)
        because = try c.decodeIfPresent([String: String].self, forKey: .because) ?? [:]
        country = try c.decodeIfPresent(String.self, forKey: .country)
        greylist = try c.decodeIfPresent(AuditGreylist.self, forKey: .greylist)
        milter = try c.decodeIfPresent(AuditMilter.self, forKey: .milter)
        signals = try c.decodeIfPresent([String].self, forKey: .signals) ?? []
    }

    /// RFC 3339 in UTC with milliseconds, e.g. 2026-11-30T03:04:25.123Z.
    /// RFC 3339 in UTC with milliseconds ("2026-11-30T06:11:39.123Z"),
    /// by hand: a format style per record cost more than the record.
    public static func formatTime(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        let whole = seconds.rounded(.down)
        // The part up to the second is shared by every record of that second.
        let second = Int(whole)
        let prefix: String
        if let hit = lastSecond.withLock({ $0.second == second ? $0.text : nil }) {
            prefix = hit
        } else {
            var t = time_t(whole)
            var tm = tm()
            gmtime_r(&t, &tm)
            func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
            prefix = "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))."
            lastSecond.withLock { $0 = (second, prefix) }
        }
        let ms = min(999, Int(((seconds - whole) * 1000).rounded(.down)))
        var text = prefix
        text.append(Character(Unicode.Scalar(UInt8(48 + ms / 100))))
        text.append(Character(Unicode.Scalar(UInt8(48 + ms / 10 % 10))))
        text.append(Character(Unicode.Scalar(UInt8(48 + ms % 10))))
        text.append("Z")
        return text
    }

    private static let lastSecond = Mutex<(second: Int, text: String)>((Int.min, ""))

    public static func parseTime(_ s: String) -> Date? {
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(s) { return d }
        return try? Date.ISO8601FormatStyle().parse(s)
    }

    /// The record as one JSON line (without the newline), keys sorted,
    /// written by hand: JSONEncoder cost a twentieth of a relayed message's
    /// CPU. Same output as `encode(to:)` through a sorted-keys encoder.
    public func jsonLine() -> String { String(decoding: jsonBytes(), as: UTF8.self) }

    /// The record as one JSON object in UTF-8, without the line end: what
    /// the audit writer appends (built as bytes, as one is made per decision).
    public func jsonBytes() -> [UInt8] {
        var j = JSONLine()
        if let auth, !auth.isEmpty { j.add("auth", object: auth.json()) }
        if !because.isEmpty { j.add("because", because) }
        if let classifier { j.add("classifier", classifier) }
        j.add("client_ip", clientIP)
        if let clientPort { j.add("client_port", clientPort) }
        if let country { j.add("country", country) }
        j.add("event", event.rawValue)
        if let greylist { j.add("greylist", object: greylist.json()) }
        j.add("helo", helo)
        j.add("mail_from", mailFrom)
        j.add("message_id", messageID)
        if let milter { j.add("milter", object: milter.json()) }
        j.add("rcpt_to", rcptTo)
        if let reason { j.add("reason", reason) }
        j.add("relay", relay)
        j.add("reply", reply)
        j.add("rules", rules)
        j.add("session", session)
        if !signals.isEmpty { j.add("signals", signals) }
        j.add("size", size)
        j.add("spam_score", spamScore)
        if !symbols.isEmpty { j.add("symbols", symbols) }
        j.add("time", AuditRecord.formatTime(time))
        j.add("tls", tls)
        j.add("verdict", verdict.rawValue)
        j.add("virus", virus)
        if !warnings.isEmpty { j.add("warnings", warnings) }
        return j.finish()
    }
}

/// JSON strings as bytes, for the writers that build JSON by hand (the
/// audit log here, the spool's envelopes in Relay).
public enum JSONText {
    /// Appends `"k":`, after a comma unless `out` holds only the opening brace.
    public static func appendKey(_ k: StaticString, to out: inout [UInt8]) {
        if out.count > 1 { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    /// Appends `s` quoted and escaped (RFC 8259 §7): quote, backslash and
    /// control characters; everything else, UTF-8 included, is copied as it is.
    public static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        defer { out.append(UInt8(ascii: "\"")) }
        // Most values need no escaping: copied in one go then.
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
            return true
        }
        if plain == true {
            out.append(contentsOf: s.utf8)
            return
        }
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [92, 34]
            case UInt8(ascii: "\\"): out += [92, 92]
            case 10: out += [92, UInt8(ascii: "n")]
            case 13: out += [92, UInt8(ascii: "r")]
            case 9: out += [92, UInt8(ascii: "t")]
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out += [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
    }
}

/// A JSON object written field by field, in the order given, as UTF-8 bytes.
struct JSONLine {
    private var out: [UInt8]

    init() {
        out = []
        out.reserveCapacity(512)
        out.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ k: StaticString) { JSONText.appendKey(k, to: &out) }

    private mutating func raw(_ s: String) { out.append(contentsOf: s.utf8) }

    private mutating func quoted(_ s: String) { JSONText.appendQuoted(s, to: &out) }

    static func number(_ d: Double) -> String {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return d.isFinite ? "\(d)" : "null"
    }

    mutating func add(_ k: StaticString, _ v: String?) {
        key(k)
        if let v { quoted(v) } else { raw("null") }
    }
    mutating func add(_ k: StaticString, _ v: Int?) { key(k); raw(v.map { String($0) } ?? "null") }
    mutating func add(_ k: StaticString, _ v: Double?) { key(k); raw(v.map(Self.number) ?? "null") }
    mutating func add(_ k: StaticString, _ v: Bool) { key(k); raw(v ? "true" : "false") }
    mutating func add(_ k: StaticString, object json: [UInt8]) {
        key(k)
        out += json
    }
    mutating func add(_ k: StaticString, _ v: [String]) {
        key(k)
        out.append(UInt8(ascii: "["))
        for (i, item) in v.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            quoted(item)
        }
        out.append(UInt8(ascii: "]"))
    }
    mutating func add(_ k: StaticString, _ v: [String: Double]) {
        key(k)
        out.append(UInt8(ascii: "{"))
        for (i, name) in v.keys.sorted().enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            quoted(name)
            out.append(UInt8(ascii: ":"))
            raw(Self.number(v[name]!))
        }
        out.append(UInt8(ascii: "}"))
    }

    mutating func add(_ k: StaticString, _ v: [String: String]) {
        key(k)
        out.append(UInt8(ascii: "{"))
        for (i, name) in v.keys.sorted().enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            quoted(name)
            out.append(UInt8(ascii: ":"))
            quoted(v[name]!)
        }
        out.append(UInt8(ascii: "}"))
    }

    func finish() -> [UInt8] { out + [UInt8(ascii: "}")] }
}

/// A greylist decision in the audit record: `{"outcome": "new", "triplet":
/// "192.0.2.0/24 / a@b / c@d", "waited": 312}` (seconds since the first attempt).
public struct AuditGreylist: Codable, Sendable, Equatable {
    public var outcome: String
    public var triplet: String
    public var waited: Int

    public init(outcome: String, triplet: String, waited: Int) {
        self.outcome = outcome
        self.triplet = triplet
        self.waited = waited
    }

    func json() -> [UInt8] {
        var out: [UInt8] = Array("{\"outcome\":".utf8)
        JSONText.appendQuoted(outcome, to: &out)
        out += Array(",\"triplet\":".utf8)
        JSONText.appendQuoted(triplet, to: &out)
        out += Array(",\"waited\":\(waited)}".utf8)
        return out
    }
}

/// Where a milter session came from: `{"mta": "mx1.example.org", "queue_id":
/// "4XyZ1c2Kq0z"}` (the MTA's `j` and `i` macros), so a record can be
/// matched with the MTA's own log line.
public struct AuditMilter: Codable, Sendable, Equatable {
    public var mta: String
    public var queueID: String?

    public init(mta: String, queueID: String?) {
        self.mta = mta
        self.queueID = queueID
    }

    enum CodingKeys: String, CodingKey {
        case mta
        case queueID = "queue_id"
    }

    func json() -> [UInt8] {
        var out: [UInt8] = Array("{\"mta\":".utf8)
        JSONText.appendQuoted(mta, to: &out)
        if let queueID {
            out += Array(",\"queue_id\":".utf8)
            JSONText.appendQuoted(queueID, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
