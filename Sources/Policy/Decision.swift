import MailMessage
import SMTPProtocol

/// What the policy says about the session at one stage. Three-valued at
/// heart, like Postfix restrictions: no opinion (`pass`), accept, or refuse;
/// plus the two content verdicts that still answer 250.
public enum Decision: Sendable, Equatable {
    /// No opinion: go on to the next check, and to the default action.
    case pass
    /// Accept at this stage without asking later rules of the same stage.
    case accept(rule: String?)
    case reject(SMTPReply, rule: String)
    case tempfail(SMTPReply, rule: String)
    /// Answer and close the connection (421, or 554 at connect).
    case disconnect(SMTPReply, rule: String)
    /// Answer 250, keep the message in the quarantine, deliver nothing.
    case quarantine(rule: String, reason: String?)
    /// Answer 250 and deliver nothing.
    case discard(rule: String)

    /// The reply to send if this decision refuses, nil when it lets the session go on.
    public var refusal: (reply: SMTPReply, rule: String)? {
        switch self {
        case .pass, .accept, .quarantine, .discard: return nil
        case .reject(let r, let rule), .tempfail(let r, let rule), .disconnect(let r, let rule): return (r, rule)
        }
    }

    public var closesConnection: Bool {
        if case .disconnect = self { return true }
        return false
    }
}

/// One rule that matched, with the reason in words (for `mxgate test` and the log).
public struct FiredRule: Sendable, Equatable {
    public var name: String
    public var action: String
    public var explanation: String
    /// A `warn` rule: it did nothing but say what it would have done.
    public var warnOnly: Bool

    public init(name: String, action: String, explanation: String, warnOnly: Bool) {
        self.name = name
        self.action = action
        self.explanation = explanation
        self.warnOnly = warnOnly
    }
}

/// Everything one stage's evaluation produced.
public struct StageOutcome: Sendable {
    public var decision: Decision = .pass
    public var fired: [FiredRule] = []
    public var scoreDelta: Double = 0
    /// Each `score` that fired, by rule (or table entry) name: the spam symbols.
    public var symbols: [(name: String, score: Double)] = []
    /// Headers to add to the delivered message ("Name: value").
    public var headers: [String] = []
    /// The message is to be tagged as spam (X-Spam-* headers).
    public var tag = false
    /// A `greylist` rule fired: what the greylist said (it refused unless `passes`).
    public var greylist: GreylistCheck?

    public init() {}
}

/// The facts a policy can see at a stage. Later stages see everything the
/// earlier ones saw. DNS and GeoIP facts are filled in by the session before
/// the stage that needs them, so evaluation itself never waits.
public struct SessionFacts: Sendable {
    public var sessionID: String
    /// The client address as text; `clientAddress` is the same, parsed once.
    public var clientIP: String {
        didSet { clientAddress = IPAddress(clientIP) }
    }
    public private(set) var clientAddress: IPAddress?
    public var clientPort: Int
    public var helo: String?
    public var tls: Bool
    public var mailFrom: ReversePath?
    public var mailParameters: MailParameters?
    /// The recipient being asked about at the rcpt stage.
    public var recipient: Mailbox?
    public var recipients: [Mailbox]
    /// Size of the received message text, at data.
    public var messageSize: Int?
    /// Header fields of the message (RFC 2047-decoded values), at data.
    public var headers: [HeaderBlock.Field] = []
    /// Score so far in this transaction (`score` actions add to it).
    public var score: Double = 0
    /// The domain section chosen by the transaction's first recipient.
    public var section: Int?

    // Reverse DNS (filled when the policy uses client-name, ptr or fcrdns).
    public var ptrNames: [String] = []
    public var clientName: String?
    public var fcrdns = false
    /// Set when the DNS lookup failed temporarily: conditions on it tempfail.
    public var dnsFailure: String?
    public var dnsChecked = false

    // MIME (filled at data when a rule looks at attachments or body text).
    public var attachments: [AttachmentFact] = []
    /// Decoded text of the text parts (bounded), for body rules.
    public var bodyText = ""
    /// URLs found in the text and HTML parts.
    public var urls: [String] = []

