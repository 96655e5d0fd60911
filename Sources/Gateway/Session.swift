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
/// `SessionStateMachine`, asks the inspection and then the policy at each
/// stage, hands accepted mail to the delivery chosen at start-up, and writes
/// an audit record for every decision. It knows no analyzer and no kind of
/// delivery by name (docs/architecture.md). Receiving the text and STARTTLS
/// are in Session+Text.swift and Session+TLS.swift.
final class Session {
    let channel: Channel
    let inputHandler: SessionInputHandler
    let runtime: Runtime
    let audit: AuditSink
    let logger: Logger
    var machine: SessionStateMachine
    var framer: CommandLineFramer
    var driver: PolicyDriver
    var facts: SessionFacts { driver.facts }
    var pending = ByteBuffer()
    var out = ByteBuffer()
    var shutdownRequested = false
    var closing = false

    /// The open transaction's way out (proxy, queue, Maildir), from MAIL on.
    var transaction: (any DeliveryTransaction)?
    let deliveryContext: DeliveryContext
    var body: MessageBody?
    var chunkDecoder: MessageTextDecoder?
    /// Seconds of DNS list lookups left for this message ([dns] budget);
    /// the client's lookups at connect have a budget of their own.
    var dnsBudgetLeft: Double = .infinity
    let state: SharedState
    /// Where this connection's slot under `limit connections-per-client` was taken.
    var slot: SharedState.Slot = .none
    let metrics: GatewayMetrics
    /// The `[[milters]]` this session asks at each stage (nil: none configured).
    let milters: MilterChain?

    init(channel: Channel, input: SessionInputHandler, runtime: Runtime, audit: AuditSink, logger: Logger, sessionID: String,
         state: SharedState, metrics: GatewayMetrics) {
        self.channel = channel
        self.metrics = metrics
        self.state = state
        self.inputHandler = input
        self.runtime = runtime
        milters = MilterChain(runtime.config.milters, group: channel.eventLoop, hostname: runtime.config.hostname, logger: logger)
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
        driver = PolicyDriver(policy: runtime.policy, gate: runtime.gate, facts: facts) { stage, rule in
            log2.info("\(stage.rawValue): rule \(rule.name) \(rule.action) (\(rule.explanation))")
        }
    }

    var config: GatewayConfig { runtime.config }

    // MARK: the loop

    func run() async {
        metrics.connections.increment()
        metrics.openConnections.increment()
        await converse()
        milters?.close()
        await state.disconnect(facts.clientIP, slot: slot)
        metrics.openConnections.decrement()
    }

