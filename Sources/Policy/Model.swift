import SMTPProtocol

/// The stages a rule can be attached to, in session order. `data` rules run
/// once the whole message is in (milter end-of-message), before anything
/// reaches the downstream.
public enum PolicyStage: String, Sendable, CaseIterable, Comparable {
    case connect, helo, mail, rcpt, data

    public static func < (a: PolicyStage, b: PolicyStage) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// What a rule does when its condition matches.
public indirect enum RuleAction: Sendable, Equatable {
    /// Stop evaluating this stage; later stages still run.
    case accept
    case reject(ReplyTemplate)
    case tempfail(ReplyTemplate)
    case disconnect(ReplyTemplate)
    /// Hold the message in the quarantine instead of delivering it (data only).
    case quarantine(String?)
    /// Answer 250 and drop the message (data only).
    case discard
    /// Add a header to the delivered message (data only).
    case addHeader(String)
    /// Mark the message as spam with X-Spam-* headers (data only).
    case tag
    case score(Double)
    /// Refuse with 451 until the sender retries after the greylist delay (rcpt and data).
    case greylist(ReplyTemplate)
    /// Log what `action` would have done (or just that the rule matched) and do nothing.
    case warn(RuleAction?)

    /// True for actions that end the evaluation of a stage.
    public var isDeciding: Bool {
        switch self {
        case .accept, .reject, .tempfail, .disconnect, .quarantine, .discard: return true
        // Decides only while the triplet has not passed: see `GreylistCheck`.
        case .addHeader, .tag, .score, .warn, .greylist: return false
        }
    }

    public var name: String {
        switch self {
        case .accept: return "accept"
        case .reject: return "reject"
        case .tempfail: return "tempfail"
        case .disconnect: return "disconnect"
        case .quarantine: return "quarantine"
        case .discard: return "discard"
        case .addHeader: return "add-header"
        case .tag: return "tag"
        case .score: return "score"
        case .greylist: return "greylist"
        case .warn: return "warn"
        }
    }
}

/// A reply with `{placeholders}` filled in when the rule fires.
public struct ReplyTemplate: Sendable, Equatable {
    public var code: Int
    public var enhanced: String
    public var text: String

    public init(code: Int, enhanced: String, text: String) {
        self.code = code
        self.enhanced = enhanced
        self.text = text
    }

    public func render(_ values: [String: String]) -> SMTPReply {
        SMTPReply(code, enhanced, ReplyTemplate.fill(text, values))
    }

    /// Replaces `{name}` with its value; unknown names are left as written.
    public static func fill(_ text: String, _ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            let key = String(rest[rest.index(after: open)..<close])
            out += values[key] ?? "{\(key)}"
            rest = rest[rest.index(after: close)...]
        }
        out += rest
        // A value must never smuggle a line break into a reply.
        return String(out.unicodeScalars.filter { $0 != "\r" && $0 != "\n" }.map(Character.init))
    }
}

public enum Comparison: String, Sendable {
    case gt = ">", ge = ">=", lt = "<", le = "<=", eq = "==", ne = "!="

    func holds(_ a: Double, _ b: Double) -> Bool {
        switch self {
        case .gt: return a > b
        case .ge: return a >= b
        case .lt: return a < b
        case .le: return a <= b
        case .eq: return a == b
        case .ne: return a != b
        }
    }
}

/// A named table as declared with `table NAME TYPE:PATH`.
public enum Table: Sendable {
    case cidr(CIDRTable)
    case list(ListTable)
    case regexp(RegexpTable)

    public var type: TableType {
        switch self {
        case .cidr: return .cidr
        case .list: return .list
        case .regexp: return .regexp
        }
    }

    public var path: String {
        switch self {
        case .cidr(let t): return t.path
        case .list(let t): return t.path
        case .regexp(let t): return t.path
        }
    }
}

/// What a value is compared with: a table, or values written in the rule.
public enum Matcher: Sendable {
    case table(name: String, Table)
    /// Literal strings (addresses, domains, names), matched like a list table.
    case literals(ListTable)
    case networks([CIDR])
    case regex(PosixRegex)
}

public enum HeloCheck: String, Sendable, CaseIterable {
    /// Not a syntactically valid host name or address literal (RFC 5321 §4.1.1.1).
    case invalid
    /// Claims to be this gateway: our hostname, one of our domains, or our IP.
    case ours
    /// A bare IP address without the brackets of an address literal.
    case bareIP = "bare-ip"
    /// An address literal such as [192.0.2.1].
    case literal
    /// A name without a dot.
    case unqualified
}

