/// The envelope of one SMTP transaction as the server has accepted it so far.
public struct Envelope: Sendable, Hashable {
    public var mailFrom: ReversePath
    public var mailParameters: MailParameters
    public var recipients: [Mailbox] = []
    public var recipientParameters: [RcptParameters] = []

    public init(mailFrom: ReversePath, mailParameters: MailParameters) {
        self.mailFrom = mailFrom
        self.mailParameters = mailParameters
    }
}

/// The server side of an SMTP session as a pure state machine: it is told of
/// events (a parsed command, a policy answer, TLS up) and answers with the
/// action the I/O layer must carry out. It owns sequencing (RFC 5321 §4.1.4),
/// limits and the EHLO capability list; it owns no sockets and makes no
/// decisions about content or relaying.
public struct SessionStateMachine: Sendable {
    public enum Phase: Sendable, Equatable {
        /// Connected, greeting sent, no HELO/EHLO yet.
        case greeted
        /// HELO/EHLO accepted, no transaction.
        case ready
        /// MAIL accepted; recipients may follow.
        case transaction
        /// Receiving DATA text.
        case data
        /// Inside a BDAT transaction (RFC 3030), between chunks.
        case bdat
        case closed
    }

    public struct Configuration: Sendable {
        public var hostname: String
        public var limits: SMTPLimits
        public var tlsAvailable: Bool
        public init(hostname: String, limits: SMTPLimits, tlsAvailable: Bool) {
            self.hostname = hostname
            self.limits = limits
            self.tlsAvailable = tlsAvailable
        }
    }

    /// What the I/O layer must do next.
    public enum Action: Sendable, Equatable {
        /// Send this reply; nothing else changes.
        case reply(SMTPReply)
        /// Send this reply and close the connection.
        case replyAndClose(SMTPReply)
        /// Ask the policy about HELO/EHLO, then call `heloAccepted` or answer.
        case checkHelo(String, extended: Bool)
        /// Ask the policy (and the downstream) about the sender.
        case checkMail(ReversePath, MailParameters)
        /// Ask the relay gate, the policy and the downstream about a recipient.
        case checkRecipient(Mailbox, RcptParameters)
        /// Answer 354 and start receiving message text.
        case startData
        /// Receive a BDAT chunk of this size; `last` ends the message.
        case receiveChunk(size: Int, last: Bool)
        /// Read and discard a BDAT chunk, then send the reply (RFC 3030 §3: a
        /// refused BDAT's data must still be consumed).
        case discardChunk(size: Int, SMTPReply)
        /// Abort any downstream transaction, then send the reply.
        case reset(SMTPReply)
        /// Send 220 and start TLS; discard any plaintext already buffered.
        case startTLS
    }

    public let configuration: Configuration
    public private(set) var phase: Phase = .greeted
    public private(set) var heloName: String?
    public private(set) var extended = false
    public private(set) var tlsActive = false
    public private(set) var envelope: Envelope?
    public private(set) var errorCount = 0
    /// Transactions completed in this session, for the audit record and limits.
    public private(set) var transactions = 0

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public var limits: SMTPLimits { configuration.limits }

    // MARK: events

    /// A command line arrived and was parsed (or failed to parse).
    public mutating func receive(_ parsed: Result<SMTPCommand, SMTPReply>) -> Action {
        switch parsed {
        case .failure(let reply):
            return error(reply)
        case .success(let command):
            return receive(command)
        }
    }

