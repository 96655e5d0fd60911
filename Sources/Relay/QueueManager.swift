import Foundation
import HeapModule
import Logging
import NIOCore
import SMTPProtocol
import Synchronization
import Threads

/// How the queue retries and where it may connect.
public struct QueueSettings: Sendable {
    /// First retry after this long, doubling per attempt up to `maxBackoff`
    /// (Postfix's minimal_backoff_time and maximal_backoff_time).
    public var minBackoff: Double = 300
    public var maxBackoff: Double = 4000
    /// Give up and bounce after this long in the queue (maximal_queue_lifetime).
    public var lifetime: Double = 5 * 86400
    /// Send one "delayed" DSN once a message has waited this long; nil: never.
    public var delayWarning: Double?
    /// Deliveries in flight to one destination (host or MX domain).
    public var destinationConcurrency = 20
    /// Deliveries in flight altogether.
    public var maxDeliveries = 100
    /// The port MX hosts are contacted on (25; tests use another).
    public var mxPort = 25
    public var hostname: String
    /// How to talk to any next hop: HELO name, timeouts, CA file. Each
    /// destination's host, port and TLS demands are set on a copy.
    public var connection: DownstreamOptions
    public var poolSize = 20
    public var poolIdleTimeout: TimeAmount = .seconds(60)

    public init(hostname: String, connection: DownstreamOptions? = nil) {
        self.hostname = hostname
        self.connection = connection ?? DownstreamOptions(host: "", port: 0, heloName: hostname)
    }

    /// Seconds before attempt number `attempts + 1`.
    public func backoff(afterAttempts attempts: Int) -> Double {
        min(maxBackoff, minBackoff * pow(2, Double(max(0, attempts - 1))))
    }
}

/// What happened to (some recipients of) a queued message, for the audit log.
public struct DeliveryReport: Sendable {
    public enum Outcome: String, Sendable { case delivered, deferred, failed, expired, bounced, held, released, deleted }
    public var id: String
    public var outcome: Outcome
    public var sender: String
    public var recipients: [String]
    public var messageID: String?
    public var size: Int
    /// The remote answer, or why there was none.
    public var reply: String?
    /// Where it went: "127.0.0.1:25", "mx:example.org", "maildir:…"; for a bounce, the DSN's queue ID.
    public var destination: String?

    public init(id: String, outcome: Outcome, sender: String, recipients: [String], messageID: String?, size: Int,
                reply: String? = nil, destination: String? = nil) {
        self.id = id
        self.outcome = outcome
        self.sender = sender
        self.recipients = recipients
        self.messageID = messageID
        self.size = size
        self.reply = reply
        self.destination = destination
    }
}

/// Looks up a domain's MX hosts (RFC 5321 §5.1), best first; a domain
/// without MX records yields itself (the implicit MX). `.failure(permanent:)`
/// tells a nonexistent domain from a lookup that may work later.
public typealias MXLookup = @Sendable (String) async -> Result<[String], MXLookupError>

public struct MXLookupError: Error, Sendable {
    public var permanent: Bool
    public var reason: String
    public init(permanent: Bool, reason: String) {
        self.permanent = permanent
        self.reason = reason
    }
}

/// The queue manager: keeps the index of queued messages, starts
/// deliveries when they are due (per-destination concurrency limits,
/// pooled connections), records per-recipient results durably, retries
/// with exponential backoff, and bounces (RFC 3464) what fails or expires.
public final class QueueManager: Sendable {
    public let spool: Spool
    public let settings: QueueSettings
    private let router: Router
    private let group: EventLoopGroup
    /// Deliveries take the loops in turn; each opens or reuses downstream
    /// connections on the loop its task runs on.
    private let executors: LoopExecutors
    private let mxLookup: MXLookup
    private let report: @Sendable (DeliveryReport) -> Void
    private let logger: Logger

    private struct State {
        var entries: [String: QueuedEnvelope] = [:]
        var inFlight: Set<String> = []
        /// When each waiting message is due, earliest first, so a wake-up
        /// costs O(log n) per message it starts instead of a look at every
        /// message: with a backlog (a long downstream outage) the scheduler
        /// wakes for every finished delivery. Entries go stale rather than
        /// being removed (see `schedule(_:)` and `isLive(_:)`).
        var due = Heap<DueEntry>()

