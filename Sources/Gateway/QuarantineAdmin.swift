import Audit
import Classifier
import Foundation
import NIOCore
import NIOPosix
import Relay
import SMTPProtocol

/// `mxgate quarantine …`: what an admin does with held messages — list,
/// look, release to the downstream, delete, expire. Every release and
/// deletion is written to the audit log.
public struct QuarantineAdmin {
    public let config: GatewayConfig
    public let store: QuarantineStore

    public init(config: GatewayConfig) {
        self.config = config
        self.store = QuarantineStore(directory: config.quarantineDirectory)
    }

    public struct Held: Sendable {
        public var entry: QuarantineEntry
        public var messagePath: String
        public var metaPath: String
    }

    public enum AdminError: Error, CustomStringConvertible {
        case notFound(String)
        case badID(String)
        case release(String)
        public var description: String {
            switch self {
            case .notFound(let id): return "no quarantined message \(id)"
            case .badID(let id): return "'\(id)' is not a quarantine ID (see mxgate quarantine list)"
            case .release(let why): return "release failed, the message stays in the quarantine: \(why)"
            }
        }
    }

    /// Every held message, oldest first. Unreadable metadata is skipped, not fatal.
    public func list() -> [Held] {
        let dir = config.quarantineDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let decoder = JSONDecoder()
        return names.filter { $0.hasSuffix(".json") }.compactMap { name -> Held? in
            let meta = "\(dir)/\(name)"
            guard let data = FileManager.default.contents(atPath: meta),
                  let entry = try? decoder.decode(QuarantineEntry.self, from: data) else { return nil }
            return Held(entry: entry, messagePath: "\(dir)/\(entry.id).eml", metaPath: meta)
        }.sorted { $0.entry.time < $1.entry.time }
    }

    public func find(_ id: String) throws(AdminError) -> Held {
        guard !id.isEmpty, id.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { throw .badID(id) }
        guard let h = list().first(where: { $0.entry.id == id }) else { throw .notFound(id) }
        return h
    }

    public func delete(_ id: String, audit: AuditSink, reason: String = "deleted by admin") throws {
        let h = try find(id)
        try? FileManager.default.removeItem(atPath: h.messagePath)
        try FileManager.default.removeItem(atPath: h.metaPath)
        audit.record(record(h, verdict: .discarded, reply: "deleted", relay: nil, reason: reason))
    }

    /// Sends the held message to the downstream (or Maildir) as it would have
    /// gone, then removes it. On any failure the message stays.
    public func release(_ id: String, audit: AuditSink) async throws -> String {
        let h = try find(id)
        guard let bytes = FileManager.default.contents(atPath: h.messagePath) else { throw AdminError.notFound(id) }
        let body = MessageBody(memoryThreshold: Int.max, tempDirectory: config.tempDirectory)
        try body.append(ByteBuffer(bytes: bytes))
        var recipients: [Mailbox] = []
        for r in h.entry.rcptTo {
            guard let box = try? AddressParser.parseMailbox(r) else { throw AdminError.release("bad recipient \(r)") }
            recipients.append(box)
        }
        let from: ReversePath = h.entry.mailFrom.isEmpty ? .null : .mailbox(try AddressParser.parseMailbox(h.entry.mailFrom))
        let result: String
        switch config.downstream {
        case .maildir(let dir):
            let name = try await MaildirDelivery(root: dir).deliver(header: ByteBuffer(), body: body, to: recipients, hostname: config.hostname)
            result = "maildir \(name)"
        case .smtp(let host, let port):
            result = try await relay(body: body, from: from, to: recipients, host: host, port: port)
        }
        try? FileManager.default.removeItem(atPath: h.messagePath)
        try? FileManager.default.removeItem(atPath: h.metaPath)
        audit.record(record(h, verdict: .accepted, reply: "released", relay: result, reason: "released by admin"))
        if let k = config.classifier, k.learnReleased {
            // Held by mistake, so ham: learnt under the model's lock, beside a running gateway.
            let f = MessageFeatures(message: [UInt8](bytes), dimensionBits: k.dimensionBits)
            do {
                _ = try ModelFile(path: k.model).update(dimensionBits: k.dimensionBits) { $0.learn(f, spam: false, passes: 3) }
                return result + "; learnt as ham"
            } catch {
                return result + "; not learnt as ham: \(error)"
            }
        }
        return result
    }

    private func relay(body: MessageBody, from: ReversePath, to: [Mailbox], host: String, port: Int) async throws -> String {
        let group = MultiThreadedEventLoopGroup.singleton
        let o = config.downstreamOptions(host: host, port: port)
        let pool = try DownstreamPool(options: o, group: group, maxIdle: 0, idleTimeout: .seconds(1))
        let (conn, _) = try await pool.checkout()
        defer { conn.abandon() }
        var params = MailParameters()
        params.size = body.count
        let mail = try await conn.mail(from, params, size: body.count)
        guard mail.code / 100 == 2 else { throw AdminError.release("MAIL FROM: \(mail)") }
        var accepted = 0
        for r in to {
            let reply = try await conn.rcpt(r, RcptParameters())
            if reply.code / 100 == 2 { accepted += 1 } else { throw AdminError.release("RCPT TO:<\(r)>: \(reply)") }
        }
        let reply = try await conn.data(header: ByteBuffer(), body: body)
        guard reply.code / 100 == 2, accepted > 0 else { throw AdminError.release("DATA: \(reply)") }
        await conn.quit()
        return "\(o.label) \(reply)"
    }

    /// Deletes what has been held longer than `retention` seconds; returns the IDs.
    public func expire(retention: Double, audit: AuditSink, now: Date = Date()) -> [String] {
        var gone: [String] = []
        for h in list() {
            guard let t = AuditRecord.parseTime(h.entry.time), now.timeIntervalSince(t) > retention else { continue }
            if (try? delete(h.entry.id, audit: audit, reason: "expired after the retention period")) != nil { gone.append(h.entry.id) }
        }
        return gone
    }

    private func record(_ h: Held, verdict: AuditRecord.Verdict, reply: String, relay: String?, reason: String) -> AuditRecord {
        var r = AuditRecord(event: .quarantine, session: h.entry.session, clientIP: h.entry.clientIP, helo: h.entry.helo,
                            mailFrom: h.entry.mailFrom, rcptTo: h.entry.rcptTo, messageID: h.entry.messageID, size: h.entry.size,
                            verdict: verdict, reply: reply, rules: h.entry.rules, spamScore: h.entry.spamScore, relay: relay, reason: reason)
        r.warnings = []
        return r
    }
}
