import Audit
import Foundation
import Logging
import MailMessage
import MilterProtocol
import NIOCore
import Policy
import Relay
import SMTPProtocol

/// One MTA connection to mxgate's milter (`[milter] listen`): each SMTP
/// session the MTA reports on it runs through the same inspection and the
/// same `PolicyDriver` as an SMTP session of our own, stage by stage, and
/// every decision is an audit record marked with the MTA and its queue id.
/// The MTA delivers: an accepted message gets our headers and goes on
/// with the MTA; a refusal is the MTA's reply to its client.
///
/// Protocol rules (negotiation, no-reply steps, macros) are MilterSession's;
/// this decides the answers. The text at end of message is in
/// MilterConnection+Message.swift.
final class MilterConnection {
    let runtime: Runtime
    let audit: AuditSink
    let state: SharedState
    let metrics: GatewayMetrics
    let logger: Logger
    let newSessionID: () -> String

    var protocolState: MilterSession
    /// The SMTP session the MTA reports on, from its connect to its QUIT (or QUIT_NC).
    var driver: PolicyDriver?
    var slot: SharedState.Slot = .none
    /// Refused at connect: the MTA should send nothing more but QUIT; anything it does is answered so.
    var connectRefusal: SMTPReply?
    var dnsBudgetLeft: Double = .infinity
    var tls = false
    /// The MTA's name (`j`) and this message's queue id (`i`), for the audit records.
    var mta = "unknown"
    var queueID: String?

    // The message from DATA to its end.
    var body: MessageBody?
    var storeError: Error?
    var oversized = false
    /// Indexes (from 1) of Authentication-Results fields that claim our authserv-id: removed at the end.
    var forgedResults: [UInt32] = []
    var resultsSeen: UInt32 = 0

    init(runtime: Runtime, audit: AuditSink, state: SharedState, metrics: GatewayMetrics, logger: Logger,
         newSessionID: @escaping () -> String) {
        self.runtime = runtime
        self.audit = audit
        self.state = state
        self.metrics = metrics
        self.logger = logger
        self.newSessionID = newSessionID
        // Everything but the body is answered one by one; header and body
        // chunks need no answer (the decision is at the end), nor do
        // unknown commands. Header values keep their leading space, so the
        // header section is rebuilt as sent (DKIM hashes it).
        // Recipients and the sender change when [rewrite] rewrites them.
        protocolState = MilterSession(
            wantedActions: [.addHeaders, .changeHeaders, .quarantine, .addRecipients, .deleteRecipients, .changeFrom],
            wantedSteps: [.noUnknown, .noReplyHeader, .noReplyEndOfHeaders, .noReplyBody, .noReplyData, .headerLeadingSpace])
    }

    var closed: Bool { protocolState.phase == .closed }

    /// Answers one command: nothing (a no-reply step, macros), one response,
    /// or modifications and a response at the end of a message.
    func handle(_ command: MilterCommand) async throws(MilterProtocolError) -> [MilterResponse] {
        let (step, reply) = try protocolState.receive(command)
        if let reply {
            if let n = protocolState.negotiation {
                logger.debug("milter negotiated: version \(n.version), actions 0x\(String(n.actions.rawValue, radix: 16)), steps 0x\(String(n.steps.rawValue, radix: 16))")
            }
            return [reply]
        }
        guard let step else { return [] }
        if let j = step.macros["j"] { mta = j }
        if let i = step.macros["i"], !i.isEmpty { queueID = i }
        let answer = await answer(step)
        return step.expectsReply ? answer : []
    }

    /// Ends the SMTP session still open when the MTA goes away.
    func close() async {
        await endSession()
    }