        /// Puts a message (back) on the schedule at its `nextAttempt`.
        mutating func schedule(_ e: QueuedEnvelope) {
            guard !e.held else { return }
            due.insert(DueEntry(time: e.nextAttempt, id: e.id))
            // Stale entries (rescheduled, held, deleted) are dropped as they
            // surface; rebuilt when they outnumber the live ones.
            if due.count > 2 * entries.count + 1024 {
                due = Heap(entries.values.lazy.filter { !$0.held }.map { DueEntry(time: $0.nextAttempt, id: $0.id) })
            }
        }

        /// The entry stands for a message still waiting at that time.
        func isLive(_ d: DueEntry) -> Bool {
            guard let e = entries[d.id] else { return false }
            return !e.held && e.nextAttempt == d.time && !inFlight.contains(d.id)
        }
        /// Attempts started by `enqueue` itself, outside the scheduler's group.
        var direct = 0
        /// Start-up recovery is done: before, an attempt could deliver and
        /// remove a message that recovery then reads back and queues again.
        var recovered = false
        var stopped = false
    }

    /// A message and the time it is due, as it was when scheduled.
    struct DueEntry: Comparable {
        var time: Date
        var id: String
        static func < (a: DueEntry, b: DueEntry) -> Bool { (a.time, a.id) < (b.time, b.id) }
    }

    private let state = Mutex(State())
    private let pools = Mutex<[String: DownstreamPool]>([:])
    private let limiter = KeyedLimiter()
    private let doorbell = Doorbell()

    public init(spool: Spool, settings: QueueSettings, router: Router, group: EventLoopGroup, mxLookup: @escaping MXLookup,
                logger: Logger, report: @escaping @Sendable (DeliveryReport) -> Void) {
        self.spool = spool
        self.settings = settings
        self.router = router
        self.group = group
        executors = LoopExecutors(group)
        self.mxLookup = mxLookup
        self.logger = logger
        self.report = report
    }

    /// Reads the spool (recovering what a crash left) and then delivers
    /// until `stop()`.
    public func run() async {
        let (envelopes, problems) = await withCheckedContinuation { c in
            detachNamedThread("mxgate-recover") { c.resume(returning: self.spool.recover()) }
        }
        for p in problems { logger.error("queue recovery: \(p)") }
        state.withLock { s in
            for e in envelopes where s.entries[e.id] == nil {
                s.entries[e.id] = e
                s.schedule(e)
            }
            s.recovered = true
        }
        if !envelopes.isEmpty { logger.info("queue: \(envelopes.count) message(s) in \(spool.directory)") }
        await withDiscardingTaskGroup { group in
            while true {
                let (due, stopped, next) = state.withLock { s -> ([QueuedEnvelope], Bool, Date?) in
                    let now = Date()
                    var room = settings.maxDeliveries - s.inFlight.count
                    var due: [QueuedEnvelope] = []
                    var next: Date?
                    while let top = s.due.min {
                        guard s.isLive(top) else {
                            _ = s.due.popMin()
                            continue
                        }
                        if top.time > now {
                            next = top.time
                            break
                        }
                        // Due, but every slot is taken: a finished delivery rings.
                        guard room > 0 else { break }
                        _ = s.due.popMin()
                        due.append(s.entries[top.id]!)
                        s.inFlight.insert(top.id)
                        room -= 1
                    }
                    return (due, s.stopped, next)
                }
                if stopped { break }
                for e in due {
                    let executor = executors.next()
                    group.addTask(executorPreference: executor) { await self.attempt(e.id, on: executor.loop) }
                }
                let wait = min(max(next.map { $0.timeIntervalSinceNow } ?? 1, 0.01), 1)
                await doorbell.wait(upTo: wait, on: executors.any.loop)
            }
        }
        // Attempts `enqueue` started finish too (each rings once it is done).
        while state.withLock({ $0.direct > 0 }) { await doorbell.wait(upTo: 0.1, on: executors.any.loop) }
        for pool in pools.withLock({ Array($0.values) }) { await pool.close() }
        await spool.drain()
    }

