import Relay
import SMTPProtocol

/// Proxy mode (before-queue): the downstream transaction is opened at the
/// first accepted RCPT, each RCPT is mirrored so the downstream's answer
/// reaches the client, and the client's end of data gets the downstream's
/// answer to the whole message. With `fallback = "queue"` a transaction
/// whose downstream cannot be reached or fails goes into the spool instead.
struct ProxyDelivery: Delivery {
    let pool: DownstreamPool
    let rewriter: EnvelopeRewriter
    /// The spool to fall back to, when `fallback = "queue"`.
    let fallback: QueueDelivery?

    var label: String { pool.label }

    func begin(_ context: DeliveryContext) -> any DeliveryTransaction { Transaction(self, context) }
    func shutdown() async { await pool.close() }

    final class Transaction: DeliveryTransaction {
        private let delivery: ProxyDelivery
        private let context: DeliveryContext
        private var downstream: DownstreamConnection?
        /// Why the downstream transaction failed, once it has.
        private var failure: String?
        /// The spool, once this transaction has fallen back to it.
        private var fallback: QueueDelivery.Transaction?

        init(_ delivery: ProxyDelivery, _ context: DeliveryContext) {
            self.delivery = delivery
            self.context = context
        }

        static let unavailable = SMTPReply(451, "4.4.1", "Downstream unavailable, try again later")

        func recipient(_ box: Mailbox, _ params: RcptParameters, envelope: Envelope) async -> RecipientAnswer {
            if let fallback { return await fallback.recipient(box, params, envelope: envelope) }
            if let failure {
                return startFallback(failure) ? .accepted(SMTPReply(250, "2.1.5", "Ok")) : .refused(Self.unavailable, reason: failure)
            }
            let target = delivery.rewriter.recipient(box)
            do {
                let reply: SMTPReply
                if let conn = downstream {
                    reply = try await conn.rcpt(target, params)
                } else {
                    switch try await open(envelope, rcpt: target, params) {
                    case .mailRefused(let refused): return .refused(refused, reason: "downstream refused MAIL FROM")
                    case .rcpt(let r): reply = r
                    }
                }
                if reply.code / 100 == 2 { return .accepted(Self.passthrough(reply)) }
                return .refused(Self.passthrough(reply), reason: "downstream refused recipient")
            } catch {
                failure = "\(error)"
                context.logger.warning("downstream failed at RCPT: \(error)")
                drop()
                if startFallback("\(error)") { return .accepted(SMTPReply(250, "2.1.5", "Ok")) }
                return .refused(Self.unavailable, reason: "\(error)")
            }
        }

        private enum Opened {
            case mailRefused(SMTPReply)
            case rcpt(SMTPReply)
        }

        /// MAIL and the first RCPT together when the downstream pipelines.
        /// A reused connection that turns out dead is replaced once.
        private func open(_ env: Envelope, rcpt box: Mailbox, _ params: RcptParameters) async throws -> Opened {
            let pool = delivery.pool
            for attempt in 0..<2 {
                let (conn, reused) = try await pool.checkout(near: context.loop)
                do {
                    let (mail, rcpt) = try await conn.mail(delivery.rewriter.sender(env.mailFrom), env.mailParameters,
                                                           size: env.mailParameters.size, rcpt: box, params)
                    guard let rcpt else {
                        await pool.checkin(conn)
                        return .mailRefused(Self.passthrough(mail))
                    }
                    downstream = conn
                    return .rcpt(rcpt)
                } catch {
                    conn.abandon()
                    if !(reused && attempt == 0) { throw error }
                }
            }
            throw RelayError.closed("(a reused connection and a new one both failed)")
        }

        /// Recipients were accepted but the downstream is gone: the client
        /// hears so before it sends the text, unless the spool takes over.
        func textRefusal() -> (reply: SMTPReply, reason: String)? {
            guard fallback == nil, downstream == nil || failure != nil else { return nil }
            let why = failure ?? "downstream connection lost"
            return startFallback(why) ? nil : (Self.unavailable, why)
        }

        func deliver(_ m: OutgoingMessage) async -> DeliveryResult {
            if let fallback { return await fallback.deliver(m) }
            guard let conn = downstream else {
                if startFallback("downstream connection lost"), let fallback { return await fallback.deliver(m) }
                return .failed(Self.unavailable, "downstream connection lost")
            }
            do {
                var header = m.trace.render(id: m.transactionID)
                let offset = delivery.rewriter.appendHeaderSection(m, to: &header)
                let started = ContinuousClock.now
                let reply = Self.passthrough(try await conn.data(header: header, body: m.body, bodyOffset: offset))
                context.metrics.relaySeconds.record(ContinuousClock.now - started)
                downstream = nil
                await delivery.pool.checkin(conn)
                return DeliveryResult(reply: reply, relay: "\(delivery.pool.label) \(reply)")
            } catch {
                context.logger.warning("downstream failed during DATA: \(error)")
                drop()
                if startFallback("downstream failed during DATA: \(error)"), let fallback { return await fallback.deliver(m) }
                return .failed(SMTPReply(451, "4.4.2", "Downstream failed during delivery, try again later"), "\(error)")
            }
        }

        /// Returns the connection (RSET) for the next transaction.
        func abort() async {
            guard let conn = downstream else { return }
            downstream = nil
            await delivery.pool.checkin(conn)
        }

        private func drop() {
            downstream?.abandon()
            downstream = nil
        }

        /// True (and the transaction switches to the spool) when
        /// `fallback = "queue"` is set; the reason is logged.
        private func startFallback(_ why: String) -> Bool {
            if fallback != nil { return true }
            guard let queue = delivery.fallback else { return false }
            context.logger.warning("downstream unavailable (\(why)); accepting into the queue instead")
            let t = QueueDelivery.Transaction(queue, context)
            t.fallbackReason = why
            fallback = t
            return true
        }

        /// Downstream replies go to the client as they are, with an enhanced
        /// code added when the downstream gave none (we advertise
        /// ENHANCEDSTATUSCODES). A downstream 421 closes the downstream's
        /// connection, not the client's, so the client gets 451 instead.
        static func passthrough(_ reply: SMTPReply) -> SMTPReply {
            var r = reply
            if r.code == 421 {
                return SMTPReply(code: 451, enhanced: "4.4.2", lines: ["Downstream: " + r.lines.joined(separator: " ")])
            }
            if r.enhanced == nil { r.enhanced = "\(r.code / 100).0.0" }
            return r
        }
    }
}
