import Audit
import Checks
import Classifier
import MailMessage
import Policy
import SMTPProtocol

/// The policy side of one SMTP session, free of I/O: the relay gate, the
/// limits, domain sections and the rule engine at each stage, plus what the
/// audit record needs (rules fired, warnings, score, headers to add). The
/// live session and `mxgate test` both drive it, so a dry run decides
/// exactly as the gateway would.
public struct PolicyDriver {
    public enum Verdict: Equatable {
        case proceed
        /// Refuse with this reply; `closes` ends the connection.
        case refuse(SMTPReply, rules: [String], closes: Bool, reason: String?)
    }

    public enum DataVerdict: Equatable {
        case deliver
        case refuse(SMTPReply, rules: [String], closes: Bool)
        case discard(rule: String)
        case quarantine(rule: String, reason: String?)
    }

    let policy: PolicySet
    let gate: RelayGate
    /// Called for every rule that fires, for the log.
    let onFire: (PolicyStage, FiredRule) -> Void
    public internal(set) var facts: SessionFacts

    private var sessionRules: [String] = []
    private var sessionWarnings: [String] = []
    private var sessionScore: Double = 0
    private var sessionScored = false
    private var sessionSymbols: [(name: String, score: Double)] = []

    private(set) var rules: [String] = []
    private(set) var warnings: [String] = []
    private(set) var scored = false
    /// Every score that fired in this transaction, in order: the spam symbols.
    private(set) var symbols: [(name: String, score: Double)] = []
    private(set) var extraHeaders: [String] = []
    /// What the last `greylist` rule of this transaction found (for the
    /// audit record, and for the session to remember the attempt).
    private(set) var greylist: GreylistCheck?
    /// What a `greylist` rule of the stage just evaluated found (nil: none fired).
    private(set) var greylistThisStage: GreylistCheck?
    private(set) var tagged = false
    /// What the classifier read of this message (for autolearn).
    private(set) var classified: MessageFeatures?
    /// Header changes the milters asked for, applied to the message relayed.
    private(set) var headerEdits: [MilterHeaderEdit] = []
    /// Every rule that fired in the session, with its explanation; kept only
    /// for dry runs (`keepFired`), where it is the report.
    private(set) var fired: [(PolicyStage, FiredRule)] = []
    var keepFired = false

    /// The per-client limits are counted by the caller (`SharedState`, live)
    /// and passed in as `admitted`; dry runs and benchmarks have none.
    public init(policy: PolicySet, gate: RelayGate, facts: SessionFacts,
                onFire: @escaping (PolicyStage, FiredRule) -> Void = { _, _ in }) {
        self.policy = policy
        self.gate = gate
        self.facts = facts
        self.onFire = onFire
    }

    var spamScore: Double? { scored ? facts.score : nil }

    /// Why each rule fired this session, by name, for the audit records' `because`.
    private(set) var explanations: [String: String] = [:]

    func explanations(for rules: [String]) -> [String: String] {
        explanations.isEmpty ? [:] : rules.reduce(into: [:]) { out, name in if let e = explanations[name] { out[name] = e } }
    }

    /// Symbols for the audit record: name → score (summed if a name fired twice).
    var symbolScores: [String: Double] {
        symbols.reduce(into: [:]) { $0[$1.name, default: 0] += $1.score }
    }
    var transactionLimits: PolicyLimits { policy.limits(for: facts.section) }

    private mutating func consult(_ stage: PolicyStage, _ f: SessionFacts) -> StageOutcome {
        let out = policy.evaluate(stage, f)
        for r in out.fired {
            if !r.explanation.isEmpty { explanations[r.name] = r.explanation }
            onFire(stage, r)
            if keepFired { fired.append((stage, r)) }
        }
        return out
    }

    private static func refusal(_ out: StageOutcome) -> Verdict? {
        guard let (reply, _) = out.decision.refusal else { return nil }
        return .refuse(reply, rules: out.fired.map(\.name), closes: out.decision.closesConnection, reason: nil)
    }

    private mutating func absorbSession(_ out: StageOutcome) {
        sessionRules += out.fired.map(\.name)
        sessionWarnings += out.fired.filter(\.warnOnly).map { "\($0.name): \($0.action)" }
        sessionScore += out.scoreDelta
        sessionSymbols += out.symbols
        if !out.symbols.isEmpty { sessionScored = true }
        facts.score = sessionScore
    }

    private mutating func absorb(_ out: StageOutcome) {
        rules += out.fired.map(\.name)
        warnings += out.fired.filter(\.warnOnly).map { "\($0.name): \($0.action)" }
        facts.score += out.scoreDelta
        symbols += out.symbols
        if !out.symbols.isEmpty { scored = true }
        extraHeaders += out.headers
        if out.tag { tagged = true }
    }