    /// Stops starting deliveries; those in flight finish.
    public func stop() {
        state.withLock { $0.stopped = true }
        doorbell.ring()
    }

    /// Hands a freshly stored message to the scheduler. `text`, the stored
    /// text as the session still holds it in memory, lets the first attempt
    /// send from there instead of reading the spool back; it is dropped
    /// after that attempt, and not kept at all past `freshTextBudget`.
    ///
    /// A message due now, with a delivery slot free, starts its attempt
    /// right here, on `loop` (the caller's, so no thread is woken for it);
    /// the scheduler hears of it only when it must wait for a slot (waking
    /// it for every message cost a thread wake-up and a scan of the queue
    /// per message).
    public func enqueue(_ env: QueuedEnvelope, text: StoredText? = nil, on loop: EventLoop? = nil) {
        if let text, !text.body.isSpilled {
            let bytes = text.header.readableBytes + text.body.count
            fresh.withLock { f in
                guard f.bytes + bytes <= Self.freshTextBudget else { return }
                f.texts[env.id] = text
                f.bytes += bytes
            }
        }
        let now = state.withLock { s -> Bool in
            s.entries[env.id] = env
            guard s.recovered, !s.stopped, !env.held, env.nextAttempt <= Date(), s.inFlight.count < settings.maxDeliveries else {
                s.schedule(env)
                return false
            }
            s.inFlight.insert(env.id)
            s.direct += 1
            return true
        }
        guard now else {
            doorbell.ring()
            return
        }
        let executor = loop.flatMap { executors[$0] } ?? executors.next()
        Task(executorPreference: executor) {
            await self.attempt(env.id, on: executor.loop)
            let last = self.state.withLock { s -> Bool in
                s.direct -= 1
                return s.stopped && s.direct == 0
            }
            if last { self.doorbell.ring() }
        }
    }

    /// A queued message's text as its session wrote it to the spool: the
    /// trace header, then the body from `offset`.
    public struct StoredText: @unchecked Sendable {
        // The session hands the body over and never touches it again.
        public var header: ByteBuffer
        public var body: MessageBody
        public var offset: Int
        public init(header: ByteBuffer, body: MessageBody, offset: Int) {
            self.header = header
            self.body = body
            self.offset = offset
        }
    }

    /// At most this many bytes of texts wait in memory for a first attempt
    /// (a downstream that is down makes them pile up; past this, the spool
    /// is read back as for any retry).
    public static let freshTextBudget = 64 << 20
    private let fresh = Mutex<(texts: [String: StoredText], bytes: Int)>(([:], 0))

    private func takeFreshText(_ id: String) -> StoredText? {
        fresh.withLock { f in
            guard let t = f.texts.removeValue(forKey: id) else { return nil }
            f.bytes -= t.header.readableBytes + t.body.count
            return t
        }
    }

    /// Messages queued, and how many are being delivered now.
    public var depth: (queued: Int, inFlight: Int) { state.withLock { ($0.entries.count, $0.inFlight.count) } }

    // MARK: queue tools (through the control socket)

    public enum ControlResult: Sendable, Equatable {
        case ok(String)
        case notFound
        case busy
    }

    /// Makes every message (or one) due now, held ones excepted.
    public func flush(_ id: String?) async -> ControlResult {
        let changed = state.withLock { s -> [QueuedEnvelope] in
            var out: [QueuedEnvelope] = []
            for key in id.map({ [$0] }) ?? Array(s.entries.keys) {
                guard var e = s.entries[key], !e.held else { continue }
                e.nextAttempt = Date()
                s.entries[key] = e
                if !s.inFlight.contains(key) { s.schedule(e) }
                out.append(e)
            }
            return out
        }
        if let id, changed.isEmpty { return state.withLock { $0.entries[id] == nil } ? .notFound : .ok("\(id) is on hold") }
        doorbell.ring()
        return .ok("\(changed.count) message(s) scheduled for delivery now")
    }