    private func answer(_ step: MilterSession.Step) async -> [MilterResponse] {
        if let r = connectRefusal {
            if case .quit = step.command { return [] }
            return [Self.reply(r)]
        }
        switch step.command {
        case .connect(let hostname, let address):
            return await connect(hostname: hostname, address: address, macros: step.macros)
        case .helo(let name):
            if step.macros["{tls_version}"].map({ !$0.isEmpty }) == true {
                tls = true
                driver?.facts.tls = true
            }
            return await helo(name)
        case .mail(let sender, let args):
            return await mail(sender, args)
        case .recipient(let rcpt, let args):
            return await recipient(rcpt, args)
        case .data:
            startMessage()
            return [.continue]
        case .header(let name, let value):
            header(name, value)
            return [.continue]
        case .endOfHeaders:
            append([13, 10])
            return [.continue]
        case .body(let bytes):
            append(bytes)
            return [.continue]
        case .endOfMessage(let bytes):
            append(bytes)
            let out = await endOfMessage()
            resetMessage()
            return out
        case .abort:
            resetMessage()
            driver?.endTransaction()
            return []
        case .quit, .quitNewConnection:
            await endSession()
            return []
        case .unknown:
            return [.continue]
        case .negotiate, .macros:
            return []
        }
    }

    // MARK: the SMTP stages

    private func connect(hostname: String, address: Milter.Address, macros: [String: String]) async -> [MilterResponse] {
        await endSession()
        let (ip, port): (String, Int)
        switch address {
        case .inet(let a, let p), .inet6(let a, let p): (ip, port) = (a, Int(p))
        case .unix, .unknown: (ip, port) = (macros["{client_addr}"] ?? "unknown", 0)
        }
        let facts = SessionFacts(sessionID: newSessionID(), clientIP: ip, clientPort: port)
        let log = logger
        driver = PolicyDriver(policy: runtime.policy, gate: runtime.gate, facts: facts) { stage, rule in
            log.info("milter \(stage.rawValue): rule \(rule.name) \(rule.action) (\(rule.explanation))")
        }
        metrics.connections.increment()
        dnsBudgetLeft = runtime.config.dnsBudget
        var found = await inspect(.connect)
        let (admitted, slot, warning) = await state.connect(ip, limit: runtime.policy.limits.connectionsPerClient)
        self.slot = slot
        if let warning { found.warnings.append(warning) }
        if case .refuse(let reply, let rules, _, _) = driver!.connect(inspected: found, admitted: admitted) {
            connectRefusal = reply
            record(.connection, reply: reply, rules: rules)
            return [Self.reply(reply)]
        }
        logger.debug("milter connect from \(ip) (\(hostname)) via \(mta)")
        return [.continue]
    }

    private func helo(_ name: String) async -> [MilterResponse] {
        guard driver != nil else { return [.continue] }
        let found = await inspect(.helo) { $0.facts.helo = name }
        if case .refuse(let reply, let rules, _, _) = driver!.helo(name, inspected: found) {
            record(.command, reply: reply, rules: rules)
            return [Self.reply(reply)]
        }
        driver!.endTransaction()
        return [.continue]
    }

    private func mail(_ sender: String, _ args: [String]) async -> [MilterResponse] {
        guard driver != nil else { return [.continue] }
        resetMessage()
        guard case .success(.mail(let path, let params)) = CommandParser.parse(Self.line("MAIL FROM:", sender, args)) else {
            let reply = SMTPReply(501, "5.1.7", "Bad sender address syntax")
            record(.command, reply: reply, rules: [], from: sender)
            return [Self.reply(reply)]
        }
        if runtime.config.auditFailClosed && !audit.healthy {
            let reply = SMTPReply(451, "4.3.0", "Local error: audit log unavailable, try again later")
            record(.command, reply: reply, rules: [], from: path.description)
            return [Self.reply(reply)]
        }
        dnsBudgetLeft = runtime.config.dnsBudget
        var found = await inspect(.mail) {
            $0.facts.mailFrom = path
            $0.facts.mailParameters = params
        }
        let facts = driver!.facts
        let (admitted, warning) = await state.message(facts.clientIP, limit: runtime.policy.limits.messagesPerClientPerMinute)
        if let warning { found.warnings.append(warning) }
        if case .refuse(let reply, let rules, _, _) = driver!.mail(path, params, inspected: found, admitted: admitted) {
            record(.command, reply: reply, rules: rules, from: path.description)
            return [Self.reply(reply)]
        }
        return [.continue]
    }

