import Foundation
import Heuristics
import MailMessage

/// A message as the classifier sees it: the indices of the hashed features
/// it has (each once), and a digest that names it for `--forget`.
///
/// Features (Goodman and Yih's "simple features": presence, not counts):
/// words and word pairs of the decoded text (HTML reduced to text) and of
/// the subject, and the subject's runs of four characters; the names of the header fields present; the From display
/// name and domain, Reply-To's domain; the mailer; the content type and
/// charsets; every link's host, its last two labels and its path words;
/// attachment extensions and declared and sniffed types; the number of
/// Received fields; the heuristic signals the message has. Namespaces keep
/// a word in the subject apart from the same word in the body. The content
/// (subject, text, links, attachments) comes first, how the message was
/// made and sent after it: the model weighs the two parts apart.
public struct MessageFeatures: Sendable, Equatable {
    public var indices: [UInt32]
    /// The first `contentCount` indices are the message's content (subject, text, links, attachments), the rest how it was sent.
    public var contentCount: Int
    public var digest: Digest

    /// Two 64-bit hashes of the subject and decoded text: the same message
    /// learnt twice (or forgotten) is found by this.
    public struct Digest: Hashable, Sendable, Comparable {
        public var a: UInt64
        public var b: UInt64
        public init(a: UInt64, b: UInt64) { self.a = a; self.b = b }
        public static func < (l: Digest, r: Digest) -> Bool { (l.a, l.b) < (r.a, r.b) }
    }

    /// Fields whose words are features too: how the message was made and sent.
    /// A signal's four features (four weights learnt alike): one feature among hundreds moved the sum too little.
    static func signalFeatures(_ name: String) -> [UInt64] { (0..<4).map { featureHash("signal \($0) " + name, ns: NS.flag) } }
    /// Every heuristic signal's, hashed once rather than per message.
    static let signalHashes: [String: [UInt64]] = Dictionary(uniqueKeysWithValues: Heuristics.names.map { ($0, signalFeatures($0)) })

    static let valueHeaders: Set<String> = ["message-id", "x-mailer", "content-type", "mime-version", "x-priority", "x-msmail-priority",
                                            "precedence", "list-unsubscribe", "errors-to", "return-path", "organization", "date"]

    /// How much decoded text is read: enough to judge, bounded in time.
    static let textLimit = 48 * 1024

    private enum NS {
        static let body: UInt64 = 0x1000, bodyPair: UInt64 = 0x2000, subject: UInt64 = 0x3000, subjectPair: UInt64 = 0x4000
        static let headerName: UInt64 = 0x5000, fromName: UInt64 = 0x6000, fromDomain: UInt64 = 0x7000
        static let replyTo: UInt64 = 0x8000, mailer: UInt64 = 0x9000, type: UInt64 = 0xA000, host: UInt64 = 0xB000
        static let urlPath: UInt64 = 0xC000, attachment: UInt64 = 0xD000, received: UInt64 = 0xE000, flag: UInt64 = 0xF000
        static let headerValue: UInt64 = 0x10000, subjectGram: UInt64 = 0x11000
    }