public indirect enum Condition: Sendable {
    case always
    case not(Condition)
    case all([Condition])
    case any([Condition])
    case clientIP(Matcher)
    case clientName(Matcher)      // forward-confirmed name, or "unknown"
    case ptr(Matcher)             // any PTR name, unverified
    case fcrdns                   // the PTR name resolves back to the client IP
    case helo(Matcher)
    case heloCheck(HeloCheck)
    case sender(Matcher)
    case nullSender
    case rcpt(Matcher)
    case country(Matcher)
    case asn(Set<Int>)
    case size(Comparison, Double)
    case declaredSize(Comparison, Double)
    case rcptCount(Comparison, Double)
    case spamScore(Comparison, Double)
    case headerPresent(String)
    case header(String, PosixRegex)
    case headerTable(RegexpTable)
    case tls
    /// The virus scanner found something (name in {virus}).
    case virus
    /// An attachment's file name matches one of the globs (`*.exe`, `*.*.exe`).
    case attachmentName([String])
    /// An attachment's declared or sniffed type matches one of the globs.
    case attachmentType([String])
    /// An attachment whose content is not what its name or declared type say.
    case attachmentMismatch
    /// The decoded text of the message matches.
    case body(PosixRegex)
    /// A line of the decoded text matches an entry of a regexp table (its action applies).
    case bodyTable(RegexpTable)
    /// A URL in the text or HTML matches (list tables: by host, with parent domains).
    case uri(Matcher)
    /// A DNS list answers for the client IP, the sender's domain, or a URL's domain.
    case dnsList(DNSList)
    /// The SPF result (of the MAIL FROM identity, or with `helo` of the HELO identity) is one of these.
    case spf(Set<String>, helo: Bool)
    /// A DKIM signature's result is one of these (`none`: there is no signature).
    case dkim(Set<String>)
    /// A signature that passed is by one of these domains (d=).
    case dkimDomain(Matcher)
    /// The DMARC result (RFC 7489) is one of these.
    case dmarc(Set<String>)
    /// The published DMARC policy of the From domain (p=, sp= or np=) is one of these.
    case dmarcPolicy(Set<String>)
    /// DMARC failed and asks for one of these dispositions (after t=y, pct= and trusted ARC sealers).
    case dmarcDisposition(Set<String>)
    /// The ARC chain's validity (RFC 8617) is one of these.
    case arc(Set<String>)
    /// An address of the From header matches.
    case from(Matcher)
    /// A domain of the From header matches.
    case fromDomain(Matcher)
    /// A heuristic found one of these signals (phishing links, look-alike senders, header anomalies, risky attachments).
    case signal(Set<String>)
    /// A milter mxgate asked answered one of these (MilterVerdict.names).
    case milter(String, Set<String>)

    /// The earliest stage at which the condition's facts are known.
    public var earliestStage: PolicyStage {
        switch self {
        case .always, .clientIP, .clientName, .ptr, .fcrdns, .country, .asn, .tls, .milter: return .connect
        case .helo, .heloCheck: return .helo
        case .sender, .nullSender, .declaredSize, .spf: return .mail
        case .rcpt, .rcptCount: return .rcpt
        case .size, .spamScore, .headerPresent, .header, .headerTable, .virus, .attachmentName, .attachmentType,
             .attachmentMismatch, .body, .bodyTable, .uri, .dkim, .dkimDomain, .dmarc, .dmarcPolicy, .dmarcDisposition,
             .arc, .from, .fromDomain, .signal: return .data
        case .dnsList(let l):
            switch l.target {
            case .client: return .connect
            case .sender: return .mail
            case .uri: return .data
            }
        case .not(let c): return c.earliestStage
        case .all(let cs), .any(let cs): return cs.map(\.earliestStage).max() ?? .connect
        }
    }

    /// True when the condition or any part of it satisfies `test`.
    func contains(where test: (Condition) -> Bool) -> Bool {
        switch self {
        case .not(let c): return c.contains(where: test)
        case .all(let cs), .any(let cs): return cs.contains { $0.contains(where: test) }
        default: return test(self)
        }
    }

    /// Reverse DNS for the client (client-name, ptr, fcrdns).
    var needsDNS: Bool {
        contains {
            switch $0 {
            case .clientName, .ptr, .fcrdns: return true
            default: return false
            }
        }
    }

    /// The DNS lists this condition asks.
    var dnsLists: [DNSList] {
        var out: [DNSList] = []
        _ = contains {
            if case .dnsList(let l) = $0 { out.append(l) }
            return false
        }
        return out
    }

    var needsHeaders: Bool {
        contains {
            switch $0 {
            case .headerPresent, .header, .headerTable, .from, .fromDomain: return true
            default: return false
            }
        }
    }

    public var usesGeoIP: Bool { needsGeoIP }

    /// True when the message must be walked part by part (attachments, body text).
    var needsMIME: Bool {
        contains {
            switch $0 {
            case .attachmentName, .attachmentType, .attachmentMismatch, .body, .bodyTable, .uri: return true
            default: return false
            }
        }
    }

    public var usesVirusScan: Bool {
        contains {
            if case .virus = $0 { return true }
            return false
        }
    }

    /// DKIM, checked at end of data (DMARC needs it too).
    var needsDKIM: Bool {
        needsDMARC || contains {
            switch $0 {
            case .dkim, .dkimDomain: return true
            default: return false
            }
        }
    }

    /// SPF, checked at mail (DMARC needs it too).
    var needsSPF: Bool {
        needsDMARC || contains {
            if case .spf = $0 { return true }
            return false
        }
    }

    /// DMARC, evaluated at end of data once SPF and DKIM are known.
    var needsDMARC: Bool {
        contains {
            switch $0 {
            case .dmarc, .dmarcPolicy, .dmarcDisposition: return true
            default: return false
            }
        }
    }

    /// The heuristics, run at end of data.
    var needsHeuristics: Bool {
        contains {
            if case .signal = $0 { return true }
            return false
        }
    }

    /// ARC, validated at end of data.
    var needsARC: Bool {
        contains {
            if case .arc = $0 { return true }
            return false
        }
    }

    var needsGeoIP: Bool {
        contains {
            switch $0 {
            case .country, .asn: return true
            default: return false
            }
        }
    }
}

