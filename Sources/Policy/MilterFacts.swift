import SMTPProtocol

/// What a milter mxgate asked (`[[milters]]`) answered at a stage. A
/// refusal is the stage's answer before any rule; every answer is also a
/// fact the rules can read (`milter NAME VERDICT`), such as "the scanner
/// was down and the admin chose to carry on".
public struct MilterVerdict: Sendable, Equatable {
    public var milter: String
    /// One of `names`.
    public var verdict: String
    /// For reject and tempfail: the reply the client gets.
    public var reply: SMTPReply?
    /// For the audit record: the milter's quarantine reason, or why it failed.
    public var reason: String?

    public init(milter: String, verdict: String, reply: SMTPReply? = nil, reason: String? = nil) {
        self.milter = milter
        self.verdict = verdict
        self.reply = reply
        self.reason = reason
    }

    /// "failed": the milter could not be asked and its default_action is accept.
    public static let names: Set<String> = ["continue", "accept", "reject", "tempfail", "discard", "quarantine", "failed"]

    /// Decides the stage or the message, whatever the rules say.
    public var decides: Bool { ["reject", "tempfail", "discard", "quarantine"].contains(verdict) }
}

extension PolicySet {
    func testMilter(_ name: String, _ verdicts: Set<String>, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        guard let v = f.milters[name], verdicts.contains(v) else { return .no }
        ctx.value = v
        ctx.why.append("milter \(name) answered \(v)")
        return .yes
    }
}

extension PolicySet {
    /// Every milter a rule asks about (`milter NAME`), by rule: `mxgate
    /// check` refuses names no `[[milters]]` entry has (they never match).
    public var milterConditions: [(rule: String, milter: String)] {
        (rules + sections.flatMap(\.rules)).flatMap { rule -> [(rule: String, milter: String)] in
            var names: [String] = []
            _ = rule.condition.contains { c in
                if case .milter(let n, _) = c { names.append(n) }
                return false
            }
            return names.map { (rule.name, $0) }
        }
    }
}
