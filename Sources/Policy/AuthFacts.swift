import MailMessage

/// The outcome of one sender-authentication check, as the policy and the
/// audit record see it: the result's name (RFC 8601 spelling: "pass",
/// "fail", "softfail", "neutral", "none", "temperror", "permerror"), the
/// domain it is about, and in words why.
public struct AuthCheck: Sendable, Equatable {
    public var result: String
    public var domain: String
    public var reason: String?
    /// A DKIM signature's selector (s=).
    public var selector: String?

    public init(result: String, domain: String, reason: String? = nil, selector: String? = nil) {
        self.result = result
        self.domain = domain
        self.reason = reason
        self.selector = selector
    }
}

/// The DKIM results a condition can name (RFC 8601 §2.7.1).
public enum DKIMResultName {
    public static let all: Set<String> = ["pass", "fail", "neutral", "policy", "none", "temperror", "permerror"]
}

/// The SPF results a condition can name (RFC 7208 §2.6).
public enum SPFResultName {
    public static let all: Set<String> = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
}

extension PolicySet {
    /// `dkim RESULT[, …]`: a signature's result is one named (`none`: the
    /// message has no signature). Nil facts: DKIM was not checked.
    func testDKIM(_ results: Set<String>, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let sigs = f.dkim else { return .no }
        if sigs.isEmpty {
            guard results.contains("none") else { return .no }
            ctx.value = "none"
            ctx.why.append("the message has no DKIM signature")
            return .yes
        }
        if let s = sigs.first(where: { results.contains($0.result) }) {
            ctx.value = s.result
            ctx.why.append("DKIM \(s.result) for d=\(s.domain) s=\(s.selector ?? "")" + (s.reason.map { ": \($0)" } ?? ""))
            return .yes
        }
        if let t = sigs.first(where: { $0.result == "temperror" }) {
            return .unknown("DKIM key lookup for \(t.domain) failed temporarily: \(t.reason ?? "")")
        }
        return .no
    }

    /// `dkim-domain …`: a signature that passed is by one of these domains.
    func testDKIMDomain(_ m: Matcher, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        for s in f.dkim ?? [] where s.result == "pass" {
            if case .yes = match(m, s.domain, as: .domain, label: "DKIM signing domain", &ctx) { return .yes }
        }
        return .no
    }

    /// `spf RESULT[, RESULT…]` and `spf-helo …`: true when the check's result is
    /// one named. A temperror that is not named is unknown (the rule
    /// tempfails), so a DNS failure never passes for a result it might hide.
    func testSPF(_ results: Set<String>, helo: Bool, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let check = helo ? f.spfHelo : f.spf else { return .no }
        if results.contains(check.result) {
            ctx.value = check.result
            ctx.why.append("SPF\(helo ? " (HELO)" : "") \(check.result) for \(check.domain)" + (check.reason.map { ": \($0)" } ?? ""))
            return .yes
        }
        if check.result == "temperror" { return .unknown("SPF check of \(check.domain) failed temporarily: \(check.reason ?? "")") }
        return .no
    }
}

/// DMARC's conclusion as the policy and the audit record see it.
public struct DMARCCheck: Sendable, Equatable {
    /// pass, fail, none, temperror, permerror.
    public var result: String
    /// The From domain it is about.
    public var domain: String
    /// The published policy that applies (none, quarantine, reject); nil: no record, or it could not be read.
    public var policy: String?
    /// What DMARC asks for this message: the policy for a failure, eased by
    /// t=y, pct= or a trusted ARC sealer; "none" for anything else.
    public var disposition: String
    public var reason: String

    public init(result: String, domain: String, policy: String?, disposition: String, reason: String) {
        self.result = result
        self.domain = domain
        self.policy = policy
        self.disposition = disposition
        self.reason = reason
    }
}

