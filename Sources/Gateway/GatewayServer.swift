import Audit
import Foundation
import Logging
import NIOCore
import NIOPosix
import Policy
import Relay
import Synchronization

/// The running gateway: listeners, the sessions they accept, the current
/// runtime (swapped whole on reload) and the audit writer. Shutdown stops
/// accepting, lets open transactions finish up to a deadline, then closes.
public final class GatewayServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let loopExecutors: LoopExecutors
    private let running = TaskCounter()
    private let runtime: Mutex<Runtime>
    private let audit: AuditWriter
    /// Where the review console writes its own records (logins, releases).
    public var auditSink: any AuditSink { audit }
    private let logger: Logger
    private let configPath: String
    private let sessions = Mutex<[ObjectIdentifier: Channel]>([:])
    private let listeners = Mutex<[Channel]>([])
    private let stopping = Mutex(false)
    /// Near max_connections (over 80 %, until under 60 %): idle sessions
    /// get [limits] stress_timeout instead of command_timeout, as Postfix's
    /// smtpd does under stress, so idle connections cannot crowd out mail.
    private let stressed = Mutex(false)
    private let sessionCounter = Atomic<Int>(0)
    private let sessionPrefix: String
    let metrics = GatewayMetrics()
    /// Greylist, limits and greet-wait memory ([state]), for the life of the process.
    let state: SharedState
    /// The spool and its delivery, for the life of the process (queue mode or proxy fallback).
    private let queue: QueueService?

    /// Addresses actually bound (port 0 resolved), for logs and tests.
    public let boundAddresses = Mutex<[SocketAddress]>([])

    public init(configPath: String, config: GatewayConfig, logger: Logger) throws {
        self.configPath = configPath
        self.logger = logger
        group = MultiThreadedEventLoopGroup.singleton
        loopExecutors = LoopExecutors(group)
        audit = try AuditWriter(options: .init(path: config.auditPath, maxBytes: config.auditMaxBytes, keep: config.auditKeep))
        queue = config.mode == .queue || config.fallback == .queue
            ? try Self.openQueue(config, group: group, audit: audit, logger: logger, metrics: metrics) : nil
        do {
            state = try SharedState(settings: config.state, greylist: config.greylist, file: config.resolve(config.state.file),
                                    metrics: metrics, logger: logger)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "[state] \(error)")])
        }
        let first = try Runtime(config: config, group: group, queue: queue, state: state)
        runtime = Mutex(first)
        for w in first.policy.warnings { logger.warning("\(w)") }
        sessionPrefix = upperHex(UInt64.random(in: 0..<0xFFFFF), width: 5)
        if case .maildir(let dir) = config.downstream {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
    }

    private var currentRuntime: Runtime { runtime.withLock { $0 } }

    /// Binds every listener and serves until `shutdown()` has finished.
    public func run() async throws {
        let config = currentRuntime.config
        var bound: [Channel] = []
        let inherited = Privileges.inheritedListeners()
        let loops = Array(group.makeIterator())
        let timeout = TimeAmount.milliseconds(Int64(config.limits.commandTimeout * 1000))
        let stressTimeout = TimeAmount.milliseconds(Int64(config.limits.stressTimeout * 1000))
        let shortest = TimeAmount.milliseconds(Int64(min(config.limits.commandTimeout, config.limits.dataBlockTimeout,
                                                         config.limits.dataDeadline) * 1000))
        for l in config.listen {
            let fds = try inherited[l.description]
                ?? ListenSockets.open(l, count: loops.count, siblings: config.listen)
            for (i, fd) in fds.enumerated() {
                let loop = loops[i % loops.count]
                let ch = try await Self.bootstrap(on: loop, children: fds.count < loops.count ? group : loop) { [self] child in
                    let input = SessionInputHandler(timeout: timeout, stressTimeout: stressTimeout, shortest: shortest, loop: child.eventLoop)
                    input.onActive = { [self] in self.start(Accepted(channel: child, input: input)) }
                    return input
                }.withBoundSocket(fd).get()
                // NIO listens again on an adopted socket with its default
                // backlog (128), and ignores the backlog option there.
                _ = Glibc.listen(fd, ListenSockets.backlog)
                listeners.withLock { $0.append(ch) }
                bound.append(ch)
                if i == 0, let addr = ch.localAddress {
                    boundAddresses.withLock { $0.append(addr) }
                    logger.info("listening on \(Self.describe(addr))")
                }
            }
        }
        var milterServer: MilterServer?
        if let m = config.milter {
            let ms = MilterServer(m, executors: loopExecutors, logger: logger) { [self] in
                MilterConnection(runtime: currentRuntime, audit: audit, state: state, metrics: metrics, logger: logger,
                                 newSessionID: { [self] in nextSessionID() })
            }
            let address = try await ms.bind(group: group)
            logger.info("milter listening on \(address)")
            milterServer = ms
        }
        warnIfRoot(config)
        logger.info("mxgate ready: \(config.hostname), relay \(config.mode.rawValue) to \(currentRuntime.delivery.label), domains \(config.relayDomainsDescription)")

        var metricsChannel: Channel?
        if let m = config.metricsListen {
            let queue = self.queue
            let metrics = self.metrics
            let ch = try await MetricsServer.start(host: m.host, port: m.port, group: group, metrics: metrics) {
                if let (queued, inFlight) = queue?.manager.depth {
                    metrics.queueDepth.set(Double(queued))
                    metrics.queueInFlight.set(Double(inFlight))
                }
            }
            if let addr = ch.localAddress { logger.info("metrics on http://\(Self.describe(addr))/metrics") }
            metricsChannel = ch
        }
        defer { metricsChannel?.close(promise: nil) }
        let queueTask = Task(executorPreference: loopExecutors.any) { await self.queue?.run() }
        let expiry = Task { await self.expireQuarantine() }
        defer { expiry.cancel() }
        let snapshots = Task { [state] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(10))
                state.persist()
            }
        }
        defer { snapshots.cancel() }
        let releases = Task { await self.serveReleaseRequests() }
        defer { releases.cancel() }
        let watch = Task { await self.watchSignatures() }
        defer { watch.cancel() }
        for server in bound { try? await server.closeFuture.get() }
        milterServer?.stop()
        await milterServer?.closed()
        await running.allFinished()
        queue?.stop()
        await queueTask.value
        await currentRuntime.shutdown()
        state.persist()
        audit.close()
        logger.info("mxgate stopped")
    }

    /// Deletes quarantined messages past `[quarantine] retention`, hourly.
    private func expireQuarantine() async {
        while !Task.isCancelled {
            let config = currentRuntime.config
            let gone = QuarantineAdmin(config: config).expire(retention: config.quarantineRetention, audit: audit)
            if !gone.isEmpty { logger.info("quarantine: expired \(gone.count) message(s)") }
            try? await Task.sleep(for: .seconds(3600))
        }
    }

    /// Releases what other gateways sharing `[state] redis` asked this one
    /// to (`mxgate quarantine release ID --node NAME` on any of them).
    private func serveReleaseRequests() async {
        guard state.shared else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(2))
            let config = currentRuntime.config
            for (id, by) in await state.releaseRequests(node: config.stateNode) {
                let admin = QuarantineAdmin(config: config, spool: config.mode == .queue ? queue?.spool : nil)
                do {
                    let result = try await admin.release(id, audit: audit, reason: "released on request of \(by)")
                    logger.info("quarantine: \(id) released on request of \(by): \(result)")
                } catch {
                    logger.error("quarantine: release of \(id) asked by \(by) failed: \(error)")
                }
            }
        }
    }

    /// Rebuilds the embedded ClamAV engine when its signature folder
    /// changes, so freshclam's updates apply without a reload.
    private func watchSignatures() async {
        while !Task.isCancelled {
            let interval = currentRuntime.config.clamavWatchInterval
            try? await Task.sleep(for: .milliseconds(Int((interval > 0 ? interval : 60) * 1000)))
            let runtime = currentRuntime
            guard runtime.config.clamavWatchInterval > 0, case .embedded(let engine)? = runtime.scanner else { continue }
            let result = try? await NIOThreadPool.singleton.runIfActive { engine.reloadIfChanged() }
            switch result {
            case .reloaded(let n)?:
                logger.info("clamav: signatures in \(engine.directory) changed; engine reloaded with \(n) signatures")
            case .failed(let why)?:
                logger.error("clamav: signatures in \(engine.directory) changed but do not load, keeping the running engine: \(why)")
            default:
                break
            }
        }
    }

    /// Running as root without `[server] user` works, and says it should not.
    private func warnIfRoot(_ config: GatewayConfig) {
        if !Privileges.inheritedListeners().isEmpty {
            let name = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
            logger.info("running as user \(name) (uid \(geteuid())); listeners bound by root before the switch")
        } else if geteuid() == 0 {
            logger.warning("running as root: set [server] user, or run as a user with CAP_NET_BIND_SERVICE (deploy/mxgate.service)")
        }
    }

    private static func openQueue(_ config: GatewayConfig, group: EventLoopGroup, audit: AuditSink, logger: Logger,
                                  metrics: GatewayMetrics) throws -> QueueService {
        do {
            return try QueueService(config: config, group: group, audit: audit, logger: logger, metrics: metrics)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "[queue] \(error)")])
        }
    }

    static func describe(_ a: SocketAddress) -> String {
        guard let ip = a.ipAddress, let port = a.port else { return "\(a)" }
        return Destination.hostPort(ip, port)
    }

    /// Starts a session's task, on its connection's loop, counted so that
    /// shutdown can wait for every session to end.
    private func start(_ accepted: Accepted) {
        running.started()
        Task(executorPreference: loopExecutors[accepted.channel.eventLoop]) {
            await self.serve(accepted)
            self.running.finished()
        }
    }

    /// A listener on `loop` whose connections are served on `children`: the
    /// same loop when every loop has its own socket (see ListenSockets), else
    /// the whole group round-robin, so no loop is left without connections.
    /// The plain (future-based) bootstrap: a session's task is
    /// started from the accept itself, without the async bootstrap's
    /// per-connection futures and accept stream.
    private static func bootstrap(on loop: EventLoop, children: EventLoopGroup,
                                  handler: @escaping @Sendable (Channel) -> SessionInputHandler) -> ServerBootstrap {
        var bootstrap = ServerBootstrap(group: loop, childGroup: children)
            // One accept per wake-up: a second in the same turn nearly
            // always finds nothing (EAGAIN), and the loop comes back anyway.
            .serverChannelOption(.maxMessagesPerRead, value: 1)
        #if os(Linux)
        // Accepted sockets inherit TCP_NODELAY from the listener on Linux:
        // set once, not per connection (NIO's per-connection option costs a
        // getsockname, a setsockopt and a future).
        bootstrap = bootstrap.serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        #else
        bootstrap = bootstrap.childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        #endif
        return bootstrap.childChannelInitializer { child in
            child.eventLoop.makeCompletedFuture {
                // Reads of at least 8 KB: a 4 KB message with its headers in one
                // read (4 KB reads took two, one more system call per message);
                // grows to 64 KB for bulk text. Idle connections hold none.
                try child.syncOptions?.setOption(.recvAllocator, value: Self.recvAllocator)
                try child.pipeline.syncOperations.addHandler(handler(child))
            }
        }
    }

    static let recvAllocator = AdaptiveRecvByteBufferAllocator(minimum: 8192, initial: 8192, maximum: 65536)

    /// A new connection with its input handler, as the accept loop hands it over.
    struct Accepted: Sendable {
        let channel: Channel
        let input: SessionInputHandler
    }

    // The @inline(never) functions below keep their locals out of the async
    // frames an idle session waits in: with 10,000 idle connections every
    // byte of those frames counts ten thousand times.
    /// A session id unique in this process's log: its prefix, then a counter.
    func nextSessionID() -> String {
        let n = sessionCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return sessionPrefix + upperHex(UInt64(n & 0xFFFFFF), width: 6)
    }

    @inline(never)
    private func serve(_ accepted: Accepted) async {
        let runtime = currentRuntime
        let channel = accepted.channel
        let id = ObjectIdentifier(channel)
        let sessionID = nextSessionID()
        let tooMany = sessions.withLock { s -> Bool in
            if s.count >= runtime.config.maxConnections { return true }
            s[id] = channel
            return false
        }
        guard !tooMany else {
            await refuseTooMany(channel, sessionID: sessionID, max: runtime.config.maxConnections)
            return
        }
        updateStress(runtime.config.maxConnections, newcomer: channel)
        defer {
            sessions.withLock { _ = $0.removeValue(forKey: id) }
            updateStress(runtime.config.maxConnections, newcomer: nil)
        }
        if stopping.withLock({ $0 }) {
            channel.close(promise: nil)
            return
        }
        let session = Session(channel: channel, input: accepted.input, runtime: runtime, audit: audit, logger: logger,
                              sessionID: sessionID, state: state, metrics: metrics)
        await session.run()
        channel.close(promise: nil)  // nothing to wait for, and no future to make per session
    }

    @inline(never)
    private func refuseTooMany(_ channel: Channel, sessionID: String, max: Int) async {
        let reply = SMTPReplyText.tooManyConnections
        let addr = channel.remoteAddress
        audit.record(AuditRecord(event: .connection, session: sessionID, clientIP: addr?.ipAddress ?? "unknown",
                                 clientPort: addr?.port, verdict: .tempfailed, reply: reply.description,
                                 reason: "max_connections (\(max)) reached"))
        var b = channel.allocator.buffer(capacity: 64)
        reply.encode(into: &b)
        try? await channel.writeAndFlush(b).get()
        try? await channel.close()
    }

    /// Turns stress on or off for every session when the count crosses the
    /// thresholds; a session arriving during stress is told at once.
    private func updateStress(_ max: Int, newcomer: Channel?) {
        let count = sessions.withLock { $0.count }
        let (changed, now) = stressed.withLock { s -> (Bool, Bool) in
            let next = s ? count * 10 > max * 6 : count * 10 > max * 8
            defer { s = next }
            return (next != s, next)
        }
        if changed {
            logger.warning(now ? "under stress: \(count) of \(max) connections; idle sessions now time out sooner"
                               : "stress over: \(count) of \(max) connections")
            for ch in sessions.withLock({ Array($0.values) }) {
                ch.pipeline.fireUserInboundEventTriggered(SessionInputHandler.StressEvent(on: now))
            }
        } else if now, let newcomer {
            newcomer.pipeline.fireUserInboundEventTriggered(SessionInputHandler.StressEvent(on: true))
        }
    }

    /// Re-reads the configuration and TLS certificate. On any error the
    /// running configuration stays, and every error is logged.
    @discardableResult
    public func reload() -> Bool {
        let old = currentRuntime
        do {
            let config = try GatewayConfig.load(configPath)
            let fresh = try Runtime(config: config, group: group, queue: queue, state: state)
            if (config.mode == .queue || config.fallback == .queue) && queue == nil {
                logger.warning("reload: queue mode and fallback take effect after a restart")
            }
            for w in fresh.policy.warnings { logger.warning("reload: \(w)") }
            if config.listen != old.config.listen { logger.warning("reload: [server] listen changes take effect after a restart") }
            if config.auditPath != old.config.auditPath { logger.warning("reload: [audit] path changes take effect after a restart") }
            runtime.withLock { $0 = fresh }
            Task { await old.shutdown() }
            logger.info("reload: configuration \(configPath) loaded")
            return true
        } catch let errors as ConfigErrors {
            for e in errors.errors { logger.error("reload failed, keeping the running configuration: \(e)") }
        } catch let errors as PolicyLoadError {
            for e in errors.diagnostics { logger.error("reload failed, keeping the running configuration: \(e)") }
        } catch {
            logger.error("reload failed, keeping the running configuration: \(error)")
        }
        return false
    }

    /// Stops accepting, asks idle sessions to leave (421), lets transactions
    /// in progress finish, and closes whatever is left after the deadline.
    public func shutdown() {
        let first = stopping.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        guard first else { return }
        logger.info("shutting down: no new connections, finishing open transactions")
        for l in listeners.withLock({ $0 }) { l.close(promise: nil) }
        for ch in sessions.withLock({ Array($0.values) }) {
            ch.pipeline.fireUserInboundEventTriggered(SessionInputHandler.ShutdownEvent())
        }
        let deadline = currentRuntime.config.shutdownTimeout
        Task {
            try? await Task.sleep(for: .milliseconds(Int(deadline * 1000)))
            let left = self.sessions.withLock { Array($0.values) }
            if !left.isEmpty { self.logger.warning("shutdown deadline reached, closing \(left.count) connection(s)") }
            for ch in left { ch.close(promise: nil) }
        }
    }
}

