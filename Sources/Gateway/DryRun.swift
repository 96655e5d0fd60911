import Audit
import Checks
import Classifier
import Heuristics
import Foundation
import Logging
import MailMessage
import Policy
import NIOCore
import Relay
import SMTPProtocol

/// `mxgate test`: one message through every stage of the policy with no
/// network, deciding exactly as a live session would (same `PolicyDriver`).
public struct DryRun {
    public struct Input: Sendable {
        public var clientIP: String
        public var helo: String
        public var from: String
        public var to: [String]
        public var message: [UInt8]
        public var tls = false
        /// The client's verified host name; nil means "no PTR record".
        public var clientName: String?
        public var country: String?
        public var asn: Int?
        /// Answers every DNS query of the run (SPF); nil: no DNS at all.
        public var dnsZone: DNSZone?

        public init(clientIP: String, helo: String, from: String, to: [String], message: [UInt8]) {
            self.clientIP = clientIP
            self.helo = helo
            self.from = from
            self.to = to
            self.message = message
        }
    }

    public struct Report: Sendable {
        public var verdict: AuditRecord.Verdict
        /// The stage that decided (nil when the message would be delivered).
        public var stage: String?
        public var reply: SMTPReply
        /// Every rule that fired: stage, name, action and why.
        public var fired: [(stage: String, rule: FiredRule)]
        /// Per refused recipient: address and reply.
        public var refusedRecipients: [(String, SMTPReply)]
        public var spamScore: Double?
        public var addedHeaders: [String]
        public var record: AuditRecord
        /// Sender authentication the policy asks for but could not run: no zone file to answer its DNS.
        public var authNotChecked = false
    }

    public let policy: PolicySet
    public let gate: RelayGate
    /// The accepted domains, for the heuristics that judge look-alikes.
    let domains: [String]
    public let messageSizeLimit: Int
    /// GeoIP databases from the config: local files, no network.
    var checks = ClientChecks(resolver: nil, geo: nil, asnDatabase: nil)
    /// clamd on a local socket or libclamav, when configured (local, not the network).
    var scanner: VirusScanner?
    var scanFailOpen = false
    /// [auth] trusted_arc_sealers, for DMARC as the gateway evaluates it.
    var trustedARCSealers: [String] = []
    /// The model [classifier] names, read as the gateway reads it (no learning in a dry run).
    var classifier: (SharedClassifier, ClassifierSettings)?

    public init(policy: PolicySet, domains: [String], messageSizeLimit: Int = SMTPLimits().messageSize) {
        self.domains = domains
        self.policy = policy
        self.gate = RelayGate(domains: domains)
        self.messageSizeLimit = messageSizeLimit
    }

    public init(config: GatewayConfig) throws {
        self.init(policy: try Runtime.loadPolicy(config), domains: config.domains, messageSizeLimit: config.limits.messageSize)
        let geo = try config.geoipDatabase.map { try GeoIPDatabase(path: $0) }
        let asn = try config.geoipASNDatabase.map { try GeoIPDatabase(path: $0) }
        checks = ClientChecks(resolver: nil, geo: geo, asnDatabase: asn)
        scanner = try Runtime.makeScanner(config)
        scanFailOpen = config.clamavFailOpen
        trustedARCSealers = config.trustedARCSealers
        if let k = config.classifier, let c = try Runtime.openClassifier(config) { classifier = (c, k) }
    }

