import Foundation
import Relay
import SMTPProtocol

/// Queue mode (and proxy mode's fallback): the message and its envelope are
/// written and fsync'd before the client hears 250 with the queue id; a
/// spool that cannot take it gets 452 4.3.1, never 250.
struct QueueDelivery: Delivery {
    let queue: QueueService
    let rewriter: EnvelopeRewriter

    var label: String { "queue:\(queue.spool.directory)" }

    func begin(_ context: DeliveryContext) -> any DeliveryTransaction { Transaction(self, context) }

    final class Transaction: DeliveryTransaction {
        let delivery: QueueDelivery
        let context: DeliveryContext
        /// Set when this transaction is proxy mode's fallback: why the downstream could not take it.
        var fallbackReason: String?

        init(_ delivery: QueueDelivery, _ context: DeliveryContext) {
            self.delivery = delivery
            self.context = context
        }

        func deliver(_ m: OutgoingMessage) async -> DeliveryResult {
            let queue = delivery.queue, rewriter = delivery.rewriter, env = m.envelope
            let id = Spool.newID()
            var header = m.trace.render(id: id)
            let offset = rewriter.appendHeaderSection(m, to: &header)
            var recipients: [QueuedRecipient] = []
            for (box, params) in zip(env.recipients, env.recipientParameters) {
                let target = rewriter.recipient(box)
                // A rewritten recipient keeps its original address for the DSN (RFC 3461 ORCPT).
                let orcpt = params.orcpt ?? (target != box ? "rfc822;\(box)" : nil)
                recipients.append(QueuedRecipient(address: target.description, orcpt: orcpt, notify: params.notify))
            }
            var q = QueuedEnvelope(id: id, sender: rewriter.sender(env.mailFrom).description, recipients: recipients,
                                   size: header.readableBytes + m.body.count - offset, messageID: m.messageID,
                                   origin: "\(m.facts.helo ?? "unknown") [\(m.facts.clientIP)]")
            q.ret = env.mailParameters.ret
            q.envid = env.mailParameters.envid
            q.body = env.mailParameters.body
            q.smtpUTF8 = env.mailParameters.smtpUTF8
            do {
                let started = ContinuousClock.now
                try await queue.spool.store(q, header: header, body: m.body, bodyOffset: offset)
                context.metrics.relaySeconds.record(ContinuousClock.now - started)
            } catch {
                context.logger.error("queue: cannot store the message: \(error)")
                return .failed(SMTPReply(452, "4.3.1", "Insufficient system storage, try again later"), "\(error)")
            }
            queue.manager.enqueue(q, text: .init(header: header, body: m.body, offset: offset), on: context.loop)
            return DeliveryResult(reply: SMTPReply(250, "2.0.0", "Ok: queued as \(id)"), relay: "queued \(id)",
                                  reason: fallbackReason.map { "downstream unavailable, queued instead: \($0)" })
        }
    }
}
