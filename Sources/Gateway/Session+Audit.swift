import Audit
import SMTPProtocol

/// The session's audit records: the fields every record shares, taken from
/// the session's facts, and the one place a decision record goes out.
extension Session {
    /// Every decision record goes out here, with why its rules fired.
    func write(_ record: AuditRecord) {
        var r = record
        if !r.rules.isEmpty { r.because = driver.explanations(for: r.rules) }
        if let g = driver.greylist, r.event == .recipient || r.event == .transaction {
            r.greylist = AuditGreylist(outcome: g.outcome.rawValue, triplet: g.triplet, waited: Int(g.waited))
        }
        audit.record(r)
    }

    struct AuditRecordBuilder {
        let session: Session
        init(_ s: Session) { session = s }
        func base(_ event: AuditRecord.Event, verdict: AuditRecord.Verdict, reply: SMTPReply) -> AuditRecord {
            let f = session.facts
            var r = AuditRecord(event: event, session: f.sessionID, clientIP: f.clientIP, clientPort: f.clientPort,
                                helo: f.helo, tls: session.machine.tlsActive, mailFrom: f.mailFrom?.description,
                                rcptTo: f.recipients.map(\.description), verdict: verdict, reply: reply.description)
            r.auth = f.auditAuth
            r.classifier = f.classifier
            r.signals = f.signals.keys.sorted()
            r.country = f.country
            return r
        }
    }
}
