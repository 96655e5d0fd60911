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

    // The open transaction.
    private var downstream: DownstreamConnection?
    private var downstreamFailure: String?
    /// Proxy mode with `fallback = "queue"`: the downstream could not be
    /// reached, so this transaction goes into the spool instead.
    private var fallbackActive = false
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
        if runtime.policy.needsDNS || runtime.policy.needsGeoIP {
            await runtime.checks.fill(&driver.facts, dns: runtime.policy.needsDNS, geoip: runtime.policy.needsGeoIP)
        }
        dnsBudgetLeft = config.dnsBudget
        await askLists(.client, [facts.clientIP])
        if case .refuse(let reply, let rules, _, _) = driver.connect() {
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
            if case .refuse(let reply, let rules, let closes, _) = driver.helo(name) {
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
            if case .mailbox(let box) = path, !box.isAddressLiteral { await askLists(.sender, [box.domain]) }
            if case .refuse(let reply, let rules, let closes, _) = driver.mail(path, params) {
                refuseCommand(reply, rules: rules, closes: closes, from: path.description)
                return
            }
            downstreamFailure = nil
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
        if case .refuse(let reply, let rules, let closes, let reason) = driver.rcpt(box, original: given) {
            refuseRecipient(box, reply, rules: rules, reason: reason)
            if closes { closing = true }
            return
        }
        switch runtime.relay {
        case .maildir, .queue:
            accept(box, params)
        case .smtp(let pool):
            if fallbackActive {
                accept(box, params)
                return
            }
            if let failure = downstreamFailure {
                if startFallback(failure) {
                    accept(box, params)
                    return
                }
                refuseRecipient(box, SMTPReply(451, "4.4.1", "Downstream unavailable, try again later"), reason: failure, downstream: true)
                return
            }
            do {
                let reply: SMTPReply
                if downstream == nil {
                    switch try await openDownstream(pool, rcpt: rewriteRecipient(box), params) {
                    case .mailRefused(let refused):
                        refuseRecipient(box, refused, reason: "downstream refused MAIL FROM", downstream: true)
                        return
                    case .rcpt(let r):
                        reply = r
                    }
                } else {
                    guard let conn = downstream else { throw RelayError.closed("(no downstream transaction)") }
                    reply = try await conn.rcpt(rewriteRecipient(box), params)
                }
                if reply.code / 100 == 2 {
                    accept(box, params, reply: passthrough(reply))
                } else {
                    refuseRecipient(box, passthrough(reply), reason: "downstream refused recipient", downstream: true)
                }
            } catch {
                downstreamFailure = "\(error)"
                logger.warning("downstream failed at RCPT: \(error)")
                await dropDownstream()
                if startFallback("\(error)") {
                    accept(box, params)
                    return
                }
                refuseRecipient(box, SMTPReply(451, "4.4.1", "Downstream unavailable, try again later"), reason: "\(error)", downstream: true)
            }
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
        r.relay = downstream ? runtime.relay.label : nil
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

    private enum Opened {
        case mailRefused(SMTPReply)
        case rcpt(SMTPReply)
    }

    /// Opens the downstream transaction at the first accepted RCPT
    /// (DESIGN.md "Envelope in step"), sending MAIL and that RCPT together
    /// when the downstream pipelines. A reused connection that turns out
    /// dead is replaced once.
    private func openDownstream(_ pool: DownstreamPool, rcpt box: Mailbox, _ params: RcptParameters) async throws -> Opened {
        guard let env = machine.envelope else { return .mailRefused(SMTPReply(503, "5.5.1", "Error: need MAIL command")) }
        for attempt in 0..<2 {
            let (conn, reused) = try await pool.checkout(near: channel.eventLoop)
            do {
                let (mail, rcpt) = try await conn.mail(rewriteSender(env.mailFrom), env.mailParameters,
                                                       size: env.mailParameters.size, rcpt: box, params)
                guard let rcpt else {
                    await pool.checkin(conn)
                    return .mailRefused(passthrough(mail))
                }
                downstream = conn
                return .rcpt(rcpt)
            } catch {
                conn.abandon()
                if !(reused && attempt == 0) { throw error }
            }
        }
        throw RelayError.closed("(a reused connection and a new one both failed)")
    }

    /// Downstream replies go to the client as they are, with an enhanced
    /// code added when the downstream gave none (we advertise
    /// ENHANCEDSTATUSCODES). A downstream 421 closes the downstream's
    /// connection, not the client's, so the client gets 451 instead.
    private func passthrough(_ reply: SMTPReply) -> SMTPReply {
        var r = reply
        if r.code == 421 {
            return SMTPReply(code: 451, enhanced: "4.4.2", lines: ["Downstream: " + r.lines.joined(separator: " ")])
        }
        if r.enhanced == nil { r.enhanced = "\(r.code / 100).0.0" }
        return r
    }

    // MARK: DATA and BDAT

    private func newBody() -> MessageBody {
        MessageBody(memoryThreshold: config.memoryThreshold, tempDirectory: config.tempDirectory)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func data() async {
        if downstreamLost() {
            // Recipients were accepted but the downstream is gone: say so now, before the client sends the text.
            let reply = SMTPReply(451, "4.4.1", "Downstream unavailable, try again later")
            finishTransaction(reply, size: nil, messageID: nil, reason: downstreamFailure ?? "downstream connection lost")
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
        if downstreamLost() {
            await discard(size)
            finishTransaction(SMTPReply(451, "4.4.1", "Downstream unavailable, try again later"), size: nil, messageID: nil,
                              reason: downstreamFailure ?? "downstream connection lost")
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
        if runtime.policy.needsVirusScan { await scan(body) }
        var mime: MIMESummary?
        if runtime.policy.needsMIME {
            var walker = MIMEWalker()
            let next = body.reader()
            while let chunk = try? await next() { walker.feed(chunk) }
            mime = walker.finish()
            // At most 20 distinct hosts per message go to URI lists.
            var hosts: [String] = []
            for h in (mime?.urls ?? []).compactMap(URLExtractor.host) where !hosts.contains(h) && hosts.count < 20 { hosts.append(h) }
            await askLists(.uri, hosts)
        }
        switch driver.data(size: decoder.size, headers: headers, mime: mime) {
        case .refuse(let reply, let rules, let closes):
            await abortTransaction()
            finishTransaction(reply, size: decoder.size, messageID: messageID, rules: rules)
            if closes { closing = true }
            return
        case .discard:
            await abortTransaction()
            finishTransaction(SMTPReply(250, "2.0.0", "Ok: \(facts.sessionID)-\(machine.transactions + 1)"), size: decoder.size,
                              messageID: messageID, verdictOverride: .discarded)
            return
        case .quarantine(let rule, let reason):
            await abortTransaction()
            await quarantineMessage(body: body, size: decoder.size, messageID: messageID, rule: rule, reason: reason)
            return
        case .deliver:
            break
        }
        if fallbackActive {
            await spoolMessage(body: body, size: decoder.size, messageID: messageID, why: downstreamFailure)
            return
        }
        let txID = "\(facts.sessionID)-\(machine.transactions + 1)"
        let header = receivedHeader(id: txID)
        switch runtime.relay {
        case .queue:
            await spoolMessage(body: body, size: decoder.size, messageID: messageID, why: nil)
        case .maildir(let maildir):
            do {
                let started = ContinuousClock.now
                let name = try await maildir.deliver(header: header, body: body, to: machine.envelope?.recipients ?? [],
                                                     hostname: config.hostname)
                metrics.relaySeconds.record(ContinuousClock.now - started)
                finishTransaction(SMTPReply(250, "2.0.0", "Ok: delivered as \(txID)"), size: decoder.size,
                                  messageID: messageID, relay: "maildir \(name)")
            } catch {
                logger.error("maildir delivery failed: \(error)")
                finishTransaction(SMTPReply(451, "4.3.0", "Local delivery failed, try again later"), size: decoder.size,
                                  messageID: messageID, reason: "\(error)")
            }
        case .smtp(let pool):
            guard let conn = downstream else {
                if startFallback("downstream connection lost") {
                    await spoolMessage(body: body, size: decoder.size, messageID: messageID, why: "downstream connection lost")
                    return
                }
                finishTransaction(SMTPReply(451, "4.4.1", "Downstream unavailable, try again later"), size: decoder.size,
                                  messageID: messageID, reason: "downstream connection lost")
                return
            }
            do {
                var header = header
                let offset = appendRewrittenHeader(body, to: &header)
                let started = ContinuousClock.now
                let reply = passthrough(try await conn.data(header: header, body: body, bodyOffset: offset))
                metrics.relaySeconds.record(ContinuousClock.now - started)
                downstream = nil
                await pool.checkin(conn)
                finishTransaction(reply, size: decoder.size, messageID: messageID, relay: "\(pool.label) \(reply)")
            } catch {
                logger.warning("downstream failed during DATA: \(error)")
                await dropDownstream()
                if startFallback("\(error)") {
                    await spoolMessage(body: body, size: decoder.size, messageID: messageID, why: "downstream failed during DATA: \(error)")
                    return
                }
                finishTransaction(SMTPReply(451, "4.4.2", "Downstream failed during delivery, try again later"), size: decoder.size,
                                  messageID: messageID, reason: "\(error)")
            }
        }
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

    /// Looks up, all at once, the DNS lists of one kind that the policy uses.
    /// DNS list lookups for `values` under the policy's lists for `target`,
    /// within what is left of the message's DNS budget.
    private func askLists(_ target: DNSList.Target, _ values: [String]) async {
        // Most policies have no list for a given stage: no async call then.
        let queries = runtime.policy.dnsLists.filter { $0.target == target }.flatMap { l in values.flatMap { l.queries(for: $0) } }
        guard !queries.isEmpty else { return }
        await lookUp(queries, session: target == .client)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func lookUp(_ queries: [String], session: Bool) async {
        let started = ContinuousClock.now
        let (answers, unanswered) = await runtime.checks.lookupLists(queries, budget: dnsBudgetLeft)
        spentOnDNS(since: started, answers: answers, unanswered: unanswered, session: session)
    }

    private func spentOnDNS(since started: ContinuousClock.Instant, answers: [String: DNSListAnswer], unanswered: [String], session: Bool) {
        let spent = ContinuousClock.now - started
        dnsBudgetLeft -= Double(spent.components.seconds) + Double(spent.components.attoseconds) / 1e18
        driver.facts.dnsListAnswers.merge(answers) { _, new in new }
        if !unanswered.isEmpty {
            let budget = config.dnsBudget.formatted(.number.precision(.fractionLength(0...3)))
            driver.note("DNS budget of \(budget)s used up before \(unanswered.joined(separator: ", ")) answered; counted as not listed",
                        session: session)
        }
    }

    /// Sends the message to clamd; a failure is kept as a fact so the
    /// `virus` rule tempfails (fail closed) unless on_error = "accept".
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func scan(_ body: MessageBody) async {
        driver.facts.virusScanned = true
        guard let scanner = runtime.scanner else {
            driver.facts.scanFailure = "no scanner configured"
            return
        }
        let started = ContinuousClock.now
        do {
            switch try await scanner.scan(body) {
            case .clean: break
            case .infected(let name): driver.facts.virus = name
            }
            metrics.scanSeconds.record(ContinuousClock.now - started)
        } catch {
            metrics.scanFailures.increment()
            logger.error("virus scan failed: \(error)")
            if !config.clamavFailOpen { driver.facts.scanFailure = "\(error)" }
        }
    }

    /// RFC 5321 §4.4 trace header; "with ESMTPS" etc. per RFC 3848.
    private func receivedHeader(id: String) -> ByteBuffer {
        let env = machine.envelope
        let ip = facts.clientIP
        var b = channel.allocator.buffer(capacity: 256)
        b.writeStaticString("Received: from ")
        Self.sanitize(facts.helo ?? "unknown", into: &b)
        b.writeStaticString(" ([")
        if ip.utf8.contains(UInt8(ascii: ":")) { b.writeStaticString("IPv6:") }
        b.writeString(ip)
        b.writeStaticString("])\r\n\tby ")
        b.writeString(config.hostname)
        b.writeStaticString(" (mxgate) with ")
        if env?.mailParameters.smtpUTF8 == true { b.writeStaticString("UTF8") }
        b.writeStaticString(machine.extended ? "ESMTP" : "SMTP")
        if machine.tlsActive { b.writeStaticString("S") }
        b.writeStaticString(" id ")
        b.writeString(id)
        if let rcpts = env?.recipients, rcpts.count == 1 {
            b.writeStaticString("\r\n\tfor <")
            b.writeString(rcpts[0].description)
            b.writeStaticString(">")
        }
        b.writeStaticString("; ")
        b.writeString(Self.rfc5322Date(Date()))
        b.writeStaticString("\r\n")
        for h in driver.addedHeaders {
            b.writeString(h)
            b.writeStaticString("\r\n")
        }
        return b
    }

    /// The HELO name as a Received header may carry it: printable ASCII
    /// without parentheses, at most 255 bytes.
    static func sanitize(_ s: String, into b: inout ByteBuffer) {
        var n = 0
        for c in s.utf8 where c > 32 && c < 127 && c != UInt8(ascii: "(") && c != UInt8(ascii: ")") {
            b.writeInteger(c)
            n += 1
            if n == 255 { break }
        }
    }

    static func rfc5322Date(_ date: Date) -> String {
        MailDate.rfc5322(secondsSince1970: date.timeIntervalSince1970)
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
        r.relay = relay ?? (reason != nil && extra.isEmpty ? runtime.relay.label : nil)
        r.reason = reason
        audit.record(r)
        send(reply)
        machine.transactionEnded()
        driver.endTransaction()
        downstreamFailure = nil
        fallbackActive = false
    }

    // MARK: queue

    /// Proxy mode's fallback: true (and the transaction switches to the
    /// spool) when `fallback = "queue"` is set; the reason is logged.
    private func startFallback(_ why: String) -> Bool {
        guard case .smtp = runtime.relay, config.fallback == .queue, runtime.queue != nil else { return false }
        if !fallbackActive { logger.warning("downstream unavailable (\(why)); accepting into the queue instead") }
        fallbackActive = true
        return true
    }

    /// In proxy mode, whether the downstream transaction is gone with no
    /// fallback to take its place (the client then gets 451 before sending text).
    private func downstreamLost() -> Bool {
        guard case .smtp = runtime.relay, !fallbackActive, downstream == nil || downstreamFailure != nil else { return false }
        return !startFallback(downstreamFailure ?? "downstream connection lost")
    }

    private func rewriteSender(_ path: ReversePath) -> ReversePath {
        guard case .mailbox(let box) = path, let table = runtime.senderRewrite, let to = table.rewrite(box.description),
              let rewritten = try? AddressParser.parseMailbox(to) else { return path }
        return .mailbox(rewritten)
    }

    private func rewriteRecipient(_ box: Mailbox) -> Mailbox {
        guard let table = runtime.recipientRewrite, let to = table.rewrite(box.description),
              let rewritten = try? AddressParser.parseMailbox(to) else { return box }
        return rewritten
    }

    /// With `[rewrite] headers = true`, appends the message's header section
    /// with its addresses rewritten; returns how many bytes of the body it
    /// replaces (0 when nothing changed).
    private func appendRewrittenHeader(_ body: MessageBody, to header: inout ByteBuffer) -> Int {
        guard config.rewriteHeaders, let prefix = try? body.prefix(64 * 1024),
              let (section, replaces) = HeaderRewriter.rewrite(prefix, sender: runtime.senderRewrite,
                                                               recipient: runtime.recipientRewrite) else { return 0 }
        header.writeBytes(section)
        return replaces
    }

    /// Queue mode (and proxy fallback): the message and its envelope are
    /// written and fsync'd before the client hears 250 with the queue ID;
    /// a spool that cannot take it gets 452 4.3.1, never 250.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func spoolMessage(body: MessageBody, size: Int, messageID: String?, why: String?) async {
        guard let queue = runtime.queue, let env = machine.envelope else {
            finishTransaction(SMTPReply(451, "4.3.0", "Local error: no queue configured"), size: size, messageID: messageID,
                              reason: "no queue configured")
            return
        }
        let id = Spool.newID()
        var header = receivedHeader(id: id)
        let offset = appendRewrittenHeader(body, to: &header)
        var recipients: [QueuedRecipient] = []
        for (box, params) in zip(env.recipients, env.recipientParameters) {
            let target = rewriteRecipient(box)
            // A rewritten recipient keeps its original address for the DSN (RFC 3461 ORCPT).
            let orcpt = params.orcpt ?? (target != box ? "rfc822;\(box)" : nil)
            recipients.append(QueuedRecipient(address: target.description, orcpt: orcpt, notify: params.notify))
        }
        var q = QueuedEnvelope(id: id, sender: rewriteSender(env.mailFrom).description, recipients: recipients,
                               size: header.readableBytes + body.count - offset, messageID: messageID,
                               origin: "\(facts.helo ?? "unknown") [\(facts.clientIP)]")
        q.ret = env.mailParameters.ret
        q.envid = env.mailParameters.envid
        q.body = env.mailParameters.body
        q.smtpUTF8 = env.mailParameters.smtpUTF8
        do {
            let started = ContinuousClock.now
            try await queue.spool.store(q, header: header, body: body, bodyOffset: offset)
            metrics.relaySeconds.record(ContinuousClock.now - started)
        } catch {
            logger.error("queue: cannot store the message: \(error)")
            finishTransaction(SMTPReply(452, "4.3.1", "Insufficient system storage, try again later"), size: size,
                              messageID: messageID, reason: "\(error)")
            return
        }
        queue.manager.enqueue(q, text: .init(header: header, body: body, offset: offset), on: channel.eventLoop)
        let reason = why.map { "downstream unavailable, queued instead: \($0)" }
        finishTransaction(SMTPReply(250, "2.0.0", "Ok: queued as \(id)"), size: size, messageID: messageID,
                          relay: "queued \(id)", reason: reason)
    }

    /// Holds the message durably instead of delivering it; 250 only once it is on disk.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func quarantineMessage(body: MessageBody, size: Int, messageID: String?, rule: String, reason: String?) async {
        let txID = "\(facts.sessionID)-\(machine.transactions + 1)"
        let entry = QuarantineEntry(id: txID, time: AuditRecord.formatTime(Date()), session: facts.sessionID, clientIP: facts.clientIP,
                                    helo: facts.helo, mailFrom: facts.mailFrom?.description ?? "",
                                    rcptTo: facts.recipients.map(\.description), messageID: messageID, size: size,
                                    rules: driver.rules, reason: reason, spamScore: driver.spamScore)
        do {
            try await runtime.quarantine.store(header: receivedHeader(id: txID), body: body, entry: entry)
            finishTransaction(SMTPReply(250, "2.0.0", "Ok: \(txID)"), size: size, messageID: messageID,
                              relay: "quarantine \(txID)", reason: reason, verdictOverride: .quarantined)
        } catch {
            logger.error("quarantine failed: \(error)")
            finishTransaction(SMTPReply(451, "4.3.0", "Local error while storing the message, try again later"), size: size,
                              messageID: messageID, reason: "quarantine failed: \(error)")
        }
    }

    // MARK: downstream bookkeeping

    /// Closes the downstream transaction (RSET) and returns the connection.
    @inline(never)  // keeps this frame out of the one an idle session waits in
    private func abortTransaction(reason: String? = nil) async {
        body = nil
        chunkDecoder = nil
        downstreamFailure = nil
        fallbackActive = false
        guard let conn = downstream else { return }
        downstream = nil
        if case .smtp(let pool) = runtime.relay { await pool.checkin(conn) } else { conn.abandon() }
    }

    private func dropDownstream() async {
        downstream?.abandon()
        downstream = nil
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
