import Checks
import Classifier
import Policy

/// Which analyzers a policy needs, built once per configuration (start-up
/// and reload). The order is the order facts are applied in.
extension Inspector {
    /// The live gateway's: client lookups, DNS lists, content.
    static func live(policy: PolicySet, config: GatewayConfig, checks: ClientChecks, scanner: VirusScanner?,
                     classifier: SharedClassifier? = nil, state: SharedState? = nil) -> Inspector {
        var analyzers: [any Analyzer] = []
        // With a country database configured, every record says the client's
        // country (the console searches by it), whether a rule asks or not.
        if policy.needsGeoIP || checks.geo != nil { analyzers.append(GeoIPAnalyzer(country: checks.geo, asn: checks.asnDatabase)) }
        if policy.needsDNS { analyzers.append(ReverseDNSAnalyzer(resolver: checks.resolver)) }
        analyzers += dnsLists(policy: policy, checks: checks, budget: config.dnsBudget)
        let auth = AuthChecks(policy: policy, config: config)
        analyzers += authentication(auth, dns: checks.resolver, receiver: config.hostname, sealers: config.trustedARCSealers)
        analyzers += content(policy: policy, scanner: scanner, failOpen: config.clamavFailOpen, classifier: classifier)
        analyzers += judges(policy: policy, classifier: classifier.flatMap { c in config.classifier.map { (c, $0) } }, domains: config.domains)
        analyzers += config.scorers.map { ExternalScorerAnalyzer(settings: $0) }
        // Last: `greylist` rules at data often look at the score the rest found.
        if let state {
            if policy.greylistStages.contains(.rcpt) { analyzers.append(GreylistRecipientAnalyzer(state: state)) }
            if policy.greylistStages.contains(.data) { analyzers.append(GreylistMessageAnalyzer(state: state)) }
        }
        return Inspector(analyzers)
    }

    /// `mxgate test`'s: no network. GeoIP from local databases; with a zone
    /// file, reverse DNS and DNS lists answered from it; what the command
    /// line states of the client (after, so it wins); with a zone, sender
    /// authentication; the same content analyzers.
    static func offline(policy: PolicySet, checks: ClientChecks, stated: StatedClientAnalyzer, scanner: VirusScanner?,
                        failOpen: Bool, dns: DNSZone? = nil, sealers: [String] = [],
                        classifier: (SharedClassifier, ClassifierSettings)? = nil, domains: [String] = []) -> Inspector {
        var analyzers: [any Analyzer] = []
        if checks.geo != nil || checks.asnDatabase != nil {
            analyzers.append(GeoIPAnalyzer(country: checks.geo, asn: checks.asnDatabase))
        }
        if let dns {
            let zoned = ClientChecks(resolver: dns, geo: checks.geo, asnDatabase: checks.asnDatabase)
            if policy.needsDNS { analyzers.append(ReverseDNSAnalyzer(resolver: dns)) }
            analyzers += dnsLists(policy: policy, checks: zoned, budget: .infinity)
        }
        analyzers.append(stated)
        // Like the DNS lists: with no zone to answer them, SPF, DKIM, ARC and DMARC are not checked (the report says so).
        if let dns { analyzers += authentication(AuthChecks(policy: policy, config: nil), dns: dns, receiver: "localhost", sealers: sealers) }
        analyzers += content(policy: policy, scanner: scanner, failOpen: failOpen, classifier: classifier?.0)
        analyzers += judges(policy: policy, classifier: classifier, domains: domains)
        return Inspector(analyzers)
    }

    /// The classifier, which runs the heuristics for its features and reports
    /// them; without it, the heuristics alone when the policy scores them.
    static func judges(policy: PolicySet, classifier: (SharedClassifier, ClassifierSettings)?, domains: [String]) -> [any Analyzer] {
        if let (c, k) = classifier {
            return [ClassifierAnalyzer(classifier: c, settings: k, localDomains: domains, reportSignals: policy.needsHeuristics)]
        }
        return policy.needsHeuristics ? [HeuristicsAnalyzer(localDomains: domains)] : []
    }

    /// SPF at mail; DKIM, ARC and then DMARC at end of data.
    static func authentication(_ auth: AuthChecks, dns: (any DNSLookup)?, receiver: String, sealers: [String]) -> [any Analyzer] {
        var analyzers: [any Analyzer] = []
        if auth.spf { analyzers.append(SPFAnalyzer(dns: dns, receiver: receiver)) }
        if auth.dkim { analyzers.append(DKIMAnalyzer(dns: dns)) }
        if auth.arc { analyzers.append(ARCAnalyzer(dns: dns)) }
        if auth.dmarc { analyzers.append(DMARCAnalyzer(dns: dns, trustedSealers: Set(sealers))) }
        return analyzers
    }

    /// One analyzer per kind of DNS list the policy asks (client, sender, URI).
    static func dnsLists(policy: PolicySet, checks: ClientChecks, budget: Double) -> [any Analyzer] {
        [DNSList.Target.client, .sender, .uri].compactMap { target in
            let lists = policy.dnsLists.filter { $0.target == target }
            // URI hosts come from the MIME walk, which runs only when a rule needs it.
            guard !lists.isEmpty, target != .uri || policy.needsMIME else { return nil }
            return DNSListAnalyzer(target: target, lists: lists, checks: checks, budget: budget)
        }
    }

    /// Virus scanning and the MIME walk, when a rule looks at them.
    /// The classifier reads the MIME summary too, so it needs the walk.
    static func content(policy: PolicySet, scanner: VirusScanner?, failOpen: Bool, classifier: SharedClassifier?) -> [any Analyzer] {
        var analyzers: [any Analyzer] = []
        if policy.needsVirusScan {
            switch scanner {
            case .clamd(let client)?: analyzers.append(ClamdAnalyzer(client: client, failOpen: failOpen))
            case .embedded(let engine)?: analyzers.append(EmbeddedClamAVAnalyzer(engine: engine, failOpen: failOpen))
            case nil: analyzers.append(MissingScannerAnalyzer())
            }
        }
        if policy.needsMIME || policy.needsHeuristics || classifier != nil { analyzers.append(MIMEAnalyzer()) }
        return analyzers
    }
}

/// Which sender-authentication checks run: those a rule uses, those
/// `[auth]` turns on for every message, and what they need (DMARC needs
/// SPF and DKIM; trusted ARC sealers need ARC).
struct AuthChecks {
    var spf, dkim, arc, dmarc: Bool

    init(policy: PolicySet, config: GatewayConfig?) {
        dmarc = policy.needsDMARC || config?.dmarcAlways == true
        // Greylisting keys a sender whose SPF passes by its domain, not its address (pools).
        spf = policy.needsSPF || config?.spfAlways == true || dmarc || !policy.greylistStages.isEmpty
        dkim = policy.needsDKIM || config?.dkimAlways == true || dmarc
        arc = policy.needsARC || config?.arcAlways == true || (dmarc && !(config?.trustedARCSealers.isEmpty ?? true))
    }

    var any: Bool { spf || dkim || arc || dmarc }
}
