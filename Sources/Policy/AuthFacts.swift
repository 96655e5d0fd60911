/// The outcome of one sender-authentication check, as the policy and the
/// audit record see it: the result's name (RFC 8601 spelling: "pass",
/// "fail", "softfail", "neutral", "none", "temperror", "permerror"), the
/// domain it is about, and in words why.
public struct AuthCheck: Sendable, Equatable {
    public var result: String
    public var domain: String
    public var reason: String?

    public init(result: String, domain: String, reason: String? = nil) {
        self.result = result
        self.domain = domain
        self.reason = reason
    }
}

/// The SPF results a condition can name (RFC 7208 §2.6).
public enum SPFResultName {
    public static let all: Set<String> = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
}

extension PolicySet {
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
