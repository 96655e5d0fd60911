import Audit
import Checks
import Foundation
import Logging
import MailMessage
import NIOCore
import NIOSSL
import Policy
import Relay
import SMTPProtocol

/// One client connection, from greeting to close: reads bytes, drives the
/// `SessionStateMachine`, asks the policy at each stage, mirrors the envelope
/// to the downstream in step, and writes an audit record for every decision.
/// Business logic lives here in async code; framing lives in the state
/// machine and decoders; sockets live in NIO handlers.
final class Session {
    private let channel: Channel
    private let inputHandler: SessionInputHandler
    private let runtime: Runtime
    private let audit: AuditSink
    private let logger: Logger
    private var machine: SessionStateMachine
    private var framer: CommandLineFramer
    private var driver: PolicyDriver
    private var facts: SessionFacts { driver.facts }
    private var pending = ByteBuffer()
    private var out = ByteBuffer()
    private var shutdownRequested = false
    private var closing = false

    /// The open transaction's way out (proxy, queue, Maildir), from MAIL on.
    private var transaction: (any DeliveryTransaction)?
    private let deliveryContext: DeliveryContext
    private var body: MessageBody?
    private var chunkDecoder: MessageTextDecoder?
    /// Seconds of DNS list lookups left for this message ([dns] budget);
    /// the client's lookups at connect have a budget of their own.
    private var dnsBudgetLeft: Double = .infinity
    private let limiter: ClientLimiter
    private let metrics: GatewayMetrics

    init(channel: Channel, input: SessionInputHandler, runtime: Runtime, audit: AuditSink, logger: Logger, sessionID: String,
         limiter: ClientLimiter, metrics: GatewayMetrics) {
        self.channel = channel
        self.metrics = metrics
        self.limiter = limiter
        self.inputHandler = input
        self.runtime = runtime
        self.audit = audit
        var log = logger
        log[metadataKey: "session"] = "\(sessionID)"
        self.logger = log
        deliveryContext = DeliveryContext(loop: channel.eventLoop, logger: log, metrics: metrics)
        let limits = runtime.limits
        machine = SessionStateMachine(configuration: .init(hostname: runtime.config.hostname, limits: limits,
                                                           tlsAvailable: runtime.sslContext != nil))
        framer = CommandLineFramer(maxLength: limits.commandLineLength)
        let remote = channel.remoteAddress
        let facts = SessionFacts(sessionID: sessionID, clientIP: remote?.ipAddress ?? "unknown", clientPort: remote?.port ?? 0)
        let log2 = log
        driver = PolicyDriver(policy: runtime.policy, gate: runtime.gate, limiter: limiter, facts: facts) { stage, rule in
            log2.info("\(stage.rawValue): rule \(rule.name) \(rule.action) (\(rule.explanation))")
        }
    }

    private var config: GatewayConfig { runtime.config }

    // MARK: the loop

    func run() async {
        metrics.connections.increment()
        metrics.openConnections.increment()
        defer {
            driver.close()
            metrics.openConnections.decrement()
        }
        guard await greet() else { return }
        while !closing {
            // Answer every complete command already buffered (pipelining), then flush.
            while !closing {
                switch framer.next(&pending) {
                case .line(let line):
                    await handle(line: line)
                    continue
                case .tooLong:
                    apply(machine.error(.lineTooLong))
                    continue
                case .needMore:
                    break
                }
                break
            }
            if closing { break }
            await flush()
            guard await readMore() else { break }
        }
        await flush(wait: true)
        await abortTransaction()
    }