    /// Takes on a message another process stored in the spool (a quarantine
    /// release by `mxgate quarantine release`), reading its envelope from disk.
    public func adopt(_ id: String) async -> ControlResult {
        guard Spool.validID(id), let env = spool.envelope(id) else { return .notFound }
        guard state.withLock({ $0.entries[id] == nil }) else { return .ok("\(id) is already queued") }
        enqueue(env)
        return .ok("\(id) queued")
    }

    public func hold(_ id: String) async -> ControlResult { await setHeld(id, true) }
    public func release(_ id: String) async -> ControlResult { await setHeld(id, false) }

    private func setHeld(_ id: String, _ held: Bool) async -> ControlResult {
        if held { _ = takeFreshText(id) }  // a held message may wait long: its text waits on disk only
        let env = state.withLock { s -> QueuedEnvelope? in
            guard var e = s.entries[id] else { return nil }
            e.held = held
            if !held { e.nextAttempt = Date() }
            if !s.inFlight.contains(id) {
                s.entries[id] = e
                s.schedule(e)
            }
            return e
        }
        guard var env else { return .notFound }
        if state.withLock({ $0.inFlight.contains(id) }) {
            // The attempt in flight owns the envelope; mark it so it keeps the flag.
            pendingHolds.withLock { $0[id] = held }
            return .ok(held ? "\(id) will be held after the delivery in progress" : "\(id) released")
        }
        env.held = held
        do {
            try await spool.update(env)
        } catch {
            return .ok("\(id) \(held ? "held" : "released") in memory, but the envelope could not be saved: \(error)")
        }
        report(DeliveryReport(id: id, outcome: held ? .held : .released, sender: env.sender,
                              recipients: env.pending.map(\.address), messageID: env.messageID, size: env.size))
        doorbell.ring()
        return .ok(held ? "\(id) held" : "\(id) released")
    }

    private let pendingHolds = Mutex<[String: Bool]>([:])

    public func delete(_ id: String) async -> ControlResult {
        let env = state.withLock { s -> QueuedEnvelope?? in
            guard let e = s.entries[id] else { return .none }
            if s.inFlight.contains(id) { return .some(nil) }
            s.entries[id] = nil
            return .some(e)
        }
        switch env {
        case .none: return .notFound
        case .some(nil): return .busy
        case .some(let e?):
            _ = takeFreshText(id)
            spool.remove(id)
            report(DeliveryReport(id: id, outcome: .deleted, sender: e.sender, recipients: e.pending.map(\.address),
                                  messageID: e.messageID, size: e.size, reply: "deleted by an administrator"))
            return .ok("\(id) deleted")
        }
    }

    // MARK: delivery

