import Audit
import Checks
import Foundation
import Logging
import NIOCore
import NIOPosix
import Relay
import Synchronization
import Threads

/// The store-and-forward side of the gateway, one per process (a reload
/// swaps the rules, not the queue): the spool, the queue manager delivering
/// from it, and the control socket the `mxgate queue` tools talk to.
final class QueueService: Sendable {
    let spool: Spool
    let manager: QueueManager
    private let resolver: DNSResolver?
    private let control: QueueControl

    init(config: GatewayConfig, group: EventLoopGroup, audit: AuditSink, logger: Logger, metrics: GatewayMetrics) throws {
        spool = try Spool(directory: config.queueDirectory)
        var s = QueueSettings(hostname: config.hostname, connection: config.downstreamOptions(host: "", port: 0))
        s.minBackoff = config.queueMinBackoff
        s.maxBackoff = config.queueMaxBackoff
        s.lifetime = config.queueLifetime
        s.delayWarning = config.queueDelayWarning
        s.destinationConcurrency = config.destinationConcurrency
        s.maxDeliveries = config.maxDeliveries
        s.mxPort = config.mxPort
        s.poolSize = config.poolSize
        s.poolIdleTimeout = config.poolIdleTime
        let servers = config.dnsServers.compactMap(ConfigReader.parseResolver)
        let resolver = try? DNSResolver(servers: servers, timeout: config.dnsTimeout)
        self.resolver = resolver
        let lookup: MXLookup = { domain in
            guard let resolver else { return .failure(MXLookupError(permanent: false, reason: "no DNS resolver")) }
            switch await resolver.mailHosts(domain) {
            case .success(let hosts): return .success(hosts)
            case .failure(let e): return .failure(MXLookupError(permanent: e == .nxdomain || e == .noData, reason: "MX lookup: \(e)"))
            }
        }
        manager = QueueManager(spool: spool, settings: s, router: Self.router(config), group: group, mxLookup: lookup,
                               logger: logger) { report in
            metrics.delivery(report.outcome.rawValue)
            audit.record(QueueService.record(report))
        }
        control = QueueControl(path: config.queueDirectory + "/control.sock", manager: manager, logger: logger)
    }

    static func router(_ config: GatewayConfig) -> Router {
        let fallback: Destination
        switch config.downstream {
        case .maildir(let d): fallback = .maildir(d)
        case .smtp(let h, let p): fallback = .smtp(host: h, port: p, tls: config.downstreamTLS, verify: config.downstreamVerify)
        }
        return Router(routes: config.routes, defaultRoute: fallback, localDomains: config.domains, outboundTLS: .opportunistic)
    }

    func run() async {
        control.start()
        await manager.run()
    }

    func stop() {
        control.stop()
        manager.stop()
        resolver?.close()
    }

    /// Delivery events in the audit log: `event` "delivery", the queue ID
    /// as `session` and in `relay`, the remote answer as `reply`.
    static func record(_ r: DeliveryReport) -> AuditRecord {
        let verdict: AuditRecord.Verdict
        switch r.outcome {
        case .delivered, .released: verdict = .accepted
        case .deferred, .held: verdict = .tempfailed
        case .failed, .expired, .bounced: verdict = .rejected
        case .deleted: verdict = .discarded
        }
        var a = AuditRecord(event: .delivery, session: r.id, clientIP: "", mailFrom: r.sender, rcptTo: r.recipients,
                            messageID: r.messageID, size: r.size, verdict: verdict, reply: r.reply ?? r.outcome.rawValue,
                            relay: "queue \(r.id)" + (r.destination.map { " \($0)" } ?? ""), reason: r.outcome.rawValue)
        a.warnings = []
        return a
    }
}

/// A unix socket in the queue folder that `mxgate queue hold|release|
/// delete|flush` use, so the running gateway, which owns the envelopes,
/// makes the change (no two writers of one file). One line in, one line out.
final class QueueControl: Sendable {
    let path: String
    private let manager: QueueManager
    private let logger: Logger
    private let fd = Atomic<Int32>(-1)

    init(path: String, manager: QueueManager, logger: Logger) {
        self.path = path
        self.manager = manager
        self.logger = logger
    }

    func start() {
        unlink(path)
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0, QueueControlClient.withAddress(path, { bind(s, $0, $1) }) == 0, listen(s, 16) == 0 else {
            logger.error("queue: cannot open the control socket \(path): \(String(cString: strerror(errno)))")
            if s >= 0 { close(s) }
            return
        }
        chmod(path, 0o600)
        fd.store(s, ordering: .relaxed)
        detachNamedThread("mxgate-queuectl") { [self] in
            while true {
                let c = accept(s, nil, nil)
                if c < 0 {
                    if errno == EINTR { continue }
                    return
                }
                Task { await self.serve(c) }
            }
        }
    }

    func stop() {
        let s = fd.exchange(-1, ordering: .relaxed)
        if s >= 0 {
            shutdown(s, Int32(SHUT_RDWR))
            close(s)
            unlink(path)
        }
    }

    private func serve(_ c: Int32) async {
        defer { close(c) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard let line = QueueControlClient.readLine(c) else { return }
        let words = line.split(separator: " ").map(String.init)
        let id = words.count > 1 ? words[1] : nil
        let result: QueueManager.ControlResult
        switch (words.first, id) {
        case ("flush", let id): result = await manager.flush(id)
        case ("hold", let id?): result = await manager.hold(id)
        case ("release", let id?): result = await manager.release(id)
        case ("delete", let id?): result = await manager.delete(id)
        case ("adopt", let id?): result = await manager.adopt(id)
        default: result = .ok("unknown command")
        }
        let answer: String
        switch result {
        case .ok(let s): answer = "ok \(s)"
        case .notFound: answer = "error no queued message \(id ?? "")"
        case .busy: answer = "error \(id ?? "") is being delivered right now; try again in a moment"
        }
        _ = QueueControlClient.writeLine(c, answer)
    }
}

/// The `mxgate queue` side of the control socket.
public enum QueueControlClient {
    /// Sends one command to the running gateway; nil when none is running.
    public static func send(_ command: String, queueDirectory: String) -> String? {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { return nil }
        defer { close(s) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard withAddress(queueDirectory + "/control.sock", { connect(s, $0, $1) }) == 0 else { return nil }
        guard writeLine(s, command) else { return nil }
        return readLine(s)
    }

    static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            errno = ENAMETOOLONG
            return -1
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func readLine(_ fd: Int32) -> String? {
        var out: [UInt8] = []
        var b: UInt8 = 0
        while out.count < 4096 {
            let n = recv(fd, &b, 1, 0)
            if n <= 0 { return out.isEmpty ? nil : String(decoding: out, as: UTF8.self) }
            if b == 10 { break }
            out.append(b)
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func writeLine(_ fd: Int32, _ s: String) -> Bool {
        let bytes = Array((s + "\n").utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }
}
