import Checks
import Classifier
import Foundation
import Heuristics
import Logging
import MailMessage
import Policy
import Relay

/// The points of a session at which analyzers run: each is asked once the
/// session has the facts that stage brings (the client at connect, the
/// sender at mail, one recipient at rcpt, the whole message at end of data).
public enum InspectionStage: String, Sendable, CaseIterable {
    case connect, helo, mail, rcpt, endOfData = "data"
}

/// What an analyzer reads. The inspector uses it to order and feed them:
/// text streamers share one read of the message, MIME readers run after
/// that read, DNS users share the message's DNS budget.
struct AnalyzerNeeds: OptionSet, Sendable, Hashable {
    let rawValue: Int
    init(rawValue: Int) { self.rawValue = rawValue }
    /// Client, HELO, sender and recipients.
    static let envelope = AnalyzerNeeds(rawValue: 1)
    /// The message's header section, parsed.
    static let headers = AnalyzerNeeds(rawValue: 2)
    /// The message text, fed piece by piece (a `TextAnalyzer`).
    static let textStream = AnalyzerNeeds(rawValue: 4)
    /// The message as stored, for engines that want a file or a buffer whole
    /// (libclamav maps it): no read by the inspector.
    static let storedText = AnalyzerNeeds(rawValue: 8)
    /// The MIME summary (parts, decoded text, URLs): runs after the text read.
    static let mime = AnalyzerNeeds(rawValue: 16)
    /// DNS lookups, bounded by what is left of the message's DNS budget.
    static let dns = AnalyzerNeeds(rawValue: 32)
    /// What the text read found (DKIM and ARC results): runs after it, like `.mime`.
    static let textFindings = AnalyzerNeeds(rawValue: 64)
}

/// What one stage of analysis is given. Everything is a snapshot: an
/// analyzer cannot change the session, only report findings.
struct InspectionInput: Sendable {
    /// The session's facts so far (envelope, client lookups, earlier stages).
    var facts: SessionFacts
    var headers: HeaderBlock?
    /// The header section as received (DKIM canonicalizes the raw fields).
    var headerBytes: [UInt8]?
    /// The received message, at end of data.
    var body: MessageBody?
    /// The MIME summary, for analyzers that need `.mime`.
    var mime: MIMESummary?
    /// Seconds of DNS time left for this message ([dns] budget).
    var dnsBudget: Double
    var logger: Logger
    /// The gateway's metrics; nil in dry runs.
    var metrics: GatewayMetrics?
    /// When the message arrived, for the Date heuristics: now, live; in
    /// `mxgate test`, the newest Received field's date (nil: now).
    var receivedAt: Date?
    /// Body hashes the session computed while the text streamed in; nil in dry runs.
    var liveText: LiveBodyHashes?

    init(facts: SessionFacts, dnsBudget: Double, logger: Logger, metrics: GatewayMetrics? = nil) {
        self.facts = facts
        self.dnsBudget = dnsBudget
        self.logger = logger
        self.metrics = metrics
    }
}

/// One named fact an analyzer found. The policy's conditions read them
/// (through `SessionFacts`); a new kind of fact is a new case here and a
/// line in `SessionFacts.apply`.
public enum Fact: Sendable {
    /// Reverse DNS of the client: every PTR name, and the one that resolves back.
    case reverseDNS(names: [String], verified: String?)
    /// A lookup failed temporarily: conditions on it tempfail.
    case dnsFailure(String)
    case country(String?)
    case asn(Int?)
    /// DNS list answers by query name.
    case dnsListAnswers([String: DNSListAnswer])
    /// A virus scan ran: the name found, or why it could not say (fail closed).
    case virusScan(virus: String?, failure: String?)
    case mime(MIMESummary)
    /// SPF for the MAIL FROM identity (or the HELO one for a null sender), and for the HELO identity.
    case spf(AuthCheck, helo: AuthCheck?)
    /// Every DKIM signature's result, in header order (empty: none).
    case dkim([AuthCheck])
    /// The ARC chain's validity and its sealers.
    case arc(ARCCheck)
    /// DMARC for the From domain.
    case dmarc(DMARCCheck)
    /// The classifier's spam probability.
    case classifier(Double)
    /// What the heuristics found.
    case signals([Signal])
    /// An external scorer could not answer and the admin chose to fail closed: spam-score rules tempfail.
    case scorerFailure(String)
    /// What the greylist knows of this attempt (for `greylist` rules).
    case greylist(GreylistCheck)
    /// What a milter mxgate asked answered ([[milters]]).
    case milter(MilterVerdict)
}