    public func run(_ input: Input) async -> Report {
        var facts = SessionFacts(sessionID: "test", clientIP: input.clientIP, clientPort: 0, tls: input.tls)
        if input.dnsZone == nil {
            // No network: no PTR record, and every DNS list counts as not listing.
            facts.dnsChecked = true
            facts.dnsListsOffline = true
        }
        // The same inspection as a live session's, with the network replaced by what the command line states.
        let stated = StatedClientAnalyzer(clientName: input.clientName, country: input.country, asn: input.asn)
        let inspector = Inspector.offline(policy: policy, checks: checks, stated: stated, scanner: scanner, failOpen: scanFailOpen,
                                          dns: input.dnsZone, sealers: trustedARCSealers, classifier: classifier,
                                          domains: domains)
        var logger = Logger(label: "mxgate.test")
        logger.logLevel = .critical  // a failed scan is in the report, as the rule it tempfails
        var driver = PolicyDriver(policy: policy, gate: gate, facts: facts)
        driver.keepFired = true
        var refused: [(String, SMTPReply)] = []
        var accepted: [String] = []

        func report(_ verdict: AuditRecord.Verdict, _ stage: String?, _ reply: SMTPReply, rules: [String], size: Int? = nil) -> Report {
            var r = AuditRecord(event: .transaction, session: "test", clientIP: input.clientIP, helo: input.helo, tls: input.tls,
                                mailFrom: input.from, rcptTo: accepted, verdict: verdict, reply: reply.description)
            r.rules = rules
            r.size = size
            r.spamScore = driver.spamScore
            r.symbols = driver.symbolScores
            r.warnings = driver.warnings
            r.messageID = HeaderBlock(input.message.prefix(65536)).first("Message-ID")
            r.virus = driver.facts.virus
            r.auth = driver.facts.auditAuth
            r.classifier = driver.facts.classifier
            r.signals = driver.facts.signals.keys.sorted()
            r.because = driver.explanations(for: rules)
            r.country = driver.facts.country
            var report = Report(verdict: verdict, stage: stage, reply: reply, fired: driver.fired.map { (stage: $0.0.rawValue, rule: $0.1) },
                                refusedRecipients: refused, spamScore: driver.spamScore, addedHeaders: driver.addedHeaders, record: r)
            report.authNotChecked = input.dnsZone == nil && AuthChecks(policy: policy, config: nil).any
            return report
        }
        func verdict(_ reply: SMTPReply) -> AuditRecord.Verdict { reply.code < 500 ? .tempfailed : .rejected }

        func inspect(_ stage: InspectionStage, _ prepare: (inout InspectionInput) -> Void = { _ in }) async -> Findings {
            var i = InspectionInput(facts: driver.facts, dnsBudget: .infinity, logger: logger)
            prepare(&i)
            return await inspector.inspect(stage, i)
        }

        if case .refuse(let reply, let rules, _, _) = driver.connect(inspected: await inspect(.connect)) {
            return report(verdict(reply), "connect", reply, rules: rules)
        }
        let heloFound = await inspect(.helo) { $0.facts.helo = input.helo }
        if case .refuse(let reply, let rules, _, _) = driver.helo(input.helo, inspected: heloFound) {
            return report(verdict(reply), "helo", reply, rules: rules)
        }
        let path: ReversePath
        if input.from.isEmpty || input.from == "<>" {
            path = .null
        } else {
            guard let box = try? AddressParser.parseMailbox(input.from) else {
                return report(.rejected, "mail", SMTPReply(501, "5.1.7", "Bad sender address syntax"), rules: [])
            }
            path = .mailbox(box)
        }
        var params = MailParameters()
        params.size = input.message.count
        if input.message.count > messageSizeLimit {
            return report(.rejected, "mail", SMTPReply(552, "5.3.4", "Message size exceeds fixed limit"), rules: [])
        }
        let mailFound = await inspect(.mail) {
            $0.facts.mailFrom = path
            $0.facts.mailParameters = params
        }
        if case .refuse(let reply, let rules, _, _) = driver.mail(path, params, inspected: mailFound) {
            return report(verdict(reply), "mail", reply, rules: rules)
        }
        var lastRefusal: (SMTPReply, [String])?
        for to in input.to {
            guard var box = try? AddressParser.parseMailbox(to) else {
                refused.append((to, SMTPReply(501, "5.1.3", "Bad recipient address syntax")))
                continue
            }
            let original = box
            if box.domain.isEmpty, let d = gate.primaryDomain { box.domain = d }
            let rcptFound = await inspect(.rcpt) { [box] in $0.facts.recipient = box }
            let verdict = driver.rcpt(box, original: original, inspected: rcptFound)
            if case .refuse(let reply, let rules, _, _) = verdict {
                refused.append((to, reply))
                lastRefusal = (reply, rules)
                continue
            }
            driver.recipientAccepted(box)
            accepted.append(box.description)
        }
        guard !accepted.isEmpty else {
            let (reply, rules) = lastRefusal ?? (SMTPReply.noValidRecipients, [])
            return report(verdict(reply), "rcpt", reply, rules: rules)
        }
        let text = Self.crlf(input.message)
        let headers = HeaderBlock(text.prefix(65536))
        let body = MessageBody(memoryThreshold: Int.max, tempDirectory: NSTemporaryDirectory())
        try? body.append(ByteBuffer(bytes: text))
        let found = await inspect(.endOfData) {
            $0.headers = headers
            $0.headerBytes = Array(text.prefix(65536))
            $0.body = body
            // A stored message is judged as of when it arrived.
            $0.receivedAt = RFC5322Date.newestReceived(headers.all("Received"))
        }
        let outcome = driver.data(size: text.count, headers: headers, inspected: found)
        switch outcome {
        case .refuse(let reply, let rules, _):
            return report(verdict(reply), "data", reply, rules: driver.rules + rules, size: text.count)
        case .discard:
            return report(.discarded, "data", SMTPReply(250, "2.0.0", "Ok: discarded"), rules: driver.rules, size: text.count)
        case .quarantine:
            return report(.quarantined, "data", SMTPReply(250, "2.0.0", "Ok: quarantined"), rules: driver.rules, size: text.count)
        case .deliver:
            return report(.accepted, nil, SMTPReply(250, "2.0.0", "Ok: would be relayed"), rules: driver.rules, size: text.count)
        }
    }

