import Audit
import Foundation
import Logging
import NIOCore
import Policy
import Relay
import SMTPProtocol

/// Where accepted mail goes, chosen once at start-up from `[relay]`: in step
/// to the downstream (proxy), into the spool (queue), or into Maildirs.
/// Quarantine is one more, chosen per message by the policy. The session
/// opens one transaction per MAIL and knows no kind by name.
protocol Delivery: Sendable {
    /// Names the destination in audit records ("smtp:HOST:PORT", "queue:DIR").
    var label: String { get }
    func begin(_ context: DeliveryContext) -> any DeliveryTransaction
    func shutdown() async
}

/// One transaction's way out, from MAIL to its end. The proxy's mirrors
/// the envelope to the downstream in step (DESIGN.md "Envelope in step")
/// and can switch to the queue part-way when the downstream fails.
protocol DeliveryTransaction: AnyObject {
    /// A recipient the policy accepted: what the client should hear.
    func recipient(_ box: Mailbox, _ params: RcptParameters, envelope: Envelope) async -> RecipientAnswer
    /// Asked before the client sends the text: a reply when there is no
    /// longer anywhere to send it (the downstream went away), else nil.
    func textRefusal() -> (reply: SMTPReply, reason: String)?
    /// The policy said deliver: hand the message on. 250 only once it is
    /// accepted downstream or on disk.
    func deliver(_ message: OutgoingMessage) async -> DeliveryResult
    /// The transaction ends without delivery (RSET, a refusal, a disconnect).
    func abort() async
}

extension Delivery {
    func shutdown() async {}
}

/// What every delivery but the proxy does: take each recipient the policy
/// accepted, always have somewhere to put the text, hold nothing to abort.
extension DeliveryTransaction {
    func recipient(_ box: Mailbox, _ params: RcptParameters, envelope: Envelope) async -> RecipientAnswer {
        .accepted(SMTPReply(250, "2.1.5", "Ok"))
    }
    func textRefusal() -> (reply: SMTPReply, reason: String)? { nil }
    func abort() async {}
}

/// The session's side of a delivery: its loop (for connection pools that
/// prefer it), its logger and the metrics.
struct DeliveryContext {
    let loop: EventLoop
    let logger: Logger
    let metrics: GatewayMetrics
}

enum RecipientAnswer {
    case accepted(SMTPReply)
    /// Refused downstream (or the downstream is gone); the reason is for the audit record.
    case refused(SMTPReply, reason: String)
}

/// The whole message as the policy passed it, and what every kind of
/// delivery may need to write it out.
struct OutgoingMessage {
    let body: MessageBody
    /// The received size (before our trace header).
    let size: Int
    let messageID: String?
    let envelope: Envelope
    /// "SESSION-N": the id of this transaction in replies and the Received header.
    let transactionID: String
    let trace: TraceHeader
    /// The message's header fields with forged Authentication-Results
    /// removed, and how many bytes of the body they replace; nil: unchanged.
    let strippedHeader: (header: [UInt8], replaces: Int)?
    /// For the quarantine's index: the session's facts and the policy's reasons.
    let facts: SessionFacts
    let rules: [String]
    let spamScore: Double?
    let reason: String?
}

extension OutgoingMessage {
    /// For deliveries that do not rewrite: the header fields without forged
    /// Authentication-Results; returns the bytes of the body they replace.
    func appendStrippedHeader(to header: inout ByteBuffer) -> Int {
        guard let s = strippedHeader else { return 0 }
        header.writeBytes(s.header)
        return s.replaces
    }
}

/// How a delivery ended: the reply for the client, and for the audit record
/// where the message went or why it did not.
struct DeliveryResult {
    var reply: SMTPReply
    var relay: String?
    var reason: String?
    /// Set when the reply's code alone does not say it (quarantined).
    var verdict: AuditRecord.Verdict?