/// A DNS block list (RFC 5782): the client's reversed IP, the sender's
/// domain, or a URL's domain, looked up under `zone`; listed when an A record
/// comes back that matches `codes` (any 127.0.0.0/8 answer when empty) and,
/// with a mask, shares a bit with it (SURBL style).
public struct DNSList: Sendable, Hashable {
    public enum Target: String, Sendable, Hashable { case client, sender, uri }
    public var zone: String
    public var target: Target
    public var codes: [CIDR]
    public var mask: UInt32?

    public init(zone: String, target: Target, codes: [CIDR], mask: UInt32?) {
        self.zone = zone
        self.target = target
        self.codes = codes
        self.mask = mask
    }

    /// The query names for a value: reversed IP labels, or a domain and its
    /// registered-domain guess (the last two labels).
    public func queries(for value: String) -> [String] {
        switch target {
        case .client:
            guard let ip = IPAddress(value) else { return [] }
            let rev = ip.reverseName
            let suffix = ip.isV4 ? ".in-addr.arpa" : ".ip6.arpa"
            return [String(rev.dropLast(suffix.count)) + "." + zone]
        case .sender, .uri:
            let labels = value.lowercased().split(separator: ".")
            guard labels.count >= 2 else { return [] }
            var names = [labels.suffix(2).joined(separator: ".") + "." + zone]
            if labels.count > 2 { names.append(labels.joined(separator: ".") + "." + zone) }
            return names
        }
    }

    /// Whether answers (A records) mean "listed".
    public func listed(_ answers: [IPAddress]) -> IPAddress? {
        answers.first { a in
            guard a.isV4 else { return false }
            let v = UInt32(truncatingIfNeeded: a.value)
            if let mask { return v & mask != 0 }
            if codes.isEmpty { return v >> 24 == 127 }
            return codes.contains { $0.contains(a) }
        }
    }
}

/// What a DNS list said for one query name.
public enum DNSListAnswer: Sendable, Equatable {
    case listed([IPAddress])
    case notListed
    case failed(String)
}

/// One line of policy: at STAGE match CONDITION ACTION.
public struct Rule: Sendable {
    /// Where it is written, e.g. "policies/inbound.policy:12": the name that
    /// goes into the audit record and the log.
    public let name: String
    public let stage: PolicyStage
    public let condition: Condition
    /// Nil when the condition is an action table (`header regexp:…`), whose
    /// matching entry brings its own action.
    public let action: RuleAction?
    /// The rule as written, for explanations.
    public let text: String
}

/// Limits, global or per recipient domain.
public struct PolicyLimits: Sendable, Equatable {
    public var messageSize: Int?
    public var recipients: Int?
    public var connectionsPerClient: Int?
    public var messagesPerClientPerMinute: Int?
    /// Score thresholds usable as `spam-score >= tag-threshold` etc. are
    /// plain numbers in rules; these limits are the per-domain knobs.
    public init() {}

    /// Values set here win over `base`.
    func over(_ base: PolicyLimits) -> PolicyLimits {
        var r = base
        if let v = messageSize { r.messageSize = v }
        if let v = recipients { r.recipients = v }
        if let v = connectionsPerClient { r.connectionsPerClient = v }
        if let v = messagesPerClientPerMinute { r.messagesPerClientPerMinute = v }
        return r
    }
}

/// Rules and limits that apply to the recipients of some domains.
public struct DomainSection: Sendable {
    public let domains: [String]
    public let name: String
    public var rules: [Rule] = []
    public var limits = PolicyLimits()

    func covers(_ domain: String) -> Bool {
        let d = domain.lowercased()
        return domains.contains { $0 == d || ($0.hasPrefix(".") && d.hasSuffix($0)) }
    }
}