    private func converse() async {
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
    func greet() async -> Bool {
        dnsBudgetLeft = config.dnsBudget
        var found = await inspect(.connect)
        let (admitted, slot, warning) = await state.connect(facts.clientIP, limit: runtime.policy.limits.connectionsPerClient)
        self.slot = slot
        if let warning { found.warnings.append(warning) }
        if case .refuse(let reply, let rules, _, _) = driver.connect(inspected: found, admitted: admitted) {
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
    func readMore() async -> Bool {
        while true {
            guard let next = await inputHandler.next() else { return false }
            if let more = received(next) { return more }
        }
    }

    /// Takes one input: true or false ends `readMore` with that answer, nil reads on.
    @inline(never)
    func received(_ next: SessionInput) -> Bool? {
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

    func send(_ reply: SMTPReply) {
        // Room for an EHLO reply at once: an empty ByteBuffer grows by
        // doubling, a reallocation every few bytes of a reply.
        if out.capacity == 0 { out = channel.allocator.buffer(capacity: 512) }
        reply.encode(into: &out)
    }

    /// RFC 5321 §4.5.3.2: the DATA block timeout differs from the command timeout.
    func setReadTimeout(_ seconds: Double) {
        let h = inputHandler
        let t = TimeAmount.milliseconds(Int64(seconds * 1000))
        if channel.eventLoop.inEventLoop { h.setTimeout(t) } else { channel.eventLoop.execute { h.setTimeout(t) } }
    }

    /// Postscreen's greet wait: hold the 220; a client that talks first is
    /// a bot that does not wait for the server (pregreet). True when refused.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    func refusedEarlyTalker() async -> Bool {
        let wait = runtime.limits.greetWait
        guard wait > 0, await !state.passedGreeting(facts.clientIP) else { return false }
        try? await Task.sleep(for: .milliseconds(Int(wait * 1000)))
        let h = inputHandler
        let early = (try? await channel.eventLoop.submit { h.talkedEarly }.get()) ?? false
        guard early else {
            await state.greetingPassed(facts.clientIP)
            return false
        }
        let reply = SMTPReply(554, "5.5.1", "Protocol error: talking before the greeting")
        var r = AuditRecordBuilder(self).base(.connection, verdict: .rejected, reply: reply)
        r.rules = ["pregreet"]
        r.reason = "the client sent commands before the \(wait.formatted())s greeting"
        write(r)
        send(reply)
        await flush(wait: true)
        return true
    }

    /// Sends the buffered replies. Waits for the write only when the
    /// socket is backed up (replies answer commands, so a client that
    /// sends without reading is held here rather than filling memory) or
    /// when the session is about to close or switch to TLS (`wait`).
    func flush(wait: Bool = false) async {
        guard out.readableBytes > 0 else { return }
        let b = out
        out = ByteBuffer()  // grows on the next reply; an idle session holds no reply buffer
        if !wait && channel.isWritable {
            channel.writeAndFlush(b, promise: nil)
            return
        }
        do { try await channel.writeAndFlush(b).get() } catch { closing = true }
    }

    func apply(_ action: SessionStateMachine.Action) {
        switch action {
        case .reply(let r): send(r)
        case .replyAndClose(let r): send(r); closing = true
        default: break
        }
    }

    // MARK: commands

    @inline(never)  // keeps this frame out of the one an idle session waits in
    func handle(line: ByteBuffer) async {
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
            var found = await inspect(.mail) {
                $0.facts.mailFrom = path
                $0.facts.mailParameters = params
            }
            let (admitted, warning) = await state.message(facts.clientIP, limit: runtime.policy.limits.messagesPerClientPerMinute)
            if let warning { found.warnings.append(warning) }
            if case .refuse(let reply, let rules, let closes, _) = driver.mail(path, params, inspected: found, admitted: admitted) {
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

    func refuseCommand(_ reply: SMTPReply, rules: [String], closes: Bool, from: String? = nil) {
        var r = AuditRecordBuilder(self).base(.command, verdict: verdict(for: reply), reply: reply)
        r.rules = rules
        if let from { r.mailFrom = from }
        write(r)
        if closes {
            send(reply)
            closing = true
        } else {
            apply(machine.error(reply))
        }
    }

    // MARK: RCPT

    @inline(never)  // keeps this frame out of the one an idle session waits in
    func recipient(_ given: Mailbox, _ params: RcptParameters) async {
        var box = given
        if box.domain.isEmpty, let d = runtime.gate.primaryDomain { box.domain = d }  // <Postmaster>
        let found = await inspect(.rcpt) { $0.facts.recipient = box }
        let verdict = driver.rcpt(box, original: given, inspected: found)
        if let g = driver.greylistThisStage, let w = await state.greylistRecord(g, facts, recipients: [box], bodyHash: nil) {
            driver.note(w, session: false)
        }
        if case .refuse(let reply, let rules, let closes, let reason) = verdict {
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

    func accept(_ box: Mailbox, _ params: RcptParameters, reply: SMTPReply = SMTPReply(250, "2.1.5", "Ok")) {
        machine.recipientAccepted(box, params)
        driver.recipientAccepted(box)
        send(reply)
    }

    func refuseRecipient(_ box: Mailbox, _ reply: SMTPReply, rules: [String] = [], reason: String? = nil,
                         downstream: Bool = false) {
        var r = AuditRecordBuilder(self).base(.recipient, verdict: verdict(for: reply), reply: reply)
        r.rcptTo = [box.description]
        r.rules = rules
        r.reason = reason
        r.warnings = driver.warnings
        r.relay = downstream ? runtime.delivery.label : nil
        write(r)
        if reply.isPermanent, case .reply(let counted) = machine.error(reply) {
            send(counted)
        } else if reply.isPermanent {
            send(.tooManyErrors)
            closing = true
        } else {
            send(reply)
        }
    }

    /// The milter-style end of data: the message is whole; check it, add
    /// the trace header, hand it to the downstream, and answer with its answer.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    func endOfMessage(decoder: MessageTextDecoder, body: MessageBody, storeError: Error?) async {
        let headerBytes = (try? body.headerSection(limit: headerSectionLimit)) ?? []
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
            $0.headerBytes = headerBytes
            $0.body = body
            $0.liveText = body.observer as? LiveBodyHashes
        }
        let outcome = driver.data(size: decoder.size, headers: headers, inspected: found)
        if let g = driver.greylistThisStage, let w = await state.greylistRecord(g, facts, recipients: facts.recipients, bodyHash: g.message) {
            driver.note(w, session: false)
        }
        if let k = config.classifier, k.autolearn, let c = runtime.classifier, let f = driver.classified,
           let spam = driver.autolearnClass(k, delivered: outcome == .deliver) {
            c.enqueue(f, spam: spam)
        }
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
            finish(await held.deliver(outgoing(body, headerBytes: headerBytes, size: decoder.size, messageID: messageID, id: txID, reason: reason)),
                   size: decoder.size, messageID: messageID)
        case .deliver:
            let way = transaction ?? runtime.delivery.begin(deliveryContext)
            transaction = nil
            finish(await way.deliver(outgoing(body, headerBytes: headerBytes, size: decoder.size, messageID: messageID, id: txID, reason: nil)),
                   size: decoder.size, messageID: messageID)
        }
    }

    /// Runs the analyzers of `stage` on the session's facts so far (with
    /// what the stage brings, set by `prepare`) within what is left of the
    /// DNS budget. A stage with no analyzer costs nothing.
    func inspect(_ stage: InspectionStage, _ prepare: (inout InspectionInput) -> Void = { _ in }) async -> Findings {
        let inspector = runtime.inspector
        guard inspector.has(stage) || milters != nil else { return Findings() }
        var input = InspectionInput(facts: facts, dnsBudget: dnsBudgetLeft, logger: logger, metrics: metrics)
        prepare(&input)
        var found = inspector.has(stage) ? await inspector.inspect(stage, input) : Findings()
        if let milters { found.merge(await milters.ask(stage, input)) }
        dnsBudgetLeft -= found.dnsSeconds
        return found
    }

    func finish(_ result: DeliveryResult, size: Int, messageID: String?) {
        finishTransaction(result.reply, size: size, messageID: messageID, relay: result.relay, reason: result.reason,
                          verdictOverride: result.verdict)
    }

    func finishTransaction(_ reply: SMTPReply, size: Int?, messageID: String?, rules extra: [String] = [],
                           relay: String? = nil, reason: String? = nil, verdictOverride: AuditRecord.Verdict? = nil) {
        let v = verdictOverride ?? verdict(for: reply)
        metrics.transaction(v.rawValue)
        var r = AuditRecordBuilder(self).base(.transaction, verdict: v, reply: reply)
        driver.fillTransaction(&r, size: size, messageID: messageID, extraRules: extra)
        r.relay = relay ?? (reason != nil && extra.isEmpty ? runtime.delivery.label : nil)
        r.reason = reason
        write(r)
        send(reply)
        machine.transactionEnded()
        driver.endTransaction()
        transaction = nil
    }

    // MARK: transaction bookkeeping

    /// Ends the open transaction without delivery (a proxy's downstream gets RSET).
    @inline(never)  // keeps this frame out of the one an idle session waits in
    func abortTransaction(reason: String? = nil) async {
        body = nil
        chunkDecoder = nil
        milters?.endMessage()
        guard let t = transaction else { return }
        transaction = nil
        await t.abort()
    }

    // MARK: audit

    func verdict(for reply: SMTPReply) -> AuditRecord.Verdict { AuditRecord.verdict(for: reply) }

    func record(_ event: AuditRecord.Event, verdict: AuditRecord.Verdict, reply: SMTPReply, rules: [String] = [], reason: String? = nil) {
        var r = AuditRecordBuilder(self).base(event, verdict: verdict, reply: reply)
        r.rules = rules
        r.reason = reason
        write(r)
    }
}
