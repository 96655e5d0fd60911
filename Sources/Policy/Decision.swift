import SMTPProtocol

/// The SMTP stages at which mxgate asks for a decision, milter-style.
public enum Stage: String, Sendable, CaseIterable {
    case connect, helo, mail, rcpt, data
    /// After the whole message is received, before anything reaches the downstream.
    case endOfData = "end-of-data"
}

/// What a check or rule says about the session at one stage. Three-valued at
/// heart, like Postfix restrictions: no opinion (`pass`), accept, or refuse.
public enum Decision: Sendable, Equatable {
    /// No opinion: go on to the next check, and to the default action.
    case pass
    /// Accept at this stage without asking later rules of the same stage.
    case accept(rule: String?)
    case reject(SMTPReply, rule: String)
    case tempfail(SMTPReply, rule: String)
    /// Answer and close the connection (421, or 554 at connect).
    case disconnect(SMTPReply, rule: String)

    /// The reply to send if this decision refuses, nil when it lets the session go on.
    public var refusal: (reply: SMTPReply, rule: String)? {
        switch self {
        case .pass, .accept: return nil
        case .reject(let r, let rule), .tempfail(let r, let rule), .disconnect(let r, let rule): return (r, rule)
        }
    }
}

/// The facts a policy can see at a stage. Later stages see everything the
/// earlier ones saw.
public struct SessionFacts: Sendable {
    public var sessionID: String
    public var clientIP: String
    public var clientPort: Int
    public var helo: String?
    public var tls: Bool
    public var mailFrom: ReversePath?
    public var mailParameters: MailParameters?
    /// The recipient being asked about at the rcpt stage.
    public var recipient: Mailbox?
    public var recipients: [Mailbox]
    /// Size of the received message text, at end-of-data.
    public var messageSize: Int?

    public init(sessionID: String, clientIP: String, clientPort: Int, tls: Bool = false) {
        self.sessionID = sessionID
        self.clientIP = clientIP
        self.clientPort = clientPort
        self.tls = tls
        self.recipients = []
    }
}

/// The seam every later check plugs into: asked once per stage, returns a
/// decision. Implementations must not fail open: an error inside a check is a
/// `tempfail`, never a `pass`.
public protocol PolicyEngine: Sendable {
    func evaluate(_ stage: Stage, _ facts: SessionFacts) async -> Decision
}

/// The policy used until rules are configured: no opinion at any stage, so
/// only the relay gate decides.
public struct OpenPolicy: PolicyEngine {
    public init() {}
    public func evaluate(_ stage: Stage, _ facts: SessionFacts) async -> Decision { .pass }
}
