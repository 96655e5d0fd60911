import Audit
import Policy
import SMTPProtocol

/// The session's audit records: the fields every record shares, taken from
/// the session's facts, and the one place a decision record goes out.
extension Session {
    /// Every decision record goes out here, with why its rules fired.
    func write(_ record: AuditRecord) {
        var r = record
        driver.decorate(&r)
        audit.record(r)
    }

    struct AuditRecordBuilder {
        let session: Session
        init(_ s: Session) { session = s }
        func base(_ event: AuditRecord.Event, verdict: AuditRecord.Verdict, reply: SMTPReply) -> AuditRecord {
            AuditRecord.decision(event, verdict: verdict, reply: reply, facts: session.facts, tls: session.machine.tlsActive)
        }
    }
}

extension AuditRecord {
    /// A decision record with the fields every session's record shares (an
    /// SMTP session's or a milter session's), from the facts so far.
    static func decision(_ event: Event, verdict: Verdict, reply: SMTPReply, facts f: SessionFacts, tls: Bool) -> AuditRecord {
        var r = AuditRecord(event: event, session: f.sessionID, clientIP: f.clientIP, clientPort: f.clientPort,
                            helo: f.helo, tls: tls, mailFrom: f.mailFrom?.description,
                            rcptTo: f.recipients.map(\.description), verdict: verdict, reply: reply.description)
        r.auth = f.auditAuth
        r.classifier = f.classifier
        r.signals = f.signals.keys.sorted()
        r.country = f.country
        return r
    }

    static func verdict(for reply: SMTPReply) -> Verdict {
        reply.code < 400 ? .accepted : reply.code < 500 ? .tempfailed : .rejected
    }
}

extension PolicyDriver {
    /// The end-of-transaction fields: what the policy found and scored, the message's size and id.
    func fillTransaction(_ r: inout AuditRecord, size: Int?, messageID: String?, extraRules: [String]) {
        r.warnings = warnings
        r.spamScore = spamScore
        r.symbols = symbolScores
        r.virus = facts.virus
        r.size = size
        r.messageID = messageID
        r.rules = rules + extraRules
    }

    /// What the policy adds to a record before it goes out: why its rules
    /// fired, and what the greylist found.
    func decorate(_ r: inout AuditRecord) {
        if !r.rules.isEmpty { r.because = explanations(for: r.rules) }
        if let g = greylist, r.event == .recipient || r.event == .transaction {
            r.greylist = AuditGreylist(outcome: g.outcome.rawValue, triplet: g.triplet, waited: Int(g.waited))
        }
    }
}
