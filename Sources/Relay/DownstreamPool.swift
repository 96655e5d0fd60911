import NIOCore
import NIOSSL
import Synchronization

/// Idle downstream connections kept for reuse, so a busy gateway does not
/// open one connection per message. A connection is reused only if it is
/// alive, outside a transaction, and younger than the idle limit.
public final class DownstreamPool: Sendable {
    public let options: DownstreamOptions
    /// `options.label`, made once: every relayed message's audit record names it.
    public let label: String
    private let group: EventLoopGroup
    private let tlsContext: NIOSSLContext?
    private let maxIdle: Int
    private let idleTimeout: TimeAmount
    /// Transactions per connection before it is retired (Postfix smtp_connection_reuse_count_limit).
    private let maxTransactions = 1000
    private let idle = Mutex<[DownstreamConnection]>([])
    private let closed = Mutex(false)

    public init(options: DownstreamOptions, group: EventLoopGroup, maxIdle: Int, idleTimeout: TimeAmount) throws {
        self.options = options
        self.label = options.label
        self.group = group
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        if options.tls == .none {
            tlsContext = nil
        } else {
            var config = TLSConfiguration.makeClientConfiguration()
            config.minimumTLSVersion = .tlsv12
            if options.verifyCertificate {
                if let ca = options.caFile { config.trustRoots = .file(ca) }
            } else {
                // Opportunistic TLS (RFC 7435): encrypt, but an unverified
                // certificate is no worse than plaintext.
                config.certificateVerification = .none
            }
            tlsContext = try NIOSSLContext(configuration: config)
        }
    }

    /// A connection ready for MAIL: a reused idle one, or a new one.
    /// `near` is the caller's event loop: an idle connection on that loop
    /// is preferred and a new one is opened there, so a session and its
    /// downstream share one thread and its replies need no thread switch.
    public func checkout(near loop: EventLoop? = nil) async throws -> (DownstreamConnection, reused: Bool) {
        let now = NIODeadline.now()
        while let c = idle.withLock({ list -> DownstreamConnection? in
            if let loop, let i = list.lastIndex(where: { $0.channel.eventLoop === loop }) { return list.remove(at: i) }
            return list.popLast()
        }) {
            if c.isUsable && now - c.lastUsed < idleTimeout { return (c, true) }
            c.abandon()
        }
        return (try await DownstreamConnection.open(options, group: loop ?? group.next(), tlsContext: tlsContext), false)
    }

    /// Takes a connection back; resets an open transaction first. Broken,
    /// old or surplus connections are closed.
    public func checkin(_ c: DownstreamConnection) async {
        if c.inTransaction && !c.broken {
            _ = try? await c.reset()
        }
        guard c.isUsable, c.transactions < maxTransactions, !closed.withLock({ $0 }) else {
            await c.quit()
            return
        }
        c.lastUsed = .now()
        let keep = idle.withLock { list -> Bool in
            guard list.count < maxIdle else { return false }
            list.append(c)
            return true
        }
        if !keep { await c.quit() }
    }

    public var idleCount: Int { idle.withLock { $0.count } }

    /// Closes every idle connection (shutdown, reload).
    public func close() async {
        closed.withLock { $0 = true }
        let all = idle.withLock { list -> [DownstreamConnection] in
            defer { list.removeAll() }
            return list
        }
        for c in all { await c.quit() }
    }
}
