import Relay
import SMTPProtocol

/// `downstream = "maildir:DIR"`: each recipient's Maildir, written and
/// renamed into new/ (fsync'd) before the 250. The default install's.
struct LocalMaildirDelivery: Delivery {
    let maildir: MaildirDelivery
    let hostname: String

    var label: String { "maildir:\(maildir.root)" }

    func begin(_ context: DeliveryContext) -> any DeliveryTransaction { Transaction(self, context) }

    final class Transaction: DeliveryTransaction {
        let delivery: LocalMaildirDelivery
        let context: DeliveryContext

        init(_ delivery: LocalMaildirDelivery, _ context: DeliveryContext) {
            self.delivery = delivery
            self.context = context
        }

        func deliver(_ m: OutgoingMessage) async -> DeliveryResult {
            do {
                let started = ContinuousClock.now
                var header = m.trace.render(id: m.transactionID)
                let offset = m.appendStrippedHeader(to: &header)
                let name = try await delivery.maildir.deliver(header: header, body: m.body, bodyOffset: offset,
                                                              to: m.envelope.recipients, hostname: delivery.hostname)
                context.metrics.relaySeconds.record(ContinuousClock.now - started)
                return DeliveryResult(reply: SMTPReply(250, "2.0.0", "Ok: delivered as \(m.transactionID)"), relay: "maildir \(name)")
            } catch {
                context.logger.error("maildir delivery failed: \(error)")
                return .failed(SMTPReply(451, "4.3.0", "Local delivery failed, try again later"), "\(error)")
            }
        }
    }
}