    private func recipient(_ rcpt: String, _ args: [String]) async -> [MilterResponse] {
        guard driver != nil else { return [.continue] }
        guard case .success(.rcpt(let given, _)) = CommandParser.parse(Self.line("RCPT TO:", rcpt, args)) else {
            let reply = SMTPReply(501, "5.1.3", "Bad recipient address syntax")
            var r = base(.recipient, reply: reply)
            r.rcptTo = [rcpt]
            write(r)
            return [Self.reply(reply)]
        }
        var box = given
        if box.domain.isEmpty, let d = runtime.gate.primaryDomain { box.domain = d }  // <Postmaster>
        let found = await inspect(.rcpt) { $0.facts.recipient = box }
        let verdict = driver!.rcpt(box, original: given, inspected: found)
        if let g = driver!.greylistThisStage, let w = await state.greylistRecord(g, driver!.facts, recipients: [box], bodyHash: nil) {
            driver!.note(w, session: false)
        }
        if case .refuse(let reply, let rules, _, let reason) = verdict {
            var r = base(.recipient, reply: reply)
            r.rcptTo = [box.description]
            r.rules = rules
            r.reason = reason
            r.warnings = driver!.warnings
            write(r)
            return [Self.reply(reply)]
        }
        driver!.recipientAccepted(box)
        return [.continue]
    }

    /// The MTA's sender or recipient with its ESMTP arguments, as the SMTP
    /// command it came from, so our own parser reads it.
    static func line(_ verb: String, _ address: String, _ args: [String]) -> String {
        let a = address.hasPrefix("<") ? address : "<\(address)>"
        return ([verb + a] + args).joined(separator: " ")
    }

    /// The SMTP session is over: its slot under the connection limit is given back.
    private func endSession() async {
        resetMessage()
        if let d = driver {
            await state.disconnect(d.facts.clientIP, slot: slot)
            slot = .none
        }
        driver = nil
        connectRefusal = nil
        tls = false
        queueID = nil
    }

    // MARK: helpers

    /// An SMTP reply for the MTA to give its client (4xx or 5xx).
    static func reply(_ r: SMTPReply) -> MilterResponse {
        // libmilter's smfi_setreply treats % as a format character; Postfix passes the text on.
        .replyCode(r.description.replacingOccurrences(of: "\r\n", with: "\n"))
    }

    func inspect(_ stage: InspectionStage, _ prepare: (inout InspectionInput) -> Void = { _ in }) async -> Findings {
        let inspector = runtime.inspector
        guard inspector.has(stage), let d = driver else { return Findings() }
        var input = InspectionInput(facts: d.facts, dnsBudget: dnsBudgetLeft, logger: logger, metrics: metrics)
        prepare(&input)
        let found = await inspector.inspect(stage, input)
        dnsBudgetLeft -= found.dnsSeconds
        return found
    }

    func base(_ event: AuditRecord.Event, reply: SMTPReply, verdict: AuditRecord.Verdict? = nil) -> AuditRecord {
        let facts = driver?.facts ?? SessionFacts(sessionID: "-", clientIP: "unknown", clientPort: 0)
        var r = AuditRecord.decision(event, verdict: verdict ?? AuditRecord.verdict(for: reply), reply: reply, facts: facts, tls: tls)
        r.milter = AuditMilter(mta: mta, queueID: queueID)
        return r
    }

    func record(_ event: AuditRecord.Event, reply: SMTPReply, rules: [String], from: String? = nil) {
        var r = base(event, reply: reply)
        r.rules = rules
        if let from { r.mailFrom = from }
        write(r)
    }

    func write(_ record: AuditRecord) {
        var r = record
        driver?.decorate(&r)
        audit.record(r)
    }
}