    /// One delivery attempt of every pending recipient of a message,
    /// grouped by destination; results saved, DSNs queued.
    private func attempt(_ id: String, on loop: EventLoop? = nil) async {
        defer {
            // The scheduler needs to hear of it only if something due waits
            // for the slot (a stale entry at the top rings it for nothing);
            // messages due later it wakes for on its own.
            let waiting = state.withLock { s -> Bool in
                s.inFlight.remove(id)
                if let e = s.entries[id] { s.schedule(e) }
                return s.stopped || s.due.min.map { $0.time <= Date() } ?? false
            }
            if waiting { doorbell.ring() }
        }
        let text = takeFreshText(id)
        guard var env = state.withLock({ $0.entries[id] }) else { return }
        var groups: [Destination: [Int]] = [:]
        var order: [Destination] = []
        for (i, r) in env.recipients.enumerated() where r.status == .pending {
            let d = router.destination(for: r.address)
            if groups[d] == nil { order.append(d) }
            groups[d, default: []].append(i)
        }
        var newlyFailed: [Int] = []
        var relayed: [Int] = []
        for dest in order {
            let indices = groups[dest]!
            await limiter.acquire(dest.description, limit: settings.destinationConcurrency)
            let outcome = await deliver(env, indices, to: dest, text: text, on: loop)
            limiter.release(dest.description)
            let now = Date()
            for (i, result) in zip(indices, outcome.results) {
                env.recipients[i].attempts += 1
                env.recipients[i].lastAttempt = now
                env.recipients[i].lastReply = result.reply
                env.recipients[i].remoteHost = outcome.host
                env.recipients[i].status = result.status
                if result.status == .failed { newlyFailed.append(i) }
                if result.status == .delivered && !outcome.dsnPassedOn && env.recipients[i].wants("SUCCESS") { relayed.append(i) }
            }
            for status in [QueuedRecipient.Status.delivered, .pending, .failed] {
                let these = zip(indices, outcome.results).filter { $0.1.status == status }
                guard !these.isEmpty else { continue }
                report(DeliveryReport(id: id, outcome: status == .delivered ? .delivered : status == .pending ? .deferred : .failed,
                                      sender: env.sender, recipients: these.map { env.recipients[$0.0].address },
                                      messageID: env.messageID, size: env.size, reply: these[0].1.reply,
                                      destination: outcome.host ?? dest.description))
            }
        }

        // Expired: whatever is still pending fails now (RFC 3463 4.4.7).
        let age = Date().timeIntervalSince(env.arrival)
        if age >= settings.lifetime {
            var expired: [String] = []
            for i in env.recipients.indices where env.recipients[i].status == .pending {
                env.recipients[i].status = .failed
                let last = env.recipients[i].lastReply.map { " (last answer: \($0))" } ?? ""
                env.recipients[i].lastReply = "4.4.7 delivery time expired after \(Self.duration(age))\(last)"
                newlyFailed.append(i)
                expired.append(env.recipients[i].address)
            }
            if !expired.isEmpty {
                report(DeliveryReport(id: id, outcome: .expired, sender: env.sender, recipients: expired, messageID: env.messageID,
                                      size: env.size, reply: "delivery time expired"))
            }
        }

        await notify(&env, failed: newlyFailed, relayed: relayed)

        if env.isFinished {
            // Unlinking is slow on ext4 (blocks, bitmaps): the spool's
            // thread does it, not the loop that serves sessions.
            spool.removeLater(id, size: env.size)
            state.withLock { $0.entries[id] = nil }
            pendingHolds.withLock { _ = $0.removeValue(forKey: id) }
            return
        }
        let attempts = env.pending.map(\.attempts).max() ?? 1
        env.nextAttempt = Date().addingTimeInterval(settings.backoff(afterAttempts: attempts))
        if let held = pendingHolds.withLock({ $0.removeValue(forKey: id) }) { env.held = held }
        do {
            try await spool.update(env)
        } catch {
            logger.error("queue: cannot save the state of \(id): \(error)")
        }
        // Put back on the schedule by the `defer` above, once out of flight.
        state.withLock { s in if s.entries[id] != nil { s.entries[id] = env } }
    }

    /// Queues the DSNs this attempt owes: failures, "relayed" for NOTIFY=SUCCESS
    /// past a next hop without DSN, and one delay warning. Never to the null sender.
    private func notify(_ env: inout QueuedEnvelope, failed: [Int], relayed: [Int]) async {
        if env.sender.isEmpty {
            if !failed.isEmpty {
                logger.warning("queue: \(env.id) from the null sender failed for \(failed.map { env.recipients[$0].address }); no bounce for a bounce")
            }
            return
        }
        let failures = failed.filter { env.recipients[$0].wants("FAILURE") }
        if !failures.isEmpty { await bounce(env, .failed, failures.map { env.recipients[$0] }) }
        let successes = relayed.filter { !env.recipients[$0].successReported }
        if !successes.isEmpty {
            await bounce(env, .relayed, successes.map { env.recipients[$0] })
            for i in successes { env.recipients[i].successReported = true }
        }
        if let warn = settings.delayWarning, !env.delayWarned, Date().timeIntervalSince(env.arrival) >= warn {
            let late = env.recipients.filter { $0.status == .pending && $0.wants("DELAY") }
            if !late.isEmpty {
                await bounce(env, .delayed, late, retryUntil: env.arrival.addingTimeInterval(settings.lifetime))
            }
            env.delayWarned = true
        }
    }

