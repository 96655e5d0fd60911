import Audit
import Foundation
import MailMessage
import Relay
import SMTPProtocol

/// Holds the message durably instead of delivering it (the policy's
/// `quarantine`); 250 only once it is on disk. `mxgate quarantine release`
/// sends it on later.
struct QuarantineDelivery: Delivery {
    let store: QuarantineStore

    var label: String { "quarantine:\(store.directory)" }

    func begin(_ context: DeliveryContext) -> any DeliveryTransaction { Transaction(store: store, context: context) }

    final class Transaction: DeliveryTransaction {
        let store: QuarantineStore
        let context: DeliveryContext

        init(store: QuarantineStore, context: DeliveryContext) {
            self.store = store
            self.context = context
        }

        func deliver(_ m: OutgoingMessage) async -> DeliveryResult {
            let id = m.transactionID, f = m.facts
            var entry = QuarantineEntry(id: id, time: AuditRecord.formatTime(Date()), session: f.sessionID, clientIP: f.clientIP,
                                        helo: f.helo, mailFrom: f.mailFrom?.description ?? "",
                                        rcptTo: f.recipients.map(\.description), messageID: m.messageID, size: m.size,
                                        rules: m.rules, reason: m.reason, spamScore: m.spamScore)
            entry.subject = f.headers.first { $0.name.lowercased() == "subject" }.map { String(EncodedWords.decode($0.value).prefix(1000)) }
            do {
                var header = m.trace.render(id: id)
                let offset = m.appendStrippedHeader(to: &header)
                try await store.store(header: header, body: m.body, bodyOffset: offset, entry: entry)
                return DeliveryResult(reply: SMTPReply(250, "2.0.0", "Ok: \(id)"), relay: "quarantine \(id)", reason: m.reason,
                                      verdict: .quarantined)
            } catch {
                context.logger.error("quarantine failed: \(error)")
                return .failed(SMTPReply(451, "4.3.0", "Local error while storing the message, try again later"),
                               "quarantine failed: \(error)")
            }
        }
    }
}