/// A scored observation ("symbol", as rspamd calls them); the policy's score
/// thresholds decide what it means.
public struct Symbol: Sendable, Equatable {
    public var name: String
    public var score: Double
    public init(name: String, score: Double) {
        self.name = name
        self.score = score
    }

    /// A computed score (scaled by a probability or a weight) to the hundredth, as it is reported.
    static func rounded(_ v: Double) -> Double { (v * 100).rounded() / 100 }
}

/// What analyzers report: facts, symbols, and warnings for the audit record.
public struct Findings: Sendable {
    public var facts: [Fact] = []
    public var symbols: [Symbol] = []
    public var warnings: [String] = []
    /// Seconds of the DNS budget this analysis used.
    public var dnsSeconds: Double = 0
    /// The message as the classifier saw it, for autolearn once the verdict is known.
    var classified: MessageFeatures?
    /// Header changes milters asked for at end of message, in order: applied to the message relayed.
    var headerEdits: [MilterHeaderEdit] = []

    public init(facts: [Fact] = [], symbols: [Symbol] = [], warnings: [String] = []) {
        self.facts = facts
        self.symbols = symbols
        self.warnings = warnings
    }

    public mutating func merge(_ other: Findings) {
        facts += other.facts
        symbols += other.symbols
        warnings += other.warnings
        classified = other.classified ?? classified
        headerEdits += other.headerEdits
        dnsSeconds = max(dnsSeconds, other.dnsSeconds)  // analyzers of one stage run side by side
    }
}

/// A check that looks at a session or a message and reports what it found;
/// it decides nothing (the policy does). Says what it needs and at which
/// stage it runs, so the inspector can run independent ones concurrently.
protocol Analyzer: Sendable {
    var name: String { get }
    var stage: InspectionStage { get }
    var needs: AnalyzerNeeds { get }
    func analyze(_ input: InspectionInput) async -> Findings
}

/// An analyzer that reads the message text as a stream. It is given a sink
/// per message; the inspector reads the text once and feeds every sink.
protocol TextAnalyzer: Analyzer {
    func makeSink(_ input: InspectionInput) -> any TextSink
}

extension TextAnalyzer {
    func analyze(_ input: InspectionInput) async -> Findings { Findings() }
}

/// Takes the message text piece by piece, in order, then reports. Used by
/// one read at a time (on the session's task, or on the thread pool when a
/// sink blocks), hence `@unchecked Sendable` in the types that conform.
protocol TextSink: AnyObject, Sendable {
    /// True when consuming blocks on I/O (a socket to clamd): the read then
    /// runs on the thread pool, never on an event loop.
    var blocks: Bool { get }
    func consume(_ piece: UnsafeRawBufferPointer)
    /// The text has ended; `readError` says it could not all be read, and
    /// a sink whose verdict would then be a guess (a virus scan) reports a failure.
    func finish(readError: Error?) -> Findings
    /// After the read, on the session's task: what needs more than the text
    /// (DKIM's key lookups) happens here. `found` is what `finish` reported.
    func resolve(_ found: Findings) async -> Findings
}

extension TextSink {
    func resolve(_ found: Findings) async -> Findings { found }
}

extension SessionFacts {
    /// Records one fact where the policy's conditions look for it.
    public mutating func apply(_ fact: Fact) {
        switch fact {
        case .reverseDNS(let names, let verified):
            dnsChecked = true
            ptrNames = names
            clientName = verified
            fcrdns = verified != nil
        case .dnsFailure(let why):
            dnsChecked = true
            dnsFailure = why
        case .country(let c):
            country = c
        case .asn(let a):
            asn = a
        case .dnsListAnswers(let answers):
            dnsListAnswers.merge(answers) { _, new in new }
        case .virusScan(let virus, let failure):
            virusScanned = true
            self.virus = virus
            scanFailure = failure
        case .mime(let summary):
            attachments = summary.attachments.map {
                AttachmentFact(filename: $0.filename, declaredType: $0.contentType, sniffedType: $0.sniffedType, size: $0.size,
                               entries: $0.archive.flatMap { ArchiveInspector.entryNames($0) } ?? [])
            }
            bodyText = summary.text
            urls = summary.urls
        case .spf(let mail, let helo):
            spf = mail
            spfHelo = helo
        case .dkim(let results):
            dkim = results
        case .arc(let check):
            arc = check
        case .dmarc(let check):
            dmarc = check
        case .classifier(let p):
            classifier = p
        case .signals(let found):
            for s in found where signals[s.name] == nil { signals[s.name] = s.evidence }
        case .scorerFailure(let why):
            scoreFailure = why
        case .greylist(let check):
            greylist = check
        case .milter(let v):
            milters[v.milter] = v.verdict
            if v.decides && milterVerdict == nil { milterVerdict = v }
        }
    }
}