import SMTPProtocol

/// Session tasks still running, so shutdown can wait for the last one.
final class TaskCounter: Sendable {
    private let state = Mutex<(count: Int, waiters: [CheckedContinuation<Void, Never>])>((0, []))

    func started() { state.withLock { $0.count += 1 } }

    func finished() {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.count -= 1
            guard s.count == 0 else { return [] }
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for w in ready { w.resume() }
    }

    func allFinished() async {
        await withCheckedContinuation { c in
            let now = state.withLock { s -> Bool in
                if s.count == 0 { return true }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}

enum SMTPReplyText {
    static let tooManyConnections = SMTPReply(421, "4.7.0", "Too many connections, try again later")
}

extension GatewayServer {
    /// Loads the virus scanner's signatures the way `serve` would, for `mxgate check`.
    public static func checkScanner(_ config: GatewayConfig) throws -> Bool {
        try Runtime.makeScanner(config) != nil
    }

    /// Reads the [rewrite] tables; each problem as FILE:LINE:COL: message.
    public static func checkRewrite(_ config: GatewayConfig) -> [String] {
        var out: [String] = []
        for path in [config.senderRewrite, config.recipientRewrite].compactMap({ $0 }) {
            do { _ = try RewriteTable(path: path) } catch { out += "\(error)".split(separator: "\n").map(String.init) }
        }
        return out
    }

    /// Loads the TLS certificate and key the way `serve` would, for `mxgate check`.
    public static func checkTLS(_ config: GatewayConfig) throws -> Bool {
        try Runtime.makeServerTLS(config) != nil
    }
}

extension GatewayConfig {
    /// How to talk to a next hop, from [relay]: HELO name, TLS, timeouts.
    /// The proxy pool, the queue's routes and quarantine releases all use it.
    func downstreamOptions(host: String, port: Int) -> DownstreamOptions {
        var o = DownstreamOptions(host: host, port: port, heloName: hostname)
        o.tls = downstreamTLS
        o.verifyCertificate = downstreamVerify
        o.caFile = downstreamCA
        o.connectTimeout = .milliseconds(Int64(connectTimeout * 1000))
        o.commandTimeout = .milliseconds(Int64(relayCommandTimeout * 1000))
        o.dataTimeout = .milliseconds(Int64(relayDataTimeout * 1000))
        return o
    }

    var poolIdleTime: TimeAmount { .milliseconds(Int64(poolIdleTimeout * 1000)) }

    public var downstreamDescription: String {
        switch downstream {
        case .maildir(let d): return "maildir:\(d)"
        case .smtp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        }
    }
}