    /// A .eml file may use LF line ends; on the wire it would be CRLF.
    static func crlf(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 40)
        var prev: UInt8 = 0
        for b in bytes {
            if b == 10 && prev != 13 { out.append(13) }
            out.append(b)
            prev = b
        }
        return out
    }
}

extension DryRun {
    /// The policy as `serve` would load it, for `check`, `test` and `lookup`.
    public static func loadPolicy(_ config: GatewayConfig) throws(PolicyLoadError) -> PolicySet {
        try Runtime.loadPolicy(config)
    }
}

/// `mxgate lookup`: answers like `postmap -q`, choosing the lookup that fits
/// the key (IP, address, domain, or text).
public enum TableLookup {
    public static func lookup(_ table: Table, _ key: String) -> String? {
        switch table {
        case .cidr(let t):
            guard let ip = IPAddress(key), let hit = t.lookup(ip) else { return nil }
            return describe(key, hit, t.path)
        case .list(let t):
            let hit: TableHit?
            if IPAddress(key) != nil { hit = t.lookup(exact: key) } else if key.contains("@") { hit = t.lookup(address: key) } else {
                hit = t.lookup(domain: key)
            }
            return hit.map { describe(key, $0, t.path) }
        case .regexp(let t):
            guard let e = t.firstMatch(key) else { return nil }
            let action = e.action.map { " \($0.name)" } ?? ""
            return "\(key): /\(e.regex.pattern)/ \(e.name) (\(t.path):\(e.line))\(action)"
        }
    }

    static func describe(_ key: String, _ hit: TableHit, _ path: String) -> String {
        "\(key): \(hit.key) (\(path):\(hit.line))" + (hit.value.isEmpty ? "" : " \(hit.value)")
    }
}

extension DryRun {
    public static func formatScore(_ v: Double) -> String { PolicyDriver.score(v) }
}