    // MARK: stages

    /// A milter refused this stage (reject or tempfail): that is the answer,
    /// and the rule named in the audit record is the milter. A discard or a
    /// quarantine before the text waits for the end of the message.
    private mutating func milterRefusal(closes: Bool) -> Verdict? {
        guard let m = facts.milterVerdict, let reply = m.reply else { return nil }
        facts.milterVerdict = nil
        return .refuse(reply, rules: ["milter \(m.milter)"], closes: closes, reason: m.reason)
    }

    /// Connection limits (`admitted`: within `limit connections-per-client`), then `at connect` rules.
    public mutating func connect(inspected: Findings = Findings(), admitted: Bool = true) -> Verdict {
        guard admitted else {
            return .refuse(SMTPReply(421, "4.7.0", "Error: too many connections from \(facts.clientIP)"),
                           rules: ["limit connections-per-client"], closes: true, reason: nil)
        }
        absorb(inspected, at: .connect)
        if let r = milterRefusal(closes: true) { return r }
        let out = consult(.connect, facts)
        if let r = Self.refusal(out) { return r }
        absorbSession(out)
        return .proceed
    }

    public mutating func helo(_ name: String, inspected: Findings = Findings()) -> Verdict {
        let previous = facts.helo
        facts.helo = name
        absorb(inspected, at: .helo)
        if let r = milterRefusal(closes: false) {
            facts.helo = previous
            return r
        }
        let out = consult(.helo, facts)
        if let r = Self.refusal(out) {
            facts.helo = previous
            return r
        }
        absorbSession(out)
        return .proceed
    }

    /// Message rate, then `at mail` rules; on success a transaction starts.
    public mutating func mail(_ path: ReversePath, _ params: MailParameters, inspected: Findings = Findings(),
                              admitted: Bool = true) -> Verdict {
        if !admitted {
            return .refuse(SMTPReply(421, "4.7.0", "Error: too much mail from \(facts.clientIP), try again later"),
                           rules: ["limit messages-per-client"], closes: true, reason: nil)
        }
        endTransaction()
        facts.mailFrom = path
        facts.mailParameters = params
        absorb(inspected, at: .mail)
        let milter = milterRefusal(closes: false)
        let out = milter == nil ? consult(.mail, facts) : StageOutcome()
        if let r = milter ?? Self.refusal(out) {
            facts.mailFrom = nil
            facts.mailParameters = nil
            return r
        }
        absorb(out)
        return .proceed
    }

    /// The relay gate, the one-policy-per-transaction rule, per-domain limits,
    /// then `at rcpt` rules. `box` has <Postmaster> already completed.
    public mutating func rcpt(_ box: Mailbox, original: Mailbox, inspected: Findings = Findings()) -> Verdict {
        if let reply = gate.check(original) {
            return .refuse(reply, rules: ["relay-gate"], closes: false, reason: nil)
        }
        // One transaction, one policy: a recipient whose domain section differs
        // from the first recipient's is deferred, as amavisd-new does.
        let section = policy.section(for: box.domain)
        if !facts.recipients.isEmpty && section != facts.section {
            return .refuse(SMTPReply(452, "4.5.3", "Recipient has a different policy, send it in a separate transaction"),
                           rules: ["policy-section"], closes: false,
                           reason: "\(policy.sectionName(section)) differs from \(policy.sectionName(facts.section))")
        }
        let limits = policy.limits(for: section)
        if let max = limits.recipients, facts.recipients.count >= max {
            return .refuse(.tooManyRecipients, rules: ["limit recipients"], closes: false, reason: nil)
        }
        if let max = limits.messageSize, let declared = facts.mailParameters?.size, declared > max {
            return .refuse(SMTPReply(552, "5.3.4", "Message size exceeds the limit for \(box.domain)"),
                           rules: ["limit message-size"], closes: false, reason: nil)
        }
        let previousSection = facts.section
        facts.recipient = box
        facts.section = section
        absorb(inspected, at: .rcpt)
        if let r = milterRefusal(closes: false) {
            greylistThisStage = nil
            facts.recipient = nil
            facts.section = previousSection
            return r
        }
        let out = consult(.rcpt, facts)
        greylistThisStage = out.greylist
        if let g = out.greylist { greylist = g }
        facts.recipient = nil
        if let r = Self.refusal(out) {
            facts.section = previousSection
            return r
        }
        absorb(out)
        return .proceed
    }

    /// The recipient passed everything including the downstream.
    public mutating func recipientAccepted(_ box: Mailbox) {
        facts.recipients.append(box)
    }

