import Audit
import Classifier
import Foundation
import MailMessage
import NIOCore
import NIOPosix
import Relay
import SMTPProtocol

/// `mxgate quarantine …`: what an admin does with held messages — list,
/// look, release to the downstream, delete, expire. Every release and
/// deletion is written to the audit log.
public struct QuarantineAdmin: Sendable {
    public let config: GatewayConfig
    public let store: QuarantineStore

    /// The spool a queue-mode release writes to; made on first use when not
    /// given (a long-lived caller passes one: each Spool keeps a writer thread).
    let spool: Spool?

    public init(config: GatewayConfig, spool: Spool? = nil) {
        self.config = config
        self.store = QuarantineStore(directory: config.quarantineDirectory)
        self.spool = spool
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

    /// A quarantine ID's syntax (checked before it is looked up, never used as a path).
    public static func validID(_ id: String) -> Bool { !id.isEmpty && id.count <= 64 && id.allSatisfy { $0.isHexDigit || $0 == "-" } }

    public func find(_ id: String) throws(AdminError) -> Held {
        guard Self.validID(id) else { throw .badID(id) }
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
    public func release(_ id: String, audit: AuditSink, reason: String = "released by admin") async throws -> String {
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
        case _ where config.mode == .queue:
            result = try await enqueue(body: body, from: from, to: recipients, entry: h.entry)
        case .maildir(let dir):
            let name = try await MaildirDelivery(root: dir).deliver(header: ByteBuffer(), body: body, to: recipients, hostname: config.hostname)
            result = "maildir \(name)"
        case .smtp(let host, let port):
            result = try await relay(body: body, from: from, to: recipients, host: host, port: port)
        }
        try? FileManager.default.removeItem(atPath: h.messagePath)
        try? FileManager.default.removeItem(atPath: h.metaPath)
        audit.record(record(h, verdict: .accepted, reply: "released", relay: result, reason: reason))
        if let k = config.classifier, k.learnReleased {
            // Held by mistake, so ham.
            do {
                try Self.learn(bytes, spam: false, config: k, domains: config.domains, store: config.classifierStore())
                return result + "; learnt as ham"
            } catch {
                return result + "; not learnt as ham: \(error)"
            }
        }
        return result
    }

    /// Trains the classifier on a held message (the console's "learn as
    /// spam/ham"); the message stays where it is.
    public func learn(_ id: String, spam: Bool, by who: String = "admin", audit: AuditSink) throws -> String {
        let h = try find(id)
        guard let k = config.classifier else { throw AdminError.release("no [classifier] is configured") }
        guard let bytes = FileManager.default.contents(atPath: h.messagePath) else { throw AdminError.notFound(id) }
        try Self.learn(bytes, spam: spam, config: k, domains: config.domains, store: config.classifierStore())
        audit.record(record(h, verdict: .quarantined, reply: "learnt as \(spam ? "spam" : "ham")", relay: nil,
                            reason: "learnt as \(spam ? "spam" : "ham") by \(who)"))
        return "\(id) learnt as \(spam ? "spam" : "ham")"
    }

    /// Learnt under the model's lock (the file's, or Redis's), beside a running gateway.
    static func learn(_ bytes: Data, spam: Bool, config k: ClassifierSettings, domains: [String], store: any ModelStore) throws {
        let f = MessageFeatures(message: [UInt8](bytes), localDomains: domains, dimensionBits: k.dimensionBits)
        _ = try store.update(dimensionBits: k.dimensionBits) { $0.learn(f, spam: spam, passes: 3) }
    }

    /// Adds the held message's sender to an allow-list (the shipped policy
    /// matches `rules/allowed-senders.list` against the From address, when
    /// DMARC passes), so the next one is not held; returns the address.
    /// The list is rewritten whole (temp, fsync, rename): a reader never
    /// sees half a line. The caller reloads the policy.
    public func allowSender(_ id: String, list: String, by who: String, audit: AuditSink) throws -> String {
        let h = try find(id)
        let head = FileManager.default.contents(atPath: h.messagePath).map { HeaderBlock([UInt8]($0.prefix(64 * 1024))) }
        let fromHeader = head?.fields.first { $0.name.lowercased() == "from" }.flatMap { AddressList.addresses(in: $0.value).first }
        guard let address = (fromHeader ?? h.entry.mailFrom).lowercased().nonEmpty,
              address.contains("@"), !address.contains(where: { $0.isWhitespace || $0 == "#" || $0.asciiValue.map { $0 < 32 } ?? false }) else {
            throw AdminError.release("the message has no sender address to allow-list")
        }
        var text = FileManager.default.contents(atPath: list).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let present = text.split(whereSeparator: \.isNewline).contains {
            $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first?.trimmingCharacters(in: .whitespaces).lowercased() == address
        }
        if !present {
            if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
            text += "\(address)    # added by \(who) from quarantine \(id), \(AuditRecord.formatTime(Date()))\n"
            try FileManager.default.createDirectory(atPath: (list as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let tmp = list + ".tmp.\(getpid())"
            unlink(tmp)
            try DurableFile.write(Array(text.utf8), to: list, via: tmp)
        }
        audit.record(record(h, verdict: .quarantined, reply: "sender allow-listed", relay: nil,
                            reason: "\(address) added to \(list) by \(who)"))
        return address
    }

    /// Queue mode: the released message goes into the spool (fsync'd) and the
    /// running gateway is told to deliver it; with none running it waits in
    /// the spool for the next start, like any queued message.
    private func enqueue(body: MessageBody, from: ReversePath, to: [Mailbox], entry: QuarantineEntry) async throws -> String {
        let spool = try self.spool ?? Spool(directory: config.queueDirectory)
        let id = Spool.newID()
        let env = QueuedEnvelope(id: id, sender: from.description, recipients: to.map { QueuedRecipient(address: $0.description) },
                                 size: body.count, messageID: entry.messageID, origin: "quarantine release [\(entry.clientIP)]")
        try await spool.store(env, header: ByteBuffer(), body: body)
        if let answer = QueueControlClient.send("adopt \(id)", queueDirectory: config.queueDirectory), answer.hasPrefix("ok ") {
            return "queued \(id)"
        }
        return "queued \(id) (no gateway is running to deliver it: it goes at the next start)"
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

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