    private func bounce(_ env: QueuedEnvelope, _ kind: DSN.Kind, _ recipients: [QueuedRecipient], retryUntil: Date? = nil) async {
        do {
            let original = try spool.message(env)
            let text = try original.prefix(DSN.returnLimit + 1)
            let dsn = DSN.build(kind: kind, env: env, recipients: recipients, original: text, originalSize: original.count,
                                reportingMTA: settings.hostname, retryUntil: retryUntil)
            let id = Spool.newID()
            var bounceEnv = QueuedEnvelope(id: id, sender: "", recipients: [QueuedRecipient(address: env.sender, notify: "NEVER")],
                                           size: dsn.count, messageID: "<\(env.id).\(kind.rawValue)@\(settings.hostname)>",
                                           origin: "mxgate DSN for \(env.id)")
            bounceEnv.recipients[0].notify = "NEVER"
            let body = MessageBody(memoryThreshold: dsn.count, tempDirectory: NSTemporaryDirectory())
            var buffer = ByteBuffer()
            buffer.writeBytes(dsn)
            try body.append(buffer)
            try await spool.store(bounceEnv, header: ByteBuffer(), body: body)
            enqueue(bounceEnv)
            report(DeliveryReport(id: env.id, outcome: .bounced, sender: env.sender, recipients: recipients.map(\.address),
                                  messageID: env.messageID, size: env.size, reply: "\(kind.rawValue) DSN queued as \(id) to <\(env.sender)>",
                                  destination: id))
        } catch {
            logger.error("queue: cannot queue a \(kind.rawValue) DSN for \(env.id): \(error)")
        }
    }

    struct RecipientResult {
        var status: QueuedRecipient.Status
        var reply: String
    }

    struct Outcome {
        var results: [RecipientResult]
        var host: String?
        /// The next hop took NOTIFY/ORCPT (it advertised DSN), so it reports success itself.
        var dsnPassedOn = false
    }

    private func deliver(_ env: QueuedEnvelope, _ indices: [Int], to dest: Destination, text: StoredText?,
                         on loop: EventLoop? = nil) async -> Outcome {
        func all(_ status: QueuedRecipient.Status, _ reply: String, host: String? = nil) -> Outcome {
            Outcome(results: indices.map { _ in RecipientResult(status: status, reply: reply) }, host: host)
        }
        let hosts: [(String, Int, DownstreamOptions.TLSMode, Bool)]
        switch dest {
        case .maildir(let dir):
            do {
                let body = try spool.message(env)
                let boxes = try indices.map { try AddressParser.parseMailbox(env.recipients[$0].address) }
                _ = try await MaildirDelivery(root: dir).deliver(header: ByteBuffer(), body: body, to: boxes, hostname: settings.hostname)
                return all(.delivered, "250 2.0.0 delivered to maildir", host: "maildir:\(dir)")
            } catch {
                return all(.pending, "maildir delivery failed: \(error)", host: "maildir:\(dir)")
            }
        case .smtp(let h, let p, let tls, let verify):
            hosts = [(h, p, tls, verify)]
        case .mx(let domain, let tls, let verify):
            switch await mxLookup(domain) {
            case .success(let names) where !names.isEmpty:
                hosts = names.map { ($0, settings.mxPort, tls, verify) }
            case .success:
                return all(.failed, "550 5.1.2 no mail host for \(domain)")
            case .failure(let e):
                return e.permanent ? all(.failed, "550 5.1.2 \(domain): \(e.reason)") : all(.pending, "451 4.4.3 \(domain): \(e.reason)")
            }
        }
        var lastError = "no host tried"
        for (host, port, tls, verify) in hosts {
            let pool: DownstreamPool
            do {
                pool = try self.pool(host: host, port: port, tls: tls, verify: verify)
            } catch {
                return all(.pending, "4.7.5 TLS setup for \(host) failed: \(error)")
            }
            let label = pool.options.label
            for attempt in 0..<2 {
                let conn: DownstreamConnection
                let reused: Bool
                do {
                    (conn, reused) = try await pool.checkout(near: loop)
                } catch {
                    lastError = "\(error)"
                    break  // next host
                }
                do {
                    return try await transaction(env, indices, text: text, on: conn, pool: pool, label: label)
                } catch let e as ReusedConnectionDead where reused && attempt == 0 {
                    _ = e
                    continue  // the idle connection had died; once more with a fresh one
                } catch {
                    conn.abandon()
                    return all(.pending, "4.4.2 \(label): \(error)", host: label)
                }
            }
        }
        return all(.pending, "4.4.1 \(lastError)")
    }