    /// Per-domain size, then `at data` rules, on the whole message.
    /// `headers` is the message's header section, parsed once by the caller;
    /// `inspected` is what the end-of-data analyzers found.
    public mutating func data(size: Int, headers: HeaderBlock, inspected: Findings = Findings()) -> DataVerdict {
        if let max = transactionLimits.messageSize, size > max {
            return .refuse(SMTPReply(552, "5.3.4", "Message size exceeds the limit of \(max) bytes"),
                           rules: ["limit message-size"], closes: false)
        }
        facts.messageSize = size
        absorb(inspected, at: .endOfData)
        if policy.needsHeaders { facts.headers = headers.decodedFields }
        if let m = facts.milterVerdict {
            // A milter's answer is the message's, before any rule.
            facts.milterVerdict = nil
            let rule = "milter \(m.milter)"
            switch m.verdict {
            case "discard": return .discard(rule: rule)
            case "quarantine": return .quarantine(rule: rule, reason: m.reason ?? rule)
            default: if let reply = m.reply { return .refuse(reply, rules: [rule], closes: false) }
            }
        }
        let out = consult(.data, facts)
        greylistThisStage = out.greylist
        if let g = out.greylist { greylist = g }
        absorb(out)
        switch out.decision {
        case .reject(let reply, _), .tempfail(let reply, _), .disconnect(let reply, _):
            return .refuse(reply, rules: [], closes: out.decision.closesConnection)
        case .discard(let rule):
            return .discard(rule: rule)
        case .quarantine(let rule, let reason):
            return .quarantine(rule: rule, reason: reason)
        case .pass, .accept:
            return .deliver
        }
    }

    /// Takes what the analyzers of a stage found: their facts for the
    /// conditions, their symbols into the score, their warnings into the
    /// audit record. Findings at connect and helo hold for the whole session.
    private mutating func absorb(_ findings: Findings, at stage: InspectionStage) {
        guard !findings.facts.isEmpty || !findings.warnings.isEmpty || !findings.symbols.isEmpty || findings.classified != nil else { return }
        for f in findings.facts { facts.apply(f) }
        if let c = findings.classified { classified = c }
        headerEdits += findings.headerEdits
        let session = stage == .connect || stage == .helo
        for w in findings.warnings { note(w, session: session) }
        guard !findings.symbols.isEmpty else { return }
        let named = findings.symbols.map { (name: $0.name, score: $0.score) }
        let delta = findings.symbols.reduce(0) { $0 + $1.score }
        if session {
            sessionSymbols += named
            sessionScore += delta
            sessionScored = true
        }
        symbols += named
        facts.score += delta
        scored = true
    }

    /// Headers the policy adds to a delivered message (after Received:).
    var addedHeaders: [String] {
        var out: [String] = []
        if tagged {
            let s = Self.score(facts.score)
            out.append("X-Spam-Flag: YES")
            out.append("X-Spam-Score: \(s)")
            out.append("X-Spam-Status: Yes, score=\(s)")
            out.append("X-Spam-Report: " + symbols.map { "\($0.name)=\(Self.score($0.score))" }.joined(separator: ", "))
        }
        out += extraHeaders.map { String($0.unicodeScalars.filter { $0 != "\r" && $0 != "\n" && $0 != "\0" }.map(Character.init)) }
        return out
    }

    static func score(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String((v * 100).rounded() / 100)
    }

    /// Forgets the transaction; what connect and helo said stays.
    public mutating func endTransaction() {
        facts.mailFrom = nil
        facts.mailParameters = nil
        facts.messageSize = nil
        facts.headers = []
        facts.attachments = []
        facts.bodyText = ""
        facts.urls = []
        facts.virus = nil
        facts.virusScanned = false
        facts.scanFailure = nil
        facts.spf = nil
        facts.spfHelo = nil
        facts.dkim = nil
        facts.classifier = nil
        facts.signals = [:]
        facts.scoreFailure = nil
        classified = nil
        headerEdits = []
        facts.milterVerdict = nil
        facts.recipients = []
        facts.section = nil
        facts.score = sessionScore
        rules = sessionRules
        warnings = sessionWarnings
        scored = sessionScored
        symbols = sessionSymbols
        extraHeaders = []
        tagged = false
        greylist = nil
        facts.greylist = nil
    }

    /// A warning for the audit record that no rule raised (a DNS budget
    /// used up); a session-wide one is kept for every transaction.
    mutating func note(_ warning: String, session: Bool) {
        if session { sessionWarnings.append(warning) }
        warnings.append(warning)
    }

    /// RFC 3207: after STARTTLS the client says HELO again.
    mutating func tlsStarted() {
        facts.tls = true
        facts.helo = nil
    }

}