    public mutating func receive(_ command: SMTPCommand) -> Action {
        if phase == .closed { return .replyAndClose(.shuttingDown) }
        if phase == .data { return .reply(.badSequence) }  // cannot happen: text is not parsed as commands
        switch command {
        case .helo(let name):
            return .checkHelo(name, extended: false)
        case .ehlo(let name):
            return .checkHelo(name, extended: true)
        case .mail(let path, let params):
            switch phase {
            case .greeted: return error(.needHelo)
            case .transaction, .bdat: return error(.nestedMail)
            default: break
            }
            if let size = params.size, size > limits.messageSize {
                return error(SMTPReply(552, "5.3.4", "Message size exceeds fixed limit"))
            }
            if case .mailbox(let m) = path, m.needsSMTPUTF8, !params.smtpUTF8 {
                return error(SMTPReply(553, "5.6.7", "Non-ASCII sender address requires SMTPUTF8"))
            }
            return .checkMail(path, params)
        case .rcpt(let box, let params):
            guard let env = envelope, phase == .transaction else {
                return error(phase == .greeted ? .needHelo : .needMail)
            }
            if env.recipients.count >= limits.recipients {
                return .reply(.tooManyRecipients)  // RFC 5321 §4.5.3.1.10: 452, not an error
            }
            if box.needsSMTPUTF8, !env.mailParameters.smtpUTF8 {
                return error(SMTPReply(553, "5.6.7", "Non-ASCII recipient address requires SMTPUTF8"))
            }
            return .checkRecipient(box, params)
        case .data:
            guard phase == .transaction, let env = envelope else {
                if phase == .bdat { return error(.badSequence) }
                return error(phase == .greeted ? .needHelo : .needMail)
            }
            guard !env.recipients.isEmpty else { return error(.noValidRecipients) }
            phase = .data
            return .startData
        case .bdat(let size, let last):
            guard phase == .transaction || phase == .bdat, let env = envelope else {
                return .discardChunk(size: size, countError(phase == .greeted ? .needHelo : .needMail))
            }
            guard !env.recipients.isEmpty else {
                return .discardChunk(size: size, countError(.noValidRecipients))
            }
            phase = .bdat
            return .receiveChunk(size: size, last: last)
        case .rset:
            if phase != .greeted { phase = .ready }
            envelope = nil
            return .reset(SMTPReply(250, "2.0.0", "Ok"))
        case .noop:
            return .reply(.ok)
        case .quit:
            phase = .closed
            return .replyAndClose(SMTPReply(221, "2.0.0", "Bye"))
        case .vrfy:
            return .reply(.vrfy)
        case .expn:
            return .reply(SMTPReply(502, "5.5.1", "EXPN not supported"))
        case .help:
            return .reply(.help)
        case .startTLS:
            guard configuration.tlsAvailable else { return error(SMTPReply(502, "5.5.1", "Error: command not implemented")) }
            guard !tlsActive else { return error(.tlsAlreadyActive) }
            guard phase == .greeted || phase == .ready else { return error(.badSequence) }
            return .startTLS
        }
    }

    /// The policy accepted HELO/EHLO: the transaction (if any) is reset
    /// (RFC 5321 §4.1.4) and the greeting or capability list is returned.
    public mutating func heloAccepted(_ name: String, extended: Bool) -> SMTPReply {
        heloName = name
        self.extended = extended
        envelope = nil
        phase = .ready
        guard extended else { return SMTPReply(250, nil, configuration.hostname) }
        var lines = [configuration.hostname, "PIPELINING", "SIZE \(limits.messageSize)", "8BITMIME", "ENHANCEDSTATUSCODES"]
        if configuration.tlsAvailable && !tlsActive { lines.append("STARTTLS") }
        lines += ["SMTPUTF8", "CHUNKING", "DSN"]
        return SMTPReply(code: 250, enhanced: nil, lines: lines)
    }

    public mutating func mailAccepted(_ path: ReversePath, _ params: MailParameters) {
        envelope = Envelope(mailFrom: path, mailParameters: params)
        phase = .transaction
    }

    public mutating func recipientAccepted(_ box: Mailbox, _ params: RcptParameters) {
        envelope?.recipients.append(box)
        envelope?.recipientParameters.append(params)
    }

    /// The message ended (answered either way): back to ready for the next one.
    public mutating func transactionEnded() {
        envelope = nil
        transactions += 1
        if phase != .closed { phase = .ready }
    }

    /// RFC 3207 §4.2: after TLS starts, all prior knowledge is discarded.
    public mutating func tlsStarted() {
        tlsActive = true
        heloName = nil
        extended = false
        envelope = nil
        phase = .greeted
    }

    public mutating func close() { phase = .closed }

    /// Counts an error reply; past the limit the session is closed with 421.
    public mutating func error(_ reply: SMTPReply) -> Action {
        let r = countError(reply)
        return r.code == 421 ? .replyAndClose(r) : .reply(r)
    }

    private mutating func countError(_ reply: SMTPReply) -> SMTPReply {
        errorCount += 1
        if errorCount >= limits.errors {
            phase = .closed
            return .tooManyErrors
        }
        return reply
    }
}
