import MailMessage
import Relay
import SMTPProtocol

/// The message as it leaves: the envelope, our trace header with
/// Authentication-Results and the policy's headers, and the message's own
/// header fields with the milters' changes applied and forged results removed.
extension Session {
    func outgoing(_ body: MessageBody, headerBytes: [UInt8], size: Int, messageID: String?, id: String,
                  reason: String?) -> OutgoingMessage {
        let env = machine.envelope ?? Envelope(mailFrom: .null, mailParameters: MailParameters())
        let trace = TraceHeader(helo: facts.helo, clientIP: facts.clientIP, hostname: config.hostname,
                                smtpUTF8: env.mailParameters.smtpUTF8, extended: machine.extended, tls: machine.tlsActive,
                                recipients: env.recipients,
                                added: [AuthenticationResults.header(authservID: config.effectiveAuthservID, facts: facts)]
                                    + driver.addedHeaders)
        return OutgoingMessage(body: body, size: size, messageID: messageID, envelope: env, transactionID: id, trace: trace,
                               strippedHeader: rewrittenHeader(headerBytes), facts: facts, rules: driver.rules,
                               spamScore: driver.spamScore, reason: reason)
    }

    /// The header fields to write in place of the message's own, and how
    /// many bytes of the text they replace; nil: the text's own are fine.
    func rewrittenHeader(_ headerBytes: [UInt8]) -> (header: [UInt8], replaces: Int)? {
        let id = config.effectiveAuthservID
        guard !driver.headerEdits.isEmpty, let edited = MilterHeaderEdit.apply(driver.headerEdits, to: headerBytes) else {
            return AuthenticationResults.strippingForged(headerBytes, authservID: id)
        }
        // Results a milter added under our authserv-id are forged too.
        let stripped = AuthenticationResults.strippingForged(edited.fields + [13, 10], authservID: id)
        return (stripped?.header ?? edited.fields, edited.replaces)
    }
}
