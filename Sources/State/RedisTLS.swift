import CHiredis
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// TLS to Redis for a hiredis without it (Debian 12 ships 0.14; TLS came
/// with 1.0): hiredis gets one end of a socket pair, and an event loop
/// carries the bytes between the other end and a TLS connection to the
/// server (swift-nio-ssl, verifying the server's certificate for its
/// name or address). Closing hiredis's end closes the TLS connection.
public struct RedisTLS: Sendable {
    /// PEM file of the CAs that may sign the server's certificate (nil: the system's).
    public var caFile: String?
    /// A client certificate and key, for a server with `tls-auth-clients yes`.
    public var certificate: String?
    public var key: String?
    /// Checks the server's certificate (name or address, and chain); off only for tests and labs.
    public var verify = true

    public init(caFile: String? = nil, certificate: String? = nil, key: String? = nil, verify: Bool = true) {
        self.caFile = caFile
        self.certificate = certificate
        self.key = key
        self.verify = verify
    }

    func context() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        if let caFile { config.trustRoots = .file(caFile) }
        if !verify { config.certificateVerification = .none }
        if let certificate, let key {
            config.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            config.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        return try NIOSSLContext(configuration: config)
    }

    /// Connects, and gives hiredis its end of the pair (blocking: called off the event loops).
    func connect(host: String, port: Int, timeout: Double, context: NIOSSLContext) throws -> UnsafeMutablePointer<redisContext> {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw StateError(location: "rediss://\(host):\(port)", message: "socketpair: \(String(cString: strerror(errno)))")
        }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        // SNI and the name check take a host name; an address is checked against the certificate's IP entries.
        var v4 = in_addr()
        let serverName = inet_pton(AF_INET, host, &v4) != 1 && !host.contains(":") ? host : nil
        let location = "rediss://\(host):\(port)"
        let waiter = Handshake(loop.makePromise())
        let tls: Channel
        let plain: Channel
        do {
            tls = try ClientBootstrap(group: loop)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                        try ch.pipeline.syncOperations.addHandler(waiter)
                    }
                }
                .connect(host: host, port: port).wait()
            // A certificate refused shows here, named, not as a lost connection later.
            let deadline = loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
                waiter.finish(.failure(StateError(location: location, message: "TLS handshake timed out")))
            }
            defer { deadline.cancel() }
            do { try waiter.done.futureResult.wait() } catch {
                tls.close(promise: nil)
                throw error
            }
            plain = try ClientBootstrap(group: loop).withConnectedSocket(pair[1]).wait()
            try tls.pipeline.addHandler(Relay(peer: plain)).wait()
            try plain.pipeline.addHandler(Relay(peer: tls)).wait()
        } catch {
            close(pair[0])
            close(pair[1])
            throw (error as? StateError) ?? StateError(location: location, message: "cannot connect: \(error)")
        }
        guard let c = redisConnectFd(pair[0]) else {
            close(pair[0])
            plain.close(promise: nil)
            throw StateError(location: location, message: "cannot allocate a connection")
        }
        return c
    }

    /// Waits for the TLS handshake's end (or its failure).
    final class Handshake: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        // Touched only on the channel's event loop.
        let done: EventLoopPromise<Void>
        private var finished = false
        init(_ done: EventLoopPromise<Void>) { self.done = done }

        /// Completes once: the handshake, an error, the close or the deadline, whichever comes first.
        func finish(_ result: Result<Void, Error>) {
            guard !finished else { return }
            finished = true
            done.completeWith(result)
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let e = event as? TLSUserEvent, case .handshakeCompleted = e { finish(.success(())) }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            finish(.failure(error))
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            finish(.failure(ChannelError.ioOnClosedChannel))
            context.fireChannelInactive()
        }
    }

    /// Bytes one way: what one channel reads, the other writes; either closing closes both.
    final class Relay: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        // Both channels are on the same event loop (the pair's was made on the TLS one's).
        let peer: Channel
        init(peer: Channel) { self.peer = peer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            context.close(promise: nil)
        }
    }
}