    /// `signals`: the names of the heuristic signals the message has
    /// (Heuristics.detect), features like any other: what the heuristics
    /// see, weighed by what this site's mail taught.
    public init(headers: HeaderBlock, summary: MIMESummary, signals: [String] = [], dimensionBits: Int) {
        var t = Tokenizer()
        // About one feature per three bytes of text (a word and a pair per word): no regrowing.
        t.out.reserveCapacity(min(summary.text.utf8.count, Self.textLimit) / 3 + 256)
        // Only the fields read are decoded (RFC 2047), not the whole section.
        func value(_ name: String) -> String? { headers.first(name).map(EncodedWords.decode) }

        let subject = value("subject") ?? ""
        t.add(subject, ns: NS.subject, pairs: NS.subjectPair, maxWords: 60)
        t.addGrams(subject, ns: NS.subjectGram)
        if subject.isEmpty { t.out.append(featureHash("no-subject", ns: NS.flag)) }
        var text = summary.text
        if text.utf8.count > Self.textLimit { text = String(decoding: text.utf8.prefix(Self.textLimit), as: UTF8.self) }
        t.add(text, ns: NS.body, pairs: NS.bodyPair)

        for url in summary.urls.prefix(60) {
            guard let host = URLExtractor.host(url) else { continue }
            Self.addDomain(host, ns: NS.host, &t)
            if let slash = url.dropFirst(8).firstIndex(of: "/") {
                t.add(String(url[slash...].prefix(200)), ns: NS.urlPath, maxWords: 12)
            }
        }
        t.out.append(featureHash("urls " + String(min(summary.urls.count, 10)), ns: NS.flag))

        for a in summary.attachments.prefix(20) {
            if let name = a.filename?.lowercased(), let dot = name.lastIndex(of: ".") {
                t.out.append(featureHash("ext " + name[dot...].prefix(10), ns: NS.attachment))
            }
            t.out.append(featureHash("type " + a.contentType, ns: NS.attachment))
            if let s = a.sniffedType { t.out.append(featureHash("sniffed " + s, ns: NS.attachment)) }
        }
        let contentEnd = t.out.count
        var received = 0
        for f in headers.fields.prefix(80) {
            let name = f.name.lowercased()
            if name == "received" {
                received += 1
                if received <= 3 { t.add(f.value, ns: NS.headerValue &+ 1, maxWords: 30) }
                continue
            }
            // What filters (ours included) add on the way is not the sender's: a message learnt from a mailbox has them.
            if name.hasPrefix("x-spam-") || name == "authentication-results" || name == "x-virus-scanned" { continue }
            t.out.append(featureHash(name, ns: NS.headerName))
            if Self.valueHeaders.contains(name) { t.add(f.value, ns: NS.headerValue &+ featureHash(name, ns: 0) & 0xFFF0000, maxWords: 20) }
        }
        t.out.append(featureHash(String(min(received, 8)), ns: NS.received))

        if let from = value("from") {
            let display = from.split(separator: "<", maxSplits: 1).first.map(String.init) ?? ""
            if from.utf8.contains(UInt8(ascii: "<")) { t.add(display, ns: NS.fromName, maxWords: 12) }
            for d in AddressList.domains(in: from).prefix(2) { Self.addDomain(d, ns: NS.fromDomain, &t) }
            if let reply = value("reply-to") {
                let rd = Set(AddressList.domains(in: reply)), fd = Set(AddressList.domains(in: from))
                for d in rd.prefix(2) { Self.addDomain(d, ns: NS.replyTo, &t) }
                if rd.isDisjoint(with: fd) { t.out.append(featureHash("reply-to-elsewhere", ns: NS.flag)) }
            }
        } else {
            t.out.append(featureHash("no-from", ns: NS.flag))
        }
        if let mailer = value("x-mailer") ?? value("user-agent") { t.add(mailer, ns: NS.mailer, maxWords: 6) }
        t.out.append(featureHash(value("content-type")?.split(separator: ";").first.map { String($0).trimmingSpaces().lowercased() } ?? "none", ns: NS.type))
        for p in summary.parts.prefix(30) {
            if let cs = p.charset { t.out.append(featureHash("charset " + cs, ns: NS.type)) }
            t.out.append(featureHash("part " + p.contentType, ns: NS.type))
        }
        if summary.problems.isEmpty == false { t.out.append(featureHash("mime-problem", ns: NS.flag)) }

        if t.mixedScript { t.out.append(featureHash("mixed-script", ns: NS.flag)) }
        // Each signal four times over (signalFeatures).
        for name in signals { t.out.append(contentsOf: Self.signalHashes[name] ?? Self.signalFeatures(name)) }

        let mask = UInt64((1 << dimensionBits) - 1)
        (indices, contentCount) = Self.unique(t.out.map { UInt32(truncatingIfNeeded: $0 & mask) }, firstPart: contentEnd)

        var a: UInt64 = 0xCBF2_9CE4_8422_2325
        var b: UInt64 = 0x8422_2325_CBF2_9CE4
        for byte in subject.utf8 { a = (a ^ UInt64(byte)) &* 0x100_0000_01B3 }
        // Over the contiguous bytes (the UTF-8 view's iterator cost as much again); the same values.
        var whole = summary.text
        whole.withUTF8 { bytes in
            for byte in bytes {
                a = (a ^ UInt64(byte)) &* 0x100_0000_01B3
                b = (b &+ UInt64(byte)) &* 0x9E37_79B9_7F4A_7C15
            }
        }
        digest = Digest(a: mix(a), b: mix(b ^ UInt64(summary.text.utf8.count)))
    }