    // Virus scan (filled at data when the policy uses virus).
    public var virus: String?
    public var virusScanned = false
    /// Set when the scanner failed: `virus` then tempfails (fail closed).
    public var scanFailure: String?

    /// DNS list answers by query name, filled before the stage that asks.
    public var dnsListAnswers: [String: DNSListAnswer] = [:]
    /// `mxgate test` runs without a network: unanswered lists count as not listing.
    public var dnsListsOffline = false

    // Sender authentication (filled at mail when the policy uses spf).
    /// SPF for the MAIL FROM identity (the HELO identity when the sender is null).
    public var spf: AuthCheck?
    /// SPF for the HELO identity, always checked alongside.
    public var spfHelo: AuthCheck?
    /// Every DKIM signature's result, in header order; empty: no signature; nil: not checked.
    public var dkim: [AuthCheck]?
    /// DMARC for the From domain; nil: not evaluated.
    public var dmarc: DMARCCheck?
    /// The ARC chain; nil: not validated.
    public var arc: ARCCheck?
    /// An external scorer failed (fail closed): a spam-score rule is unknown, so it tempfails.
    public var scoreFailure: String?
    /// What the heuristics found: signal name → evidence in words.
    public var signals: [String: String] = [:]
    /// The classifier's spam probability; nil: untrained or not asked.
    public var classifier: Double?
    /// The greylist's answer for this attempt; nil: not looked up (`mxgate test`), which counts as new.
    public var greylist: GreylistCheck?
    /// What each `[[milters]]` entry answered last, by name.
    public var milters: [String: String] = [:]
    /// The milter answer that decides this stage or message (a refusal, discard or quarantine), until the driver takes it.
    public var milterVerdict: MilterVerdict?

    // GeoIP (filled when the policy uses country or asn).
    public var country: String?
    public var asn: Int?

    public init(sessionID: String, clientIP: String, clientPort: Int, tls: Bool = false) {
        self.sessionID = sessionID
        self.clientIP = clientIP
        self.clientAddress = IPAddress(clientIP)
        self.clientPort = clientPort
        self.tls = tls
        self.recipients = []
    }
}

/// An attachment as attachment rules see it.
public struct AttachmentFact: Sendable, Equatable {
    public var filename: String?
    public var declaredType: String
    public var sniffedType: String?
    public var size: Int
    /// File names inside it, when it is a zip archive.
    public var entries: [String]

    public init(filename: String?, declaredType: String, sniffedType: String?, size: Int, entries: [String] = []) {
        self.filename = filename
        self.declaredType = declaredType
        self.sniffedType = sniffedType
        self.size = size
        self.entries = entries
    }

    /// The content says it is a program while the name or declared type says otherwise.
    public var isMismatched: Bool {
        guard let sniffed = sniffedType else { return false }
        let executable = sniffed == "application/x-dosexec" || sniffed == "application/x-executable"
        let declaredExecutable = ["application/x-msdownload", "application/x-dosexec", "application/x-executable",
                                  "application/vnd.microsoft.portable-executable"].contains(declaredType)
        let name = filename?.lowercased() ?? ""
        let namedExecutable = [".exe", ".dll", ".com", ".scr", ".sys", ".cpl", ".bin", ".elf"].contains { name.hasSuffix($0) }
        if executable { return !(declaredExecutable || namedExecutable) }
        // An "image" or "text" that is really an archive or a document container.
        // (Office files are zips by design, so other declared types are not judged.)
        let container = ["application/zip", "application/x-rar", "application/x-7z-compressed", "application/x-ole-storage"].contains(sniffed)
        return container && (declaredType.hasPrefix("image/") || declaredType.hasPrefix("text/"))
    }
}

/// The seam every check plugs into: asked once per stage. Implementations
/// must not fail open: an error inside a check is a tempfail, never a pass.
public protocol PolicyEngine: Sendable {
    func evaluate(_ stage: PolicyStage, _ facts: SessionFacts) -> StageOutcome
}

/// The policy used when no rules are configured: no opinion at any stage,
/// so only the relay gate and the limits decide.
public struct OpenPolicy: PolicyEngine {
    public init() {}
    public func evaluate(_ stage: PolicyStage, _ facts: SessionFacts) -> StageOutcome { StageOutcome() }
}