    /// The connect stage: client lookups, the connect rules, greet wait,
    /// then the 220. False when the client was turned away.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func greet() async -> Bool {
        dnsBudgetLeft = config.dnsBudget
        let found = await inspect(.connect)
        if case .refuse(let reply, let rules, _, _) = driver.connect(inspected: found) {
            record(.connection, verdict: verdict(for: reply), reply: reply, rules: rules)
            send(reply)
            await flush(wait: true)
            return false
        }
        if await refusedEarlyTalker() { return false }
        if runtime.limits.greetWait > 0 {
            let h = inputHandler
            channel.eventLoop.execute { h.greetingSent() }
        }
        send(SMTPReply(220, nil, "\(config.hostname) \(config.greeting)"))
        logger.debug("connect from \(facts.clientIP):\(facts.clientPort)")
        return true
    }

    /// Reads the next input. Returns false when the session must end.
    /// This is where an idle session waits, so its frame is kept small:
    /// whatever is not the wait itself happens in `received`.
    @inline(never)
    private func readMore() async -> Bool {
        while true {
            guard let next = await inputHandler.next() else { return false }
            if let more = received(next) { return more }
        }
    }

    /// Takes one input: true or false ends `readMore` with that answer, nil reads on.
    @inline(never)
    private func received(_ next: SessionInput) -> Bool? {
        switch next {
        case .bytes(var b):
            if pending.readableBytes == 0 { pending = b } else { pending.writeBuffer(&b) }
            return true
        case .timeout:
            send(.timeout)
            record(.connection, verdict: .tempfailed, reply: .timeout, reason: "client timed out in \(machine.phase)")
            closing = true
            return false
        case .shutdown:
            shutdownRequested = true
            if machine.envelope == nil && machine.phase != .data && machine.phase != .bdat {
                send(.shuttingDown)
                closing = true
                return false
            }
            return nil
        case .tlsStarted, .tlsFailed:
            return nil  // only expected inside startTLS()
        }
    }

    private func send(_ reply: SMTPReply) {
        // Room for an EHLO reply at once: an empty ByteBuffer grows by
        // doubling, a reallocation every few bytes of a reply.
        if out.capacity == 0 { out = channel.allocator.buffer(capacity: 512) }
        reply.encode(into: &out)
    }

    /// RFC 5321 §4.5.3.2: the DATA block timeout differs from the command timeout.
    private func setReadTimeout(_ seconds: Double) {
        let h = inputHandler
        let t = TimeAmount.milliseconds(Int64(seconds * 1000))
        if channel.eventLoop.inEventLoop { h.setTimeout(t) } else { channel.eventLoop.execute { h.setTimeout(t) } }
    }

    /// Message text: per-read timeout, and `data_deadline` for the whole of it.
    private func setTextTimeout() {
        let h = inputHandler
        let idle = TimeAmount.milliseconds(Int64(runtime.limits.dataBlockTimeout * 1000))
        let deadline = TimeAmount.milliseconds(Int64(runtime.limits.dataDeadline * 1000))
        if channel.eventLoop.inEventLoop {
            h.setTimeout(idle, mode: .text, deadline: deadline)
        } else {
            channel.eventLoop.execute { h.setTimeout(idle, mode: .text, deadline: deadline) }
        }
    }

    /// Postscreen's greet wait: hold the 220; a client that talks first is
    /// a bot that does not wait for the server (pregreet). True when refused.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func refusedEarlyTalker() async -> Bool {
        let wait = runtime.limits.greetWait
        guard wait > 0, !limiter.passedGreeting(facts.clientIP) else { return false }
        try? await Task.sleep(for: .milliseconds(Int(wait * 1000)))
        let h = inputHandler
        let early = (try? await channel.eventLoop.submit { h.talkedEarly }.get()) ?? false
        guard early else {
            limiter.greetingPassed(facts.clientIP)
            return false
        }
        let reply = SMTPReply(554, "5.5.1", "Protocol error: talking before the greeting")
        var r = AuditRecordBuilder(self).base(.connection, verdict: .rejected, reply: reply)
        r.rules = ["pregreet"]
        r.reason = "the client sent commands before the \(wait.formatted())s greeting"
        audit.record(r)
        send(reply)
        await flush(wait: true)
        return true
    }

    /// Sends the buffered replies. Waits for the write only when the
    /// socket is backed up (replies answer commands, so a client that
    /// sends without reading is held here rather than filling memory) or
    /// when the session is about to close or switch to TLS (`wait`).
    private func flush(wait: Bool = false) async {
        guard out.readableBytes > 0 else { return }
        let b = out
        out = ByteBuffer()  // grows on the next reply; an idle session holds no reply buffer
        if !wait && channel.isWritable {
            channel.writeAndFlush(b, promise: nil)
            return
        }
        do { try await channel.writeAndFlush(b).get() } catch { closing = true }
    }

    private func apply(_ action: SessionStateMachine.Action) {
        switch action {
        case .reply(let r): send(r)
        case .replyAndClose(let r): send(r); closing = true
        default: break
        }
    }

    // MARK: commands

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func handle(line: ByteBuffer) async {
        if shutdownRequested && machine.envelope == nil {
            send(.shuttingDown)
            closing = true
            return
        }
        let parsed = CommandParser.parse(line)
        let action = machine.receive(parsed)
        switch action {
        case .reply, .replyAndClose:
            apply(action)
        case .checkHelo(let name, let extended):
            let found = await inspect(.helo) { $0.facts.helo = name }
            if case .refuse(let reply, let rules, let closes, _) = driver.helo(name, inspected: found) {
                refuseCommand(reply, rules: rules, closes: closes)
                return
            }
            await abortTransaction()
            driver.endTransaction()
            send(machine.heloAccepted(name, extended: extended))
        case .checkMail(let path, let params):
            if config.auditFailClosed && !audit.healthy {
                // No record, no mail: an admin must be able to account for every message.
                refuseCommand(SMTPReply(451, "4.3.0", "Local error: audit log unavailable, try again later"), rules: [],
                              closes: false, from: path.description)
                return
            }
            dnsBudgetLeft = config.dnsBudget
            let found = await inspect(.mail) {
                $0.facts.mailFrom = path
                $0.facts.mailParameters = params
            }
            if case .refuse(let reply, let rules, let closes, _) = driver.mail(path, params, inspected: found) {
                refuseCommand(reply, rules: rules, closes: closes, from: path.description)
                return
            }
            transaction = runtime.delivery.begin(deliveryContext)
            machine.mailAccepted(path, params)
            send(SMTPReply(250, "2.1.0", "Ok"))
        case .checkRecipient(let box, let params):
            await recipient(box, params)
        case .startData:
            await data()
        case .receiveChunk(let size, let last):
            await chunk(size: size, last: last)
        case .discardChunk(let size, let reply):
            await discard(size)
            send(reply)
            if reply.code == 421 { closing = true }
        case .reset(let reply):
            await abortTransaction()
            driver.endTransaction()
            send(reply)
        case .startTLS:
            await startTLS()
        }
    }

    private func refuseCommand(_ reply: SMTPReply, rules: [String], closes: Bool, from: String? = nil) {
        var r = AuditRecordBuilder(self).base(.command, verdict: verdict(for: reply), reply: reply)
        r.rules = rules
        if let from { r.mailFrom = from }
        audit.record(r)
        if closes {
            send(reply)
            closing = true
        } else {
            apply(machine.error(reply))
        }
    }

    // MARK: RCPT

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func recipient(_ given: Mailbox, _ params: RcptParameters) async {
        var box = given
        if box.domain.isEmpty, let d = runtime.gate.primaryDomain { box.domain = d }  // <Postmaster>
        let found = await inspect(.rcpt) { $0.facts.recipient = box }
        if case .refuse(let reply, let rules, let closes, let reason) = driver.rcpt(box, original: given, inspected: found) {
            refuseRecipient(box, reply, rules: rules, reason: reason)
            if closes { closing = true }
            return
        }
        guard let transaction, let env = machine.envelope else { return accept(box, params) }
        switch await transaction.recipient(box, params, envelope: env) {
        case .accepted(let reply): accept(box, params, reply: reply)
        case .refused(let reply, let reason): refuseRecipient(box, reply, reason: reason, downstream: true)
        }
    }

    private func accept(_ box: Mailbox, _ params: RcptParameters, reply: SMTPReply = SMTPReply(250, "2.1.5", "Ok")) {
        machine.recipientAccepted(box, params)
        driver.recipientAccepted(box)
        send(reply)
    }

    private func refuseRecipient(_ box: Mailbox, _ reply: SMTPReply, rules: [String] = [], reason: String? = nil,
                                 downstream: Bool = false) {
        var r = AuditRecordBuilder(self).base(.recipient, verdict: verdict(for: reply), reply: reply)
        r.rcptTo = [box.description]
        r.rules = rules
        r.reason = reason
        r.relay = downstream ? runtime.delivery.label : nil
        audit.record(r)
        if reply.isPermanent, case .reply(let counted) = machine.error(reply) {
            send(counted)
        } else if reply.isPermanent {
            send(.tooManyErrors)
            closing = true
        } else {
            send(reply)
        }
    }

    // MARK: DATA and BDAT

    private func newBody() -> MessageBody {
        MessageBody(memoryThreshold: config.memoryThreshold, tempDirectory: config.tempDirectory)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func data() async {
        if let (reply, reason) = transaction?.textRefusal() {
            // Recipients were accepted but the downstream is gone: say so now, before the client sends the text.
            await abortTransaction()
            finishTransaction(reply, size: nil, messageID: nil, reason: reason)
            return
        }
        send(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>"))
        await flush()
        setTextTimeout()
        var decoder = MessageTextDecoder(mode: .dotTerminated, maxSize: runtime.limits.messageSize,
                                         maxLineLength: runtime.limits.textLineLength, bareNewline: config.bareNewline)
        let body = newBody()
        var storeError: Error?
        var chunk = channel.allocator.buffer(capacity: 16 * 1024)
        while true {
            let done: Bool
            if storeError == nil && body.fitsInMemory(pending.readableBytes) {
                done = body.appendInPlace { decoder.decode(&pending, into: &$0) }
            } else {
                chunk.clear()
                done = decoder.decode(&pending, into: &chunk)
                if storeError == nil {
                    do { try body.append(chunk) } catch { storeError = error }
                }
            }
            if done { break }
            guard await readMore() else {
                setReadTimeout(runtime.limits.commandTimeout)
                await abortTransaction(reason: "client disconnected during DATA")
                closing = true
                return
            }
        }
        setReadTimeout(runtime.limits.commandTimeout)
        await endOfMessage(decoder: decoder, body: body, storeError: storeError)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func chunk(size: Int, last: Bool) async {
        if let (reply, reason) = transaction?.textRefusal() {
            await discard(size)
            await abortTransaction()
            finishTransaction(reply, size: nil, messageID: nil, reason: reason)
            return
        }
        if chunkDecoder == nil {
            chunkDecoder = MessageTextDecoder(mode: .chunked, maxSize: runtime.limits.messageSize,
                                              maxLineLength: runtime.limits.textLineLength, bareNewline: config.bareNewline)
            body = newBody()
        }
        var remaining = size
        var storeError: Error?
        var out = channel.allocator.buffer(capacity: 16 * 1024)
        setTextTimeout()
        while remaining > 0 {
            if pending.readableBytes == 0 {
                guard await readMore() else {
                    setReadTimeout(runtime.limits.commandTimeout)
                    await abortTransaction(reason: "client disconnected during BDAT")
                    closing = true
                    return
                }
                continue
            }
            var slice = pending.readSlice(length: min(remaining, pending.readableBytes))!
            remaining -= slice.readableBytes
            out.clear()
            _ = chunkDecoder!.decode(&slice, into: &out)
            do { try body!.append(out) } catch { storeError = error }
        }
        setReadTimeout(runtime.limits.commandTimeout)
        if let storeError {
            await abortTransaction(reason: "\(storeError)")
            finishTransaction(SMTPReply(451, "4.3.0", "Local error while storing the message"), size: nil, messageID: nil, reason: "\(storeError)")
            return
        }
        guard last else {
            send(SMTPReply(250, "2.0.0", "\(size) octets received"))
            return
        }
        var decoder = chunkDecoder!
        out.clear()
        decoder.finishChunked(into: &out)
        do { try body!.append(out) } catch { storeError = error }
        let b = body!
        chunkDecoder = nil
        body = nil
        await endOfMessage(decoder: decoder, body: b, storeError: storeError)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func discard(_ size: Int) async {
        var remaining = size
        while remaining > 0 {
            if pending.readableBytes == 0 {
                guard await readMore() else { closing = true; return }
                continue
            }
            let n = min(remaining, pending.readableBytes)
            pending.moveReaderIndex(forwardBy: n)
            remaining -= n
        }
    }

    /// The milter-style end of data: the message is whole; check it, add
    /// the trace header, hand it to the downstream, and answer with its answer.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func endOfMessage(decoder: MessageTextDecoder, body: MessageBody, storeError: Error?) async {
        let headerLimit = runtime.limits.headerSize
        let headerBytes = (try? body.headerSection(limit: max(64 * 1024, headerLimit + 4))) ?? []
        let headers = HeaderBlock(headerBytes)
        let messageID = headers.first("Message-ID")
        if let violation = decoder.violation {
            await abortTransaction()
            finishTransaction(violation, size: decoder.size, messageID: messageID, rules: ["limits"])
            return
        }
        if let refusal = headerLimitRefusal(headers, headerBytes: headerBytes.count, bodySize: body.count) {
            await abortTransaction()
            finishTransaction(refusal, size: decoder.size, messageID: messageID, rules: ["limits"])
            return
        }
        if let storeError {
            await abortTransaction()
            finishTransaction(SMTPReply(451, "4.3.0", "Local error while storing the message"), size: decoder.size,
                              messageID: messageID, reason: "\(storeError)")
            return
        }
        let found = await inspect(.endOfData) {
            $0.headers = headers
            $0.body = body
        }
        let outcome = driver.data(size: decoder.size, headers: headers, inspected: found)
        let txID = "\(facts.sessionID)-\(machine.transactions + 1)"
        switch outcome {
        case .refuse(let reply, let rules, let closes):
            await abortTransaction()
            finishTransaction(reply, size: decoder.size, messageID: messageID, rules: rules)
            if closes { closing = true }
        case .discard:
            await abortTransaction()
            finishTransaction(SMTPReply(250, "2.0.0", "Ok: \(txID)"), size: decoder.size, messageID: messageID,
                              verdictOverride: .discarded)
        case .quarantine(_, let reason):
            await abortTransaction()
            let held = runtime.quarantine.begin(deliveryContext)
            finish(await held.deliver(outgoing(body, size: decoder.size, messageID: messageID, id: txID, reason: reason)),
                   size: decoder.size, messageID: messageID)
        case .deliver:
            let way = transaction ?? runtime.delivery.begin(deliveryContext)
            transaction = nil
            finish(await way.deliver(outgoing(body, size: decoder.size, messageID: messageID, id: txID, reason: nil)),
                   size: decoder.size, messageID: messageID)
        }
    }

    private func outgoing(_ body: MessageBody, size: Int, messageID: String?, id: String, reason: String?) -> OutgoingMessage {
        let env = machine.envelope ?? Envelope(mailFrom: .null, mailParameters: MailParameters())
        let trace = TraceHeader(helo: facts.helo, clientIP: facts.clientIP, hostname: config.hostname,
                                smtpUTF8: env.mailParameters.smtpUTF8, extended: machine.extended, tls: machine.tlsActive,
                                recipients: env.recipients, added: driver.addedHeaders)
        return OutgoingMessage(body: body, size: size, messageID: messageID, envelope: env, transactionID: id, trace: trace,
                               facts: facts, rules: driver.rules, spamScore: driver.spamScore, reason: reason)
    }

    /// A header section too large to be mail (Postfix's header_size_limit), or
    /// more Received lines than a message ever collects unless it loops
    /// (RFC 5321 §6.3; Postfix's hopcount_limit).
    private func headerLimitRefusal(_ headers: HeaderBlock, headerBytes: Int, bodySize: Int) -> SMTPReply? {
        let limit = runtime.limits.headerSize
        if !headers.complete && bodySize > limit && headerBytes > limit {
            return SMTPReply(552, "5.3.4", "Message header section larger than \(limit) bytes")
        }
        let hops = headers.count("Received")
        if hops > runtime.limits.maxReceived {
            return SMTPReply(554, "5.4.6", "Too many hops (\(hops) Received headers): is there a mail loop?")
        }
        return nil
    }

    /// Runs the analyzers of `stage` on the session's facts so far (with
    /// what the stage brings, set by `prepare`) within what is left of the
    /// DNS budget. A stage with no analyzer costs nothing.
    private func inspect(_ stage: InspectionStage, _ prepare: (inout InspectionInput) -> Void = { _ in }) async -> Findings {
        let inspector = runtime.inspector
        guard inspector.has(stage) else { return Findings() }
        var input = InspectionInput(facts: facts, dnsBudget: dnsBudgetLeft, logger: logger, metrics: metrics)
        prepare(&input)
        let found = await inspector.inspect(stage, input)
        dnsBudgetLeft -= found.dnsSeconds
        return found
    }

    private func finish(_ result: DeliveryResult, size: Int, messageID: String?) {
        finishTransaction(result.reply, size: size, messageID: messageID, relay: result.relay, reason: result.reason,
                          verdictOverride: result.verdict)
    }

    private func finishTransaction(_ reply: SMTPReply, size: Int?, messageID: String?, rules extra: [String] = [],
                                   relay: String? = nil, reason: String? = nil, verdictOverride: AuditRecord.Verdict? = nil) {
        let v = verdictOverride ?? verdict(for: reply)
        metrics.transaction(v.rawValue)
        var r = AuditRecordBuilder(self).base(.transaction, verdict: v, reply: reply)
        r.warnings = driver.warnings
        r.spamScore = driver.spamScore
        r.symbols = driver.symbolScores
        r.virus = driver.facts.virus
        r.size = size
        r.messageID = messageID
        r.rules = driver.rules + extra
        r.relay = relay ?? (reason != nil && extra.isEmpty ? runtime.delivery.label : nil)
        r.reason = reason
        audit.record(r)
        send(reply)
        machine.transactionEnded()
        driver.endTransaction()
        transaction = nil
    }

    // MARK: transaction bookkeeping

    /// Ends the open transaction without delivery (a proxy's downstream gets RSET).
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func abortTransaction(reason: String? = nil) async {
        body = nil
        chunkDecoder = nil
        guard let t = transaction else { return }
        transaction = nil
        await t.abort()
    }

    // MARK: STARTTLS

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func startTLS() async {
        guard let ssl = runtime.sslContext else {
            send(.tlsNotAvailable)
            return
        }
        // Replies to commands pipelined before STARTTLS go out first.
        await flush(wait: true)
        var buffer = ByteBuffer()
        SMTPReply(220, "2.0.0", "Ready to start TLS").encode(into: &buffer)
        let reply = buffer
        let handler = inputHandler
        do {
            try await channel.eventLoop.submit { try handler.startTLS(reply: reply, sslContext: ssl) }.get()
        } catch {
            closing = true
            return
        }
        // CVE-2011-0411: anything the client sent after STARTTLS in plaintext is dropped.
        pending.clear()
        while true {
            let next = await inputHandler.next()
            switch next {
            case .none:
                closing = true
                return
            case .bytes:
                continue  // plaintext read before the handshake finished
            case .tlsStarted:
                machine.tlsStarted()
                driver.tlsStarted()
                return
            case .tlsFailed(let why):
                logger.info("TLS handshake failed: \(why)")
                record(.connection, verdict: .rejected, reply: SMTPReply(421, "4.7.0", "TLS handshake failed"), reason: why)
                closing = true
                return
            case .timeout, .shutdown:
                closing = true
                return
            }
        }
    }

    // MARK: audit

    private func verdict(for reply: SMTPReply) -> AuditRecord.Verdict {
        reply.code < 400 ? .accepted : reply.code < 500 ? .tempfailed : .rejected
    }

    private func record(_ event: AuditRecord.Event, verdict: AuditRecord.Verdict, reply: SMTPReply, rules: [String] = [], reason: String? = nil) {
        var r = AuditRecordBuilder(self).base(event, verdict: verdict, reply: reply)
        r.rules = rules
        r.reason = reason
        audit.record(r)
    }

    /// Fills the fields every record shares from the session's current facts.
    fileprivate struct AuditRecordBuilder {
        let session: Session
        init(_ s: Session) { session = s }
        func base(_ event: AuditRecord.Event, verdict: AuditRecord.Verdict, reply: SMTPReply) -> AuditRecord {
            let f = session.facts
            return AuditRecord(event: event, session: f.sessionID, clientIP: f.clientIP, clientPort: f.clientPort,
                               helo: f.helo, tls: session.machine.tlsActive, mailFrom: f.mailFrom?.description,
                               rcptTo: f.recipients.map(\.description), verdict: verdict, reply: reply.description)
        }
    }
}
