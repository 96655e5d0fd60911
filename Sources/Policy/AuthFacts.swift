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
