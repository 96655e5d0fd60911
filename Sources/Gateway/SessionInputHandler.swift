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

/// Sits between the socket (or TLS) and the session: hands bytes and
/// notices to the session's task as `SessionInput` (`next()`), enforces the
/// RFC 5321 §4.5.3.2 read timeouts the session sets, starts TLS in the same
/// event-loop turn as the 220 reply, and relays the shutdown notice. Its
/// state is touched only on its event loop.
///
/// It is the end of the pipeline, in place of NIOAsyncChannel: one waiting
/// continuation and a small queue do what a session needs, at a fraction
/// of the per-read cost and per-connection memory. Back-pressure: while
/// more than `readAhead` bytes the session has not taken are queued,
/// reads from the socket wait. (Holding them for any queued byte took the
/// socket out of epoll and put it back, two epoll_ctl calls, whenever a
/// command arrived while the session was still busy with the last.)
final class SessionInputHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct ShutdownEvent: Sendable {}
    /// The gateway is near max_connections: idle sessions get the short timeout.
    struct StressEvent: Sendable { let on: Bool }

    /// Commands: a whole line must arrive within the timeout of the last
    /// one (Postfix's smtpd_per_record_deadline), so a client trickling a
    /// byte at a time cannot hold the connection (slowloris). Text: the
    /// timeout is per read, and the whole message has a deadline.
    enum Mode { case command, text }

    private var context: ChannelHandlerContext?
    private var timeout: TimeAmount
    private var mode = Mode.command
    /// Last read (text) or last complete line (commands).
    private var lastProgress = NIODeadline.now()
    private var textDeadline: NIODeadline?
    private let stressTimeout: TimeAmount
    private var stressed = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var timedOut = false
    private var awaitingHandshake = false
    /// Bytes came before the greeting was sent (an early talker, as postscreen calls it).
    private(set) var talkedEarly = false
    private var greeted = false

    // The hand-over to the session's task.
    private var queue = CircularBuffer<SessionInput>(initialCapacity: 2)
    private var queuedBytes = 0
    private static let readAhead = 64 * 1024
    private var waiter: UnsafeContinuation<SessionInput?, Never>?
    private var ended = false
    /// A read the channel asked for while input was still queued.
    private var readHeld = false
    private let loop: EventLoop

    /// The shortest timeout the session may switch to (commands, message
    /// text): the timer never runs longer than this, so a switch to a
    /// shorter one does not move it.
    private let shortest: TimeAmount

    init(timeout: TimeAmount, stressTimeout: TimeAmount = .seconds(10), shortest: TimeAmount? = nil, loop: EventLoop) {
        self.timeout = timeout
        self.stressTimeout = stressTimeout
        self.shortest = min(shortest ?? timeout, timeout)
        self.loop = loop
    }

    /// The next input for the session; nil once the connection is gone.
    /// Called from the session's task only, one call at a time.
    func next() async -> SessionInput? {
        if loop.inEventLoop {
            // Tasks run on the event loops (GatewayServer): no hop needed.
            if let first = take() { return first }
            if ended { return nil }
        }
        return await withUnsafeContinuation { c in
            if loop.inEventLoop { self.wait(c) } else { loop.execute { self.wait(c) } }
        }
    }

    private func take() -> SessionInput? {
        guard let first = queue.popFirst() else { return nil }
        if case .bytes(let b) = first { queuedBytes -= b.readableBytes }
        if readHeld && queuedBytes < Self.readAhead, let context {
            readHeld = false
            context.read()
        }
        return first
    }

    private func wait(_ c: UnsafeContinuation<SessionInput?, Never>) {
        if let first = take() {
            c.resume(returning: first)
        } else if ended {
            c.resume(returning: nil)
        } else {
            waiter = c
            if readHeld, let context {
                readHeld = false
                context.read()
            }
        }
    }

    private func deliver(_ input: SessionInput) {
        if let w = waiter {
            waiter = nil
            w.resume(returning: input)
        } else {
            if case .bytes(let b) = input { queuedBytes += b.readableBytes }
            queue.append(input)
        }
    }

    private func end() {
        ended = true
        if let w = waiter {
            waiter = nil
            w.resume(returning: nil)
        }
    }

    func read(context: ChannelHandlerContext) {
        if queuedBytes < Self.readAhead { context.read() } else { readHeld = true }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive {
            arm(context)
            startSession()
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
        startSession()
    }

    /// Starts the session once the connection is active (set by the accept).
    var onActive: (() -> Void)?

    private func startSession() {
        let start = onActive
        onActive = nil
        start?()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        end()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
        end()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if !greeted { talkedEarly = true }
        if mode == .text || bytes.readableBytesView.contains(10) { lastProgress = .now() }
        deliver(.bytes(bytes))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            emit(.shutdown)
            return
        }
        if let stress = event as? StressEvent {
            stressed = stress.on
            arm(context)
            return
        }
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls, awaitingHandshake {
            awaitingHandshake = false
            emit(.tlsStarted)
        }
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
        guard context != nil else { return }
        deliver(input)
    }

    /// The greeting is on its way; bytes from now on are not early.
    func greetingSent() { greeted = true }

    /// Switches between commands and message text (the limits differ);
    /// `deadline` bounds the whole message text.
    func setTimeout(_ t: TimeAmount, mode: Mode = .command, deadline: TimeAmount? = nil) {
        timeout = t
        self.mode = mode
        lastProgress = .now()
        textDeadline = deadline.map { .now() + $0 }
        if let context { arm(context) }
    }

    /// When the session runs out of time: idle too long, or past the text deadline.
    private var expiry: NIODeadline {
        let limit = stressed && mode == .command ? min(timeout, stressTimeout) : timeout
        let idle = lastProgress + limit
        guard let d = textDeadline, mode == .text else { return idle }
        return min(idle, d)
    }

    /// Makes sure the timer fires no later than the expiry. A timer already
    /// due earlier is kept: when it fires it looks again and re-arms, so
    /// moving the expiry later (every command, every message) costs nothing.
    /// It is set no further than `shortest` ahead, so the switch to message
    /// text, with its shorter timeout, keeps it too: one timer per
    /// connection instead of two per message.
    private func arm(_ context: ChannelHandlerContext) {
        if timer != nil, let current = timerDeadline, current <= expiry { return }
        let due = min(expiry, .now() + shortest)
        timer?.cancel()
        let loop = context.eventLoop
        timerDeadline = due
        timer = loop.scheduleTask(deadline: due) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerDeadline = nil
            guard let ctx = self.context else { return }
            if NIODeadline.now() >= self.expiry {
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