    static func failed(_ reply: SMTPReply, _ reason: String) -> DeliveryResult {
        DeliveryResult(reply: reply, relay: nil, reason: reason)
    }
}

/// The RFC 5321 §4.4 trace header for a message, with the headers the
/// policy adds after it; rendered per delivery, as the queue names the
/// message by its queue id and the others by the transaction id.
struct TraceHeader {
    let helo: String?
    let clientIP: String
    let hostname: String
    let smtpUTF8: Bool
    let extended: Bool
    let tls: Bool
    let recipients: [Mailbox]
    /// X-Spam-*, tags: already checked for line breaks.
    let added: [String]

    /// "with ESMTPS" etc. per RFC 3848.
    func render(id: String, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var b = allocator.buffer(capacity: 256)
        b.writeStaticString("Received: from ")
        Self.sanitize(helo ?? "unknown", into: &b)
        b.writeStaticString(" ([")
        if clientIP.utf8.contains(UInt8(ascii: ":")) { b.writeStaticString("IPv6:") }
        b.writeString(clientIP)
        b.writeStaticString("])\r\n\tby ")
        b.writeString(hostname)
        b.writeStaticString(" (mxgate) with ")
        if smtpUTF8 { b.writeStaticString("UTF8") }
        b.writeStaticString(extended ? "ESMTP" : "SMTP")
        if tls { b.writeStaticString("S") }
        b.writeStaticString(" id ")
        b.writeString(id)
        if recipients.count == 1 {
            b.writeStaticString("\r\n\tfor <")
            b.writeString(recipients[0].description)
            b.writeStaticString(">")
        }
        b.writeStaticString("; ")
        b.writeString(MailDate.rfc5322(secondsSince1970: Date().timeIntervalSince1970))
        b.writeStaticString("\r\n")
        for h in added {
            b.writeString(h)
            b.writeStaticString("\r\n")
        }
        return b
    }

    /// The HELO name as a Received header may carry it: printable ASCII
    /// without parentheses, at most 255 bytes.
    static func sanitize(_ s: String, into b: inout ByteBuffer) {
        var n = 0
        for c in s.utf8 where c > 32 && c < 127 && c != UInt8(ascii: "(") && c != UInt8(ascii: ")") {
            b.writeInteger(c)
            n += 1
            if n == 255 { break }
        }
    }
}

/// `[rewrite]`: envelope (and optionally header) addresses rewritten on the
/// way out, after the policy has judged the originals.
struct EnvelopeRewriter: Sendable {
    let sender: RewriteTable?
    let recipient: RewriteTable?
    let headers: Bool

    func sender(_ path: ReversePath) -> ReversePath {
        guard case .mailbox(let box) = path, let table = sender, let to = table.rewrite(box.description),
              let rewritten = try? AddressParser.parseMailbox(to) else { return path }
        return .mailbox(rewritten)
    }

    func recipient(_ box: Mailbox) -> Mailbox {
        guard let table = recipient, let to = table.rewrite(box.description),
              let rewritten = try? AddressParser.parseMailbox(to) else { return box }
        return rewritten
    }

    /// Appends the message's header fields as they go out (forged
    /// Authentication-Results removed; with `[rewrite] headers = true` the
    /// addresses rewritten); returns how many bytes of the body they replace
    /// (0 when nothing changed).
    func appendHeaderSection(_ m: OutgoingMessage, to header: inout ByteBuffer) -> Int {
        var section = m.strippedHeader
        // The stripped fields end where the empty line was: one is added back for the rewriter to find the end.
        if headers, section?.header.isEmpty != true, let source = section.map({ $0.header + [13, 10] }) ?? (try? m.body.prefix(64 * 1024)),
           let (rewritten, replaces) = HeaderRewriter.rewrite(source, sender: sender, recipient: recipient) {
            section = (Array(rewritten), section?.replaces ?? replaces)
        }
        guard let section else { return 0 }
        header.writeBytes(section.header)
        return section.replaces
    }
}
