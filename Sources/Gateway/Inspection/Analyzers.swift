import Checks
import Policy

/// Which analyzers a policy needs, built once per configuration (start-up
/// and reload). The order is the order facts are applied in.
extension Inspector {
    /// The live gateway's: client lookups, DNS lists, content.
    static func live(policy: PolicySet, config: GatewayConfig, checks: ClientChecks, scanner: VirusScanner?) -> Inspector {
        var analyzers: [any Analyzer] = []
        if policy.needsGeoIP { analyzers.append(GeoIPAnalyzer(country: checks.geo, asn: checks.asnDatabase)) }
        if policy.needsDNS { analyzers.append(ReverseDNSAnalyzer(resolver: checks.resolver)) }
        analyzers += dnsLists(policy: policy, checks: checks, budget: config.dnsBudget)
        if policy.needsSPF || config.spfAlways { analyzers.append(SPFAnalyzer(dns: checks.resolver, receiver: config.hostname)) }
        if policy.needsDKIM || config.dkimAlways { analyzers.append(DKIMAnalyzer(dns: checks.resolver)) }
        return Inspector(analyzers + content(policy: policy, scanner: scanner, failOpen: config.clamavFailOpen))
    }

    /// `mxgate test`'s: no network. GeoIP from local databases; with a zone
    /// file, reverse DNS and DNS lists answered from it; what the command
    /// line states of the client (after, so it wins); SPF; the same content analyzers.
    static func offline(policy: PolicySet, checks: ClientChecks, stated: StatedClientAnalyzer, scanner: VirusScanner?,
                        failOpen: Bool, dns: DNSZone? = nil) -> Inspector {
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
        if policy.needsSPF { analyzers.append(SPFAnalyzer(dns: dns, receiver: "localhost")) }
        if policy.needsDKIM { analyzers.append(DKIMAnalyzer(dns: dns)) }
        return Inspector(analyzers + content(policy: policy, scanner: scanner, failOpen: failOpen))
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
    static func content(policy: PolicySet, scanner: VirusScanner?, failOpen: Bool) -> [any Analyzer] {
        var analyzers: [any Analyzer] = []
        if policy.needsVirusScan {
            switch scanner {
            case .clamd(let client)?: analyzers.append(ClamdAnalyzer(client: client, failOpen: failOpen))
            case .embedded(let engine)?: analyzers.append(EmbeddedClamAVAnalyzer(engine: engine, failOpen: failOpen))
            case nil: analyzers.append(MissingScannerAnalyzer())
            }
        }
        if policy.needsMIME { analyzers.append(MIMEAnalyzer()) }
        return analyzers
    }
}