    /// The connection failed before the downstream answered MAIL: if it was
    /// an idle one from the pool, it had died while idle, and a fresh one
    /// gets the message instead.
    private struct ReusedConnectionDead: Error, CustomStringConvertible {
        let underlying: Error
        var description: String { "\(underlying)" }
    }

    /// MAIL, RCPT for each recipient, DATA: per-recipient results.
    private func transaction(_ env: QueuedEnvelope, _ indices: [Int], text: StoredText?, on conn: DownstreamConnection,
                             pool: DownstreamPool, label: String) async throws -> Outcome {
        func classify(_ reply: SMTPReply) -> QueuedRecipient.Status {
            reply.code / 100 == 2 ? .delivered : reply.code / 100 == 5 ? .failed : .pending
        }
        var params = MailParameters()
        params.ret = env.ret
        params.envid = env.envid
        params.body = env.body
        params.smtpUTF8 = env.smtpUTF8
        let sender: ReversePath = env.sender.isEmpty ? .null : .mailbox(try AddressParser.parseMailbox(env.sender))
        var to: [(Mailbox, RcptParameters)] = []
        for i in indices {
            let r = env.recipients[i]
            var rp = RcptParameters()
            rp.notify = r.notify
            rp.orcpt = r.orcpt
            to.append((try AddressParser.parseMailbox(r.address), rp))
        }
        let replies: DownstreamConnection.EnvelopeReplies
        do {
            replies = try await conn.envelope(sender, params, size: env.size, to: to)
        } catch {
            conn.abandon()
            throw ReusedConnectionDead(underlying: error)
        }
        let mail = replies.mail
        guard mail.code / 100 == 2 else {
            await pool.checkin(conn)
            return Outcome(results: indices.map { _ in RecipientResult(status: classify(mail), reply: mail.description) }, host: label)
        }
        var results: [RecipientResult] = []
        var accepted: [Int] = []
        for (n, reply) in replies.rcpts.enumerated() {
            results.append(RecipientResult(status: classify(reply), reply: reply.description))
            if reply.code / 100 == 2 { accepted.append(n) }
        }
        guard replies.goAhead else {
            await pool.checkin(conn)
            // Recipients accepted but DATA refused: that answer is every accepted recipient's.
            if let refused = replies.data {
                for n in accepted { results[n] = RecipientResult(status: classify(refused), reply: refused.description) }
            }
            return Outcome(results: results, host: label)
        }
        let final: SMTPReply
        if let text {
            final = try await conn.text(header: text.header, body: text.body, bodyOffset: text.offset)
        } else {
            final = try await conn.text(header: ByteBuffer(), body: try spool.message(env))
        }
        for n in accepted { results[n] = RecipientResult(status: classify(final), reply: final.description) }
        let dsn = conn.capabilities.contains("DSN")
        await pool.checkin(conn)
        return Outcome(results: results, host: label, dsnPassedOn: dsn)
    }

    private func pool(host: String, port: Int, tls: DownstreamOptions.TLSMode, verify: Bool) throws -> DownstreamPool {
        let key = "\(host)|\(port)|\(tls.rawValue)|\(verify)"
        if let p = pools.withLock({ $0[key] }) { return p }
        var o = settings.connection
        o.host = host
        o.port = port
        o.tls = tls
        o.verifyCertificate = verify
        let fresh = try DownstreamPool(options: o, group: group, maxIdle: settings.poolSize, idleTimeout: settings.poolIdleTimeout)
        return pools.withLock { p in
            if let existing = p[key] { return existing }
            p[key] = fresh
            return fresh
        }
    }

    static func duration(_ s: Double) -> String {
        if s >= 86400 { return String(format: "%.1f days", s / 86400) }
        if s >= 3600 { return String(format: "%.1f hours", s / 3600) }
        if s >= 60 { return String(format: "%.0f minutes", s / 60) }
        return String(format: "%.0f seconds", s)
    }
}
