import Foundation
import MailMessage

/// One thing a heuristic saw, by a stable name the policy scores
/// (`at data match signal NAME score +N`), with the evidence in words for
/// the explanation ("link text shows paypal.com, the link goes to evil.example").
public struct Signal: Sendable, Equatable {
    public var name: String
    public var evidence: String
    public init(_ name: String, _ evidence: String) {
        self.name = name
        self.evidence = evidence
    }
}

/// The SMTP client of a live session, as the relay signals judge the hop
/// that handed the message in; nil when replaying a stored message.
public struct ClientHop: Sendable, Equatable {
    public var helo: String?
    public var ip: String
    public init(helo: String?, ip: String) {
        self.helo = helo
        self.ip = ip
    }
}

/// What the heuristics read: the parsed header section, the MIME walk,
/// when the message arrived (Date is judged against it) and the domains
/// we accept mail for (display names and look-alikes are judged against them).
public struct HeuristicInput: Sendable {
    public var headers: HeaderBlock
    public var mime: MIMESummary
    public var receivedAt: Date
    public var localDomains: [String]
    /// The session's client, when there is one.
    public var client: ClientHop?
    /// The decoded text counted once for every detector.
    let text: TextStats
    /// The decoded Subject, counted likewise.
    let subject: TextStats
    /// Where the text holds the detectors' phrase lists, found in one pass.
    let textHits: PhraseHits
    /// The addresses of From and Reply-To, parsed once for every detector that asks.
    let fromAddresses: [String]
    let replyToAddresses: [String]

    public init(headers: HeaderBlock, mime: MIMESummary, receivedAt: Date, localDomains: [String], client: ClientHop? = nil) {
        self.headers = headers
        self.client = client
        self.mime = mime
        self.receivedAt = receivedAt
        self.localDomains = localDomains.map { $0.lowercased() }
        text = TextStats(mime.text)
        textHits = PhraseHits(text.lower)
        subject = TextStats(headers.first("Subject").map(EncodedWords.decode) ?? "")
        fromAddresses = AddressList.addresses(in: headers.first("From").map(EncodedWords.decode) ?? "")
        replyToAddresses = AddressList.addresses(in: headers.first("Reply-To").map(EncodedWords.decode) ?? "")
    }


    /// A header's first value, encoded words decoded.
    func value(_ name: String) -> String? { headers.first(name).map(EncodedWords.decode) }
}

/// A family of related signals; each lives in its own file.
protocol SignalDetector: Sendable {
    static var names: [String] { get }
    static func detect(_ input: HeuristicInput, into out: inout [Signal])
}

/// Every heuristic, run in one pass over what the MIME walk found.
public enum Heuristics {
    static let detectors: [any SignalDetector.Type] = [
        LinkSignals.self, SenderSignals.self, HeaderSignals.self, BodySignals.self, AttachmentSignals.self, StyleSignals.self,
        MarketingSignals.self, LureSignals.self, BulkSignals.self, EncodingSignals.self, RelaySignals.self, MailerSignals.self,
    ]

    /// Every signal name a policy may use.
    public static let names: Set<String> = Set(detectors.flatMap { $0.names })

    public static func detect(_ input: HeuristicInput) -> [Signal] {
        var out: [Signal] = []
        for d in detectors { d.detect(input, into: &out) }
        // One signal per name: the first evidence explains it.
        var seen = Set<String>()
        return out.filter { seen.insert($0.name).inserted }
    }
}
