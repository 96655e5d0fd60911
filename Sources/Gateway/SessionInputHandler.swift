import NIOCore
import NIOSSL
import NIOTLS

/// What a session reads: bytes from the client, or a notice from the
/// pipeline. Notices travel in the same stream as bytes so their order is
/// exact; that is what makes STARTTLS safe (CVE-2011-0411): every byte before
/// `.tlsStarted` was plaintext and is discarded.
enum SessionInput: Sendable {
    case bytes(ByteBuffer)
    case tlsStarted
    case tlsFailed(String)
    case timeout
    case shutdown
}

/// Sits between the socket (or TLS) and the session: wraps bytes as
/// `SessionInput`, enforces the RFC 5321 §4.5.3.2 read timeouts the session
/// sets, starts TLS in the same event-loop turn as the 220 reply, and relays
/// the shutdown notice. It is touched only on its event loop.
final class SessionInputHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = SessionInput
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct ShutdownEvent: Sendable {}

    private var context: ChannelHandlerContext?
    private var timeout: TimeAmount
    private var lastRead = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var timedOut = false
    private var awaitingHandshake = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        context.fireChannelRead(wrapInboundOut(.bytes(unwrapInboundIn(data))))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            emit(.shutdown)
            return
        }
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls, awaitingHandshake {
            awaitingHandshake = false
            emit(.tlsStarted)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if awaitingHandshake {
            awaitingHandshake = false
            emit(.tlsFailed(String(describing: error)))
            context.close(promise: nil)
            return
        }
        context.close(promise: nil)
    }

    private func emit(_ input: SessionInput) {
        guard let context else { return }
        context.fireChannelRead(wrapInboundOut(input))
        context.fireChannelReadComplete()
    }

    /// Sets the idle limit for the next read (it differs between commands and DATA).
    func setTimeout(_ t: TimeAmount) {
        timeout = t
        lastRead = .now()
        if let context { arm(context) }
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let loop = context.eventLoop
        timer = loop.scheduleTask(deadline: lastRead + timeout) { [weak self] in
            guard let self, let ctx = self.context else { return }
            if NIODeadline.now() >= self.lastRead + self.timeout {
                guard !self.timedOut else { return }
                self.timedOut = true
                self.emit(.timeout)
                // If the session itself is stuck, the connection still ends.
                ctx.eventLoop.scheduleTask(in: .seconds(10)) { [weak self] in self?.context?.close(promise: nil) }
            } else {
                self.arm(ctx)
            }
        }
    }

    /// Writes the 220 and inserts the TLS handler in one event-loop turn, so no
    /// byte of the reply is encrypted and no byte after it is read as plaintext.
    func startTLS(reply: ByteBuffer, sslContext: NIOSSLContext) throws {
        guard let context else { throw ChannelError.ioOnClosedChannel }
        context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
        awaitingHandshake = true
        try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext), position: .first)
    }
}
