import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import SMTPProtocol

/// Collects server replies and hands them, in order, to the oldest waiting
/// exchange, so commands can be pipelined (RFC 2920). Lives on the event
/// loop only. An exchange waits on a continuation, not a promise: a
/// promise and its future per reply (and one more to gather a pipelined
/// group) were a twentieth of a relayed message's CPU in NIO's generic
/// metadata lookups alone.
final class SMTPClientHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    /// One exchange: `count` replies to collect, answering `what` (command
    /// lines, of which a timeout's message names the verb, or a description).
    private struct Waiter {
        let continuation: UnsafeContinuation<[SMTPReply], Error>
        let count: Int
        var replies: [SMTPReply]
        let deadline: NIODeadline
        let what: [String]
    }

    private var buffer = ByteBuffer()
    private var parser = ReplyParser()
    private var waiting: [Waiter] = []
    /// One timer for all waiting replies, due at the earliest deadline; it
    /// is left to fire rather than cancelled when replies come in time.
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var early: [SMTPReply] = []
    private var failure: RelayError?
    private var context: ChannelHandlerContext?
    /// Replies longer than this are a protocol error, not a memory sink.
    private let maxLine = 4096

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Registers interest in the next `count` replies (on the loop); they
    /// resume `continuation`, or it fails after `timeout`.
    func expect(_ count: Int, timeout: TimeAmount, what: [String], on loop: EventLoop,
                _ continuation: UnsafeContinuation<[SMTPReply], Error>) {
        if let failure {
            continuation.resume(throwing: failure)
            return
        }
        var w = Waiter(continuation: continuation, count: count, replies: [], deadline: .now() + timeout, what: what)
        w.replies.reserveCapacity(count)
        while waiting.isEmpty && !early.isEmpty && w.replies.count < count { w.replies.append(early.removeFirst()) }
        if w.replies.count == count {
            continuation.resume(returning: w.replies)
            return
        }
        waiting.append(w)
        armTimer(on: loop, for: w.deadline)
    }

    private func armTimer(on loop: EventLoop, for deadline: NIODeadline) {
        if timer != nil, let due = timerDeadline, due <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = loop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.timerDeadline = nil
            let now = NIODeadline.now()
            if let late = self.waiting.first(where: { $0.deadline <= now }) {
                let what = late.what[min(late.replies.count, late.what.count - 1)]
                let verb = what.prefix { $0 != " " }
                self.failAll(.timeout("waiting for the reply to \(verb.allSatisfy(\.isUppercase) ? verb : what[...])"))
                self.context?.close(promise: nil)
            } else if let next = self.waiting.map(\.deadline).min() {
                self.armTimer(on: loop, for: next)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let lf = buffer.readableBytesView.firstIndex(of: 10) {
            let len = lf - buffer.readableBytesView.startIndex
            var line = buffer.readString(length: len) ?? ""
            buffer.moveReaderIndex(forwardBy: 1)
            if line.hasSuffix("\r") { line.removeLast() }
            do {
                if let reply = try parser.feed(line) { deliver(reply) }
            } catch {
                failAll(.protocolError(error.description))
                context.close(promise: nil)
                return
            }
        }
        if buffer.readableBytes > maxLine {
            failAll(.protocolError("reply line too long"))
            context.close(promise: nil)
        }
        buffer.discardReadBytes()
    }

    private func deliver(_ reply: SMTPReply) {
        if waiting.isEmpty {
            early.append(reply)
            return
        }
        waiting[0].replies.append(reply)
        if waiting[0].replies.count == waiting[0].count {
            let w = waiting.removeFirst()
            w.continuation.resume(returning: w.replies)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.closed("(connection lost)"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is NIOSSLError || error is BoringSSLError {
            failAll(.tls(String(describing: error)))
        } else {
            failAll(.closed("(\(error))"))
        }
        context.close(promise: nil)
    }

    private func failAll(_ error: RelayError) {
        if failure == nil { failure = error }
        let w = waiting
        waiting.removeAll()
        timer?.cancel()
        timer = nil
        for entry in w { entry.continuation.resume(throwing: error) }
    }
}

/// Settings for talking to one downstream.
public struct DownstreamOptions: Sendable {
    public enum TLSMode: String, Sendable { case none, opportunistic, required }
    public var host: String
    public var port: Int
    public var heloName: String
    public var tls: TLSMode = .opportunistic
    /// Verify the downstream certificate (against the system or given CA).
    public var verifyCertificate = false
    public var caFile: String?
    public var connectTimeout: TimeAmount = .seconds(30)
    public var commandTimeout: TimeAmount = .seconds(300)
    /// RFC 5321 §4.5.3.2.6: up to 10 minutes for the final reply to DATA.
    public var dataTimeout: TimeAmount = .seconds(600)

    public init(host: String, port: Int, heloName: String) {
        self.host = host
        self.port = port
        self.heloName = heloName
    }

    public var label: String { Destination.hostPort(host, port) }
}

/// One SMTP client connection to the downstream, owned by one task at a time
/// (the pool hands it out and takes it back), hence `@unchecked Sendable`.
public final class DownstreamConnection: @unchecked Sendable {
    public let options: DownstreamOptions
    let channel: Channel
    private let handler: SMTPClientHandler
    public private(set) var capabilities: Set<String> = []
    public private(set) var maxSize: Int?
    public private(set) var tlsActive = false
    /// True while a MAIL transaction is open on this connection.
    public private(set) var inTransaction = false
    /// Set when the connection must not be reused (an error happened).
    public private(set) var broken = false
    public let createdAt = NIODeadline.now()
    public internal(set) var lastUsed = NIODeadline.now()
    public private(set) var transactions = 0

    init(options: DownstreamOptions, channel: Channel, handler: SMTPClientHandler) {
        self.options = options
        self.channel = channel
        self.handler = handler
    }

    public var isUsable: Bool { !broken && channel.isActive && !inTransaction }

    /// Connects, reads the greeting, says EHLO, and starts TLS as configured.
    /// `group` may be a single event loop: the connection then lives on it.
    public static func open(_ options: DownstreamOptions, group: EventLoopGroup, tlsContext: NIOSSLContext?) async throws -> DownstreamConnection {
        let handler = SMTPClientHandler()
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(options.connectTimeout)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(host: options.host, port: options.port).get()
        } catch {
            throw RelayError.connect("\(options.label): \(error)")
        }
        let conn = DownstreamConnection(options: options, channel: channel, handler: handler)
        do {
            let greeting = try await conn.readReply(timeout: options.commandTimeout, what: "greeting")
            guard greeting.code == 220 else {
                throw RelayError.protocolError("greeting: \(greeting)")
            }
            try await conn.ehlo()
            if options.tls != .none {
                if conn.capabilities.contains("STARTTLS"), let tlsContext {
                    try await conn.startTLS(tlsContext)
                } else if options.tls == .required {
                    throw RelayError.tls("\(options.label) does not offer STARTTLS and TLS is required")
                }
            }
        } catch {
            conn.abandon()
            throw error
        }
        return conn
    }

    func readReply(timeout: TimeAmount, what: String) async throws -> SMTPReply {
        try await exchange(nil, expecting: 1, timeout: timeout, what: [what])[0]
    }

    /// Writes `out` (if any) and waits for `count` replies. On the
    /// connection's loop (sessions and deliveries run there, see
    /// GatewayServer) this registers and writes directly; elsewhere it
    /// hops to the loop first.
    private func exchange(_ out: ByteBuffer?, expecting count: Int, timeout: TimeAmount, what: [String]) async throws -> [SMTPReply] {
        let h = handler
        let ch = channel
        let loop = ch.eventLoop
        return try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<[SMTPReply], Error>) in
            let start: @Sendable () -> Void = {
                h.expect(count, timeout: timeout, what: what, on: loop, c)
                if let out { ch.writeAndFlush(out, promise: nil) }
            }
            if loop.inEventLoop { start() } else { loop.execute(start) }
        }
    }

    /// Sends command lines in one write and waits for a reply to each
    /// (RFC 2920 pipelining; the caller checks the server offers it).
    func commands(_ lines: [String], timeout: TimeAmount? = nil) async throws -> [SMTPReply] {
        var b = channel.allocator.buffer(capacity: lines.reduce(0) { $0 + $1.utf8.count + 2 })
        for line in lines {
            b.writeString(line)
            b.writeStaticString("\r\n")
        }
        do {
            let replies = try await exchange(b, expecting: lines.count, timeout: timeout ?? options.commandTimeout, what: lines)
            if replies.contains(where: { $0.code == 421 }) { broken = true }  // RFC 5321 §3.8: the server is closing
            return replies
        } catch {
            broken = true
            throw error
        }
    }

    /// Sends a command line and waits for its reply.
    public func command(_ line: String, timeout: TimeAmount? = nil) async throws -> SMTPReply {
        try await commands([line], timeout: timeout)[0]
    }

    private func ehlo() async throws {
        var reply = try await command("EHLO \(options.heloName)")
        if reply.code != 250 {
            reply = try await command("HELO \(options.heloName)")
            guard reply.code == 250 else { throw RelayError.protocolError("HELO refused: \(reply)") }
            capabilities = []
            return
        }
        var caps = Set<String>()
        for line in reply.lines.dropFirst() {
            let parts = line.split(separator: " ")
            guard let kw = parts.first?.uppercased() else { continue }
            caps.insert(kw)
            if kw == "SIZE", parts.count > 1, let n = Int(parts[1]), n > 0 { maxSize = n }
        }
        capabilities = caps
    }

    private func startTLS(_ context: NIOSSLContext) async throws {
        let reply = try await command("STARTTLS")
        guard reply.code == 220 else {
            if options.tls == .required { throw RelayError.tls("STARTTLS refused: \(reply)") }
            return
        }
        let ch = channel
        let host = options.host
        let verify = options.verifyCertificate
        try await ch.eventLoop.submit {
            let ssl = try NIOSSLClientHandler(context: context, serverHostname: verify && !host.first!.isNumber && !host.contains(":") ? host : nil)
            try ch.pipeline.syncOperations.addHandler(ssl, position: .first)
        }.get()
        tlsActive = true
        // RFC 3207 §4.2: forget what the server said before TLS and ask again.
        try await ehlo()
    }

    /// MAIL FROM with the parameters the downstream understands.
    public func mail(_ from: ReversePath, _ params: MailParameters, size: Int?) async throws -> SMTPReply {
        let reply = try await command(mailLine(from, params, size: size))
        if reply.code == 250 { inTransaction = true }
        return reply
    }

    /// MAIL and the first RCPT: one round trip instead of two when the
    /// downstream offers PIPELINING. The RCPT reply is nil when MAIL was
    /// refused (a pipelined RCPT's reply is then discarded).
    public func mail(_ from: ReversePath, _ params: MailParameters, size: Int?,
                     rcpt to: Mailbox, _ rcptParams: RcptParameters) async throws -> (mail: SMTPReply, rcpt: SMTPReply?) {
        guard capabilities.contains("PIPELINING") else {
            let m = try await mail(from, params, size: size)
            guard m.code / 100 == 2 else { return (m, nil) }
            return (m, try await rcpt(to, rcptParams))
        }
        let r = try await commands([mailLine(from, params, size: size), rcptLine(to, rcptParams)])
        guard r[0].code / 100 == 2 else { return (r[0], nil) }
        inTransaction = true
        return (r[0], r[1])
    }

    private func mailLine(_ from: ReversePath, _ params: MailParameters, size: Int?) -> String {
        var line = "MAIL FROM:<\(from)>"
        if capabilities.contains("SIZE"), let size { line += " SIZE=\(size)" }
        if capabilities.contains("8BITMIME"), let body = params.body, body != "BINARYMIME" { line += " BODY=\(body)" }
        if capabilities.contains("SMTPUTF8"), params.smtpUTF8 { line += " SMTPUTF8" }
        if capabilities.contains("DSN") {
            if let r = params.ret { line += " RET=\(r)" }
            if let e = params.envid { line += " ENVID=\(e)" }
        }
        return line
    }

    public func rcpt(_ to: Mailbox, _ params: RcptParameters) async throws -> SMTPReply {
        try await command(rcptLine(to, params))
    }

    private func rcptLine(_ to: Mailbox, _ params: RcptParameters) -> String {
        var line = "RCPT TO:<\(to)>"
        if capabilities.contains("DSN") {
            if let n = params.notify { line += " NOTIFY=\(n)" }
            if let o = params.orcpt { line += " ORCPT=\(o)" }
        }
        return line
    }

    /// DATA, the dot-stuffed text, and the final reply. `header` is written
    /// before the body (the Received line mxgate adds).
    /// `bodyOffset` skips that many bytes of `body` (its header section, when
    /// `header` carries a rewritten one).
    public func data(header: ByteBuffer, body: MessageBody, bodyOffset: Int = 0) async throws -> SMTPReply {
        let go = try await command("DATA")
        guard go.code == 354 else {
            _ = try? await reset()
            return go
        }
        return try await text(header: header, body: body, bodyOffset: bodyOffset)
    }

    /// The message text after a 354, dot-stuffed, and the final reply.
    /// Pieces are written unflushed until 64 KB are pending, so a small
    /// message, the trace header and the final dot go out in one writev(2)
    /// (one TCP segment for the downstream to read, not two); a slow
    /// downstream makes this wait, so memory stays at a chunk or two.
    func text(header: ByteBuffer, body: MessageBody, bodyOffset: Int = 0) async throws -> SMTPReply {
        var stuffer = DotStuffer()
        let ch = channel
        // Dot-stuffing rarely adds more than a few bytes: size the first
        // buffer to the message, so a small one does not take 64 KB.
        let chunk = 64 * 1024 + 1024
        var out = ch.allocator.buffer(capacity: min(chunk, header.readableBytes + max(0, body.count - bodyOffset) + 256))
        var unflushed = 0
        func send(_ b: ByteBuffer) async throws {
            unflushed += b.readableBytes
            if unflushed < 64 * 1024 && ch.isWritable {
                ch.write(b, promise: nil)
                return
            }
            unflushed = 0
            if ch.isWritable {
                ch.writeAndFlush(b, promise: nil)
            } else {
                try await ch.writeAndFlush(b).get()
            }
        }
        stuffer.stuff(header, into: &out)
        do {
            try await body.forEachChunk(from: bodyOffset) { piece in
                if piece.readableBytes >= 4096 && stuffer.passThrough(piece) {
                    // No line starts with a dot: send the stored bytes as they are, no copy.
                    if out.readableBytes > 0 {
                        try await send(out)
                        out = ch.allocator.buffer(capacity: 1024)
                    }
                    try await send(piece)
                    return
                }
                stuffer.stuff(piece, into: &out)
                if out.readableBytes >= 32 * 1024 {
                    let b = out
                    out = ch.allocator.buffer(capacity: chunk)
                    try await send(b)
                }
            }
            stuffer.finish(into: &out)
            let reply = try await exchange(out, expecting: 1, timeout: options.dataTimeout, what: ["end of data"])[0]
            inTransaction = false
            transactions += 1
            return reply
        } catch {
            broken = true
            throw error
        }
    }

    /// What the downstream said to a whole envelope.
    public struct EnvelopeReplies: Sendable {
        public var mail: SMTPReply
        /// One per recipient; empty when MAIL was refused.
        public var rcpts: [SMTPReply]
        /// The reply to DATA; nil when it was not sent (MAIL refused, or
        /// no recipient accepted without pipelining).
        public var data: SMTPReply?
        /// DATA got its 354 for a transaction with a recipient: `text` follows.
        public var goAhead: Bool
    }

    /// MAIL, every RCPT and DATA for a relay of a stored message (the queue):
    /// one write and one round trip when the downstream offers PIPELINING
    /// (RFC 2920 §3.1: DATA ends the group), else one command at a time.
    /// When no recipient was accepted the transaction is closed again, and
    /// a 354 from a server that gave one anyway is answered with an empty text.
    public func envelope(_ from: ReversePath, _ params: MailParameters, size: Int?,
                         to recipients: [(Mailbox, RcptParameters)]) async throws -> EnvelopeReplies {
        guard capabilities.contains("PIPELINING") else {
            let m = try await mail(from, params, size: size)
            guard m.code / 100 == 2 else { return EnvelopeReplies(mail: m, rcpts: [], data: nil, goAhead: false) }
            var rcpts: [SMTPReply] = []
            for (box, p) in recipients { rcpts.append(try await rcpt(box, p)) }
            guard rcpts.contains(where: { $0.code / 100 == 2 }) else {
                _ = try? await reset()
                return EnvelopeReplies(mail: m, rcpts: rcpts, data: nil, goAhead: false)
            }
            let go = try await command("DATA")
            if go.code != 354 { _ = try? await reset() }
            return EnvelopeReplies(mail: m, rcpts: rcpts, data: go, goAhead: go.code == 354)
        }
        var lines = [mailLine(from, params, size: size)]
        for (box, p) in recipients { lines.append(rcptLine(box, p)) }
        lines.append("DATA")
        let r = try await commands(lines)
        let mail = r[0], rcpts = Array(r[1...recipients.count]), go = r[recipients.count + 1]
        inTransaction = mail.code / 100 == 2
        let anyAccepted = rcpts.contains { $0.code / 100 == 2 }
        if go.code == 354 && !(inTransaction && anyAccepted) {
            // A server that said 354 to a pipelined DATA with no valid recipient: end it with an empty text.
            _ = try await text(header: ByteBuffer(), body: MessageBody(memoryThreshold: 1024, tempDirectory: "/tmp"))
        } else if go.code != 354 && inTransaction {
            _ = try? await reset()
        }
        return EnvelopeReplies(mail: mail, rcpts: mail.code / 100 == 2 ? rcpts : [], data: mail.code / 100 == 2 && anyAccepted ? go : nil,
                               goAhead: go.code == 354 && inTransaction && anyAccepted)
    }

    public func reset() async throws -> SMTPReply {
        let r = try await command("RSET")
        inTransaction = false
        if r.code != 250 { broken = true }
        return r
    }

    /// Ends a connection politely; errors do not matter any more.
    public func quit() async {
        if channel.isActive && !broken {
            _ = try? await command("QUIT", timeout: .seconds(5))
        }
        abandon()
    }

    public func abandon() {
        broken = true
        channel.close(promise: nil)
    }
}
