import Foundation
import Logging
import MilterProtocol
import NIOCore
import NIOPosix
import Relay
import Synchronization

/// `[milter] listen`: accepts MTA connections and runs each as a
/// `MilterConnection`, one task per connection reading packets in order.
/// An MTA keeps a milter connection for the length of an SMTP session, so
/// connections are idle most of the time; `timeout` closes those whose MTA
/// has gone quiet.
final class MilterServer: Sendable {
    typealias Child = NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private let server: NIOAsyncChannel<Child, Never>
    private let children = Mutex<[ObjectIdentifier: Channel]>([:])
    private let logger: Logger
    /// Where it listens, port 0 resolved ("inet:127.0.0.1:8891", "unix:/run/mxgate/milter.sock").
    let address: String

    private init(server: NIOAsyncChannel<Child, Never>, address: String, logger: Logger) {
        self.server = server
        self.address = address
        self.logger = logger
    }

    static func bind(_ settings: MilterServerSettings, group: EventLoopGroup, logger: Logger) async throws -> MilterServer {
        let idle = TimeAmount.milliseconds(Int64(settings.timeout * 1000))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let initChild: @Sendable (Channel) -> EventLoopFuture<Child> = { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idle))
                try ch.pipeline.syncOperations.addHandler(CloseWhenIdle())
                return try Child(wrappingChannelSynchronously: ch)
            }
        }
        switch settings.listen {
        case .inet(let host, let port):
            let s = try await bootstrap.bind(host: host, port: port, childChannelInitializer: initChild)
            let bound = s.channel.localAddress
            let shown = MilterSocket.inet(host: bound?.ipAddress ?? host, port: bound?.port ?? port).description
            return MilterServer(server: s, address: shown, logger: logger)
        case .unix(let path):
            let s = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initChild)
            // Only the owner and its group (add the MTA's user to it): anyone else could fill the audit log.
            chmod(path, settings.socketMode)
            return MilterServer(server: s, address: "unix:\(path)", logger: logger)
        }
    }

    /// Serves until `stop()`; `connection` makes the handler of one MTA
    /// connection. Each runs on its connection's event loop (as SMTP
    /// sessions do): no thread hop between a packet and its answer.
    func serve(executors: LoopExecutors, _ connection: @escaping @Sendable () -> MilterConnection) async {
        do {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await child in inbound {
                        group.addTask(executorPreference: executors[child.channel.eventLoop]) { await self.run(child, connection()) }
                    }
                }
            }
        } catch {
            logger.warning("milter listener \(address): \(error)")
        }
    }

    /// Stops accepting and closes every MTA connection (their open messages are refused by the MTA's own default action).
    func stop() {
        server.channel.close(promise: nil)
        for ch in children.withLock({ Array($0.values) }) { ch.close(promise: nil) }
    }

    private func run(_ child: Child, _ connection: MilterConnection) async {
        let id = ObjectIdentifier(child.channel)
        children.withLock { $0[id] = child.channel }
        defer { children.withLock { _ = $0.removeValue(forKey: id) } }
        let peer = child.channel.remoteAddress.map { "\($0)" } ?? "local"
        do {
            try await child.executeThenClose { inbound, outbound in
                var decoder = MilterFrameDecoder()
                var out = ByteBuffer()
                reading: for try await buffer in inbound {
                    decoder.feed(buffer.readableBytesView)
                    while let (code, data) = try decoder.next() {
                        let command = try MilterCommand.parse(code: code, data: data)
                        for r in try await connection.handle(command) { out.writeBytes(r.encoded()) }
                        if connection.closed { break }
                    }
                    if out.readableBytes > 0 {
                        try await outbound.write(out)
                        out.clear()
                    }
                    if connection.closed { break reading }
                }
            }
        } catch let e as MilterProtocolError {
            logger.warning("milter connection from \(peer) ended: \(e)")
        } catch {
            logger.debug("milter connection from \(peer): \(error)")
        }
        await connection.close()
    }
}

/// Closes an MTA connection that sent nothing for `[milter] timeout`.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