/// The ARC chain's validity (RFC 8617) and who sealed it.
public struct ARCCheck: Sendable, Equatable {
    public struct Hop: Sendable, Equatable {
        public var instance: Int
        public var sealer: String
        /// dmarc= in the hop's ARC-Authentication-Results, and its header.from.
        public var dmarc: String?
        public var headerFrom: String?
        public init(instance: Int, sealer: String, dmarc: String?, headerFrom: String?) {
            self.instance = instance
            self.sealer = sealer
            self.dmarc = dmarc
            self.headerFrom = headerFrom
        }
    }
    /// none, pass, fail.
    public var result: String
    public var oldestPass: Int
    /// Newest first; empty unless the chain passed.
    public var hops: [Hop]
    public var reason: String?

    public init(result: String, oldestPass: Int = 0, hops: [Hop] = [], reason: String? = nil) {
        self.result = result
        self.oldestPass = oldestPass
        self.hops = hops
        self.reason = reason
    }
}

/// The DMARC results and policies a condition can name.
public enum DMARCResultName {
    public static let all: Set<String> = ["pass", "fail", "none", "temperror", "permerror"]
    public static let policies: Set<String> = ["none", "quarantine", "reject"]
}

/// The ARC chain results a condition can name (RFC 8617 §4.4).
public enum ARCResultName {
    public static let all: Set<String> = ["none", "pass", "fail"]
}

extension SessionFacts {
    /// Every address of every From field (the RFC5322.From identity DMARC is about).
    public var fromAddresses: [String] {
        headers.filter { $0.name.caseInsensitiveCompare("from") }.flatMap { AddressList.addresses(in: $0.value) }
    }

    /// Every domain of every From field.
    public var fromDomains: [String] {
        headers.filter { $0.name.caseInsensitiveCompare("from") }.flatMap { AddressList.domains(in: $0.value) }
    }
}

extension PolicySet {
    /// `dmarc RESULT[, …]`; a temperror the rule does not name makes it unknown (tempfail).
    func testDMARC(_ results: Set<String>, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let d = f.dmarc else { return .no }
        if results.contains(d.result) {
            ctx.value = d.domain
            ctx.why.append("DMARC \(d.result) for \(d.domain): \(d.reason)")
            return .yes
        }
        if d.result == "temperror" { return .unknown("DMARC check of \(d.domain) failed temporarily: \(d.reason)") }
        return .no
    }

    /// `dmarc-policy P[, …]`: the policy the From domain publishes, when it could be read.
    func testDMARCPolicy(_ policies: Set<String>, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let d = f.dmarc, let p = d.policy, policies.contains(p) else { return .no }
        ctx.value = d.domain
        ctx.why.append("\(d.domain) publishes DMARC p=\(p)")
        return .yes
    }

    /// `dmarc-disposition P[, …]`: DMARC failed and asks for one of these.
    /// A temperror for a domain whose policy is quarantine or reject is
    /// unknown: the verdict it would decide is not given away as an accept.
    func testDMARCDisposition(_ dispositions: Set<String>, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let d = f.dmarc else { return .no }
        if d.result == "temperror", let p = d.policy, p != "none", dispositions.contains(p) {
            return .unknown("DMARC check of \(d.domain) (p=\(p)) failed temporarily: \(d.reason)")
        }
        guard d.result == "fail", dispositions.contains(d.disposition) else { return .no }
        ctx.value = d.domain
        ctx.why.append("DMARC fail for \(d.domain), policy \(d.policy ?? "none"), disposition \(d.disposition): \(d.reason)")
        return .yes
    }

    /// `arc RESULT[, …]`: the chain's validity.
    func testARC(_ results: Set<String>, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let a = f.arc, results.contains(a.result) else { return .no }
        ctx.value = a.result
        ctx.why.append("ARC chain \(a.result)" + (a.hops.first.map { " (newest seal by \($0.sealer))" } ?? "") + (a.reason.map { ": \($0)" } ?? ""))
        return .yes
    }
}
