/// The milter's side of one MTA connection, free of I/O: takes the MTA's
/// commands in order, keeps the negotiated options and the macros of each
/// stage, and says for every command whether the MTA waits for an answer
/// (the SMFIP_NR_* steps it may have agreed not to). The application
/// decides the answers; this keeps the protocol's rules.
public struct MilterSession: Sendable {
    public enum Phase: Sendable, Equatable {
        /// Before SMFIC_OPTNEG.
        case negotiating
        /// Between messages (after connect, helo, or the end of one).
        case idle
        /// From MAIL to the end of the message.
        case inMessage
        case closed
    }

    /// What the application is asked, with the macros the MTA sent for it.
    public struct Step: Sendable, Equatable {
        public var command: MilterCommand
        /// Macros of this stage and the ones before it (connect's hold for the whole connection).
        public var macros: [String: String]
        /// False when the MTA agreed not to wait for an answer to this step.
        public var expectsReply: Bool
    }

    public private(set) var phase: Phase = .negotiating
    public private(set) var negotiation: MilterNegotiation?
    private var macros: [Milter.Stage: [String: String]] = [:]
    /// What this milter wants of the MTA, offered at negotiation.
    public let wantedActions: Milter.Actions
    public let wantedSteps: Milter.Steps

    public init(wantedActions: Milter.Actions, wantedSteps: Milter.Steps) {
        self.wantedActions = wantedActions
        self.wantedSteps = wantedSteps
    }

    /// Handles one command: the negotiation is answered here (`reply`);
    /// macros are stored (no step); everything else is a step for the
    /// application. A command out of place is an error that ends the connection.
    public mutating func receive(_ command: MilterCommand) throws(MilterProtocolError) -> (step: Step?, reply: MilterResponse?) {
        if phase == .closed { throw MilterProtocolError("a command after QUIT") }
        if case .negotiate(let v, let a, let s) = command {
            guard phase == .negotiating else { throw MilterProtocolError("a second option negotiation") }
            let agreed = try MilterNegotiation.agree(offeredVersion: v, offeredActions: a, offeredSteps: s,
                                                     wantedActions: wantedActions, wantedSteps: wantedSteps)
            negotiation = agreed
            phase = .idle
            return (nil, agreed.response())
        }
        guard phase != .negotiating, let n = negotiation else { throw MilterProtocolError("a command before the option negotiation") }
        switch command {
        case .macros(let stage, let pairs):
            if let stage { macros[stage, default: [:]].merge(pairs.map { ($0.0, $0.1) }) { _, new in new } }
            return (nil, nil)
        case .connect:
            return (step(command, .connect, reply: n.answers(.noReplyConnect)), nil)
        case .helo:
            return (step(command, .helo, reply: n.answers(.noReplyHelo)), nil)
        case .mail:
            // This message's MAIL macros came just before it; the last message's went at its end.
            phase = .inMessage
            return (step(command, .mail, reply: n.answers(.noReplyMail)), nil)
        case .recipient:
            try inMessage("RCPT")
            return (step(command, .recipient, reply: n.answers(.noReplyRecipient)), nil)
        case .data:
            try inMessage("DATA")
            return (step(command, .data, reply: n.answers(.noReplyData)), nil)
        case .header:
            try inMessage("a header")
            return (step(command, .header, reply: n.answers(.noReplyHeader)), nil)
        case .endOfHeaders:
            try inMessage("the end of headers")
            return (step(command, .endOfHeaders, reply: n.answers(.noReplyEndOfHeaders)), nil)
        case .body:
            try inMessage("a body chunk")
            return (step(command, .body, reply: n.answers(.noReplyBody)), nil)
        case .endOfMessage:
            try inMessage("the end of the message")
            phase = .idle
            // The end of message is always answered: it is where modifications go.
            let done = step(command, .endOfMessage, reply: true)
            clearMessageMacros()
            return (done, nil)
        case .abort:
            // The message is over (RSET, or refused): its macros go with it; no answer.
            clearMessageMacros()
            phase = .idle
            return (Step(command: command, macros: [:], expectsReply: false), nil)
        case .unknown:
            return (step(command, .unknown, reply: n.answers(.noReplyUnknown)), nil)
        case .quit:
            phase = .closed
            return (Step(command: command, macros: [:], expectsReply: false), nil)
        case .quitNewConnection:
            // Postfix reuses the milter connection for its next SMTP session: all but the negotiation starts again.
            macros = [:]
            phase = .idle
            return (Step(command: command, macros: [:], expectsReply: false), nil)
        case .negotiate:
            throw MilterProtocolError("unreachable")
        }
    }

    private func inMessage(_ what: String) throws(MilterProtocolError) {
        guard phase == .inMessage else { throw MilterProtocolError("\(what) outside a message (no MAIL first)") }
    }

    private mutating func clearMessageMacros() {
        for s in [Milter.Stage.mail, .recipient, .data, .endOfHeaders, .header, .body, .endOfMessage] { macros[s] = nil }
    }

    /// The macros in force at `stage`: its own over every earlier stage's.
    private func step(_ command: MilterCommand, _ stage: Milter.Stage, reply: Bool) -> Step {
        let order: [Milter.Stage] = [.connect, .helo, .mail, .recipient, .data, .header, .endOfHeaders, .body, .endOfMessage, .unknown]
        var merged: [String: String] = [:]
        for s in order {
            if let m = macros[s] { merged.merge(m) { _, new in new } }
            if s == stage { break }
        }
        return Step(command: command, macros: merged, expectsReply: reply)
    }
}
