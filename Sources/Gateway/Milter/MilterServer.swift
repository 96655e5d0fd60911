import Foundation
import Logging
import MilterProtocol
import NIOCore
import NIOPosix
import Relay
import Synchronization

/// `[milter] listen`: accepts MTA connections and runs each as a
/// `MilterConnection`, one task per connection on its event loop, reading
/// packets in order. An MTA keeps a milter connection for the length of an
/// SMTP session, so connections are idle most of the time; `timeout` closes
/// those whose MTA has gone quiet. The connection's bytes come through the
/// same `SessionInputHandler` as an SMTP session's (no async-channel
/// machinery per packet: it cost a tenth of the milter's CPU).
final class MilterServer: Sendable {
    private let settings: MilterServerSettings
    private let executors: LoopExecutors
    private let logger: Logger
    private let connection: @Sendable () -> MilterConnection
    private let server = Mutex<Channel?>(nil)
    private let children = Mutex<[ObjectIdentifier: Channel]>([:])
    private let running = TaskCounter()

    init(_ settings: MilterServerSettings, executors: LoopExecutors, logger: Logger,
         connection: @escaping @Sendable () -> MilterConnection) {
        self.settings = settings
        self.executors = executors
        self.logger = logger
        self.connection = connection
    }

    /// Binds the listener; returns where it listens, port 0 resolved
    /// ("inet:127.0.0.1:8891", "unix:/run/mxgate/milter.sock").
    func bind(group: EventLoopGroup) async throws -> String {
        let idle = TimeAmount.milliseconds(Int64(settings.timeout * 1000))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] ch in
                ch.eventLoop.makeCompletedFuture {
                    let input = SessionInputHandler(timeout: idle, loop: ch.eventLoop)
                    input.setTimeout(idle, mode: .text)  // a timeout per read: packets are not lines
                    input.onActive = { [self] in self.start(ch, input) }
                    try ch.pipeline.syncOperations.addHandler(input)
                }
            }
        switch settings.listen {
        case .inet(let host, let port):
            let ch = try await bootstrap.bind(host: host, port: port).get()
            server.withLock { $0 = ch }
            return MilterSocket.inet(host: ch.localAddress?.ipAddress ?? host, port: ch.localAddress?.port ?? port).description
        case .unix(let path):
            try? FileManager.default.removeItem(atPath: path)
            let ch = try await bootstrap.bind(unixDomainSocketPath: path).get()
            // Only the owner and its group (add the MTA's user to it): anyone else could fill the audit log.
            chmod(path, settings.socketMode)
            server.withLock { $0 = ch }
            return "unix:\(path)"
        }
    }

    /// Returns once the listener is closed and every connection has ended.
    func closed() async {
        if let ch = server.withLock({ $0 }) { try? await ch.closeFuture.get() }
        await running.allFinished()
    }

    /// Stops accepting and closes every MTA connection (their open messages
    /// get the MTA's own default action: Postfix's milter_default_action).
    func stop() {
        server.withLock { $0 }?.close(promise: nil)
        for ch in children.withLock({ Array($0.values) }) { ch.close(promise: nil) }
    }

    private func start(_ channel: Channel, _ input: SessionInputHandler) {
        running.started()
        Task(executorPreference: executors[channel.eventLoop]) {
            await self.run(channel, input)
            self.running.finished()
        }
    }

    private func run(_ channel: Channel, _ input: SessionInputHandler) async {
        let id = ObjectIdentifier(channel)
        children.withLock { $0[id] = channel }
        defer { children.withLock { _ = $0.removeValue(forKey: id) } }
        let conn = connection()
        let peer = channel.remoteAddress.map { "\($0)" } ?? "local"
        var decoder = MilterFrameDecoder()
        var out = ByteBuffer()
        reading: while let next = await input.next() {
            guard case .bytes(let bytes) = next else { break }  // idle too long, or shutting down
            decoder.feed(bytes.readableBytesView)
            do {
                while let (code, data) = try decoder.next() {
                    let command = try MilterCommand.parse(code: code, data: data)
                    for r in try await conn.handle(command) { out.writeBytes(r.encoded()) }
                    if conn.closed { break }
                }
            } catch {
                logger.warning("milter connection from \(peer) ended: \(error)")
                break reading
            }
            if out.readableBytes > 0 {
                let b = out
                out = ByteBuffer()
                if channel.isWritable {
                    channel.writeAndFlush(b, promise: nil)
                } else {
                    do { try await channel.writeAndFlush(b).get() } catch { break reading }
                }
            }
            if conn.closed { break }
        }
        await conn.close()
        channel.close(promise: nil)
    }
}