    /// Without repeats, in the order first seen, through an open-addressing
    /// table twice the input's size (a radix sort, which also ordered them,
    /// was a quarter of a classification; the order is not needed: the sum
    /// over a message's weights is the same in any order to within rounding).
    static func unique(_ input: [UInt32]) -> [UInt32] { unique(input, firstPart: input.count).0 }

    /// The same, and how many of those kept came from the first `firstPart`
    /// inputs (one table for both parts: an index in both is kept once, in the first).
    static func unique(_ input: [UInt32], firstPart: Int) -> ([UInt32], Int) {
        guard input.count > 1 else { return (input, min(firstPart, input.count)) }
        var kept = 0
        var size = 64
        while size < input.count * 2 { size <<= 1 }
        let mask = size - 1
        let empty = UInt32.max  // no index reaches it: the space is at most 2^26
        var table = [UInt32](repeating: empty, count: size)
        var out: [UInt32] = []
        out.reserveCapacity(input.count)
        table.withUnsafeMutableBufferPointer { t in
            for (n, v) in input.enumerated() {
                if n == firstPart { kept = out.count }
                var slot = Int(truncatingIfNeeded: (UInt64(v) &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
                while true {
                    let here = t[slot]
                    if here == v { break }
                    if here == empty {
                        t[slot] = v
                        out.append(v)
                        break
                    }
                    slot = (slot + 1) & mask
                }
            }
        }
        return (out, firstPart >= input.count ? out.count : kept)
    }

    /// Direct use, in tests and the benchmark.
    public init(indices: [UInt32], digest: Digest, contentCount: Int? = nil) {
        self.indices = indices
        self.contentCount = contentCount ?? indices.count
        self.digest = digest
    }

    /// A host and its last two labels (the registered domain, for most).
    private static func addDomain(_ d: String, ns: UInt64, _ t: inout Tokenizer) {
        let host = d.lowercased()
        t.out.append(featureHash(host, ns: ns))
        let labels = host.split(separator: ".")
        if labels.count > 2 { t.out.append(featureHash(labels.suffix(2).joined(separator: "."), ns: ns)) }
        if let tld = labels.last { t.out.append(featureHash("tld " + tld, ns: ns)) }
        if labels.count == 4 && labels.allSatisfy({ Int($0) != nil }) { t.out.append(featureHash("ip-literal", ns: ns)) }
    }
}

extension MessageFeatures {
    /// From a whole message as stored (LF or CRLF): what `mxgate learn` and
    /// a quarantine release use; the gateway builds them from the MIME walk
    /// and the heuristics it already ran. The heuristics judge the Date
    /// against the newest Received field, when the message was received,
    /// not against today: mail learnt from an old mailbox is not "old".
    public init(message: [UInt8], localDomains: [String], dimensionBits: Int) {
        var walker = MIMEWalker()
        walker.feed(message)
        let headers = HeaderBlock(message), summary = walker.finish()
        let receivedAt = RFC5322Date.newestReceived(headers.all("Received")) ?? Date()
        let signals = Heuristics.detect(HeuristicInput(headers: headers, mime: summary, receivedAt: receivedAt, localDomains: localDomains))
        self.init(headers: headers, summary: summary, signals: signals.map(\.name), dimensionBits: dimensionBits)
    }
}
