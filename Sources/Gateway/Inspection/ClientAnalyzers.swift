import Checks
import Policy

/// Reverse DNS of the client (PTR names and the one confirmed forward), for
/// client-name, ptr and fcrdns conditions.
struct ReverseDNSAnalyzer: Analyzer {
    let name = "reverse-dns"
    let stage = InspectionStage.connect
    let needs: AnalyzerNeeds = [.envelope, .dns]
    let resolver: (any DNSLookup)?

    func analyze(_ input: InspectionInput) async -> Findings {
        guard let resolver, let ip = IPAddress(input.facts.clientIP) else {
            return Findings(facts: [.dnsFailure("no resolver")])
        }
        switch await resolver.reverse(ip) {
        case .success(let r): return Findings(facts: [.reverseDNS(names: r.names, verified: r.verified)])
        case .failure(let e): return Findings(facts: [.dnsFailure(e.description)])
        }
    }
}

/// Country and autonomous system of the client from local GeoIP databases.
struct GeoIPAnalyzer: Analyzer {
    let name = "geoip"
    let stage = InspectionStage.connect
    let needs: AnalyzerNeeds = .envelope
    let country: GeoIPDatabase?
    let asn: GeoIPDatabase?

    func analyze(_ input: InspectionInput) async -> Findings {
        let ip = input.facts.clientIP
        return Findings(facts: [.country(country?.country(ip)), .asn((asn ?? country)?.asn(ip))])
    }
}

/// `mxgate test`: what the command line says of the client (its verified
/// name, country, AS number) stands in for the network's answers. Listed
/// after the GeoIP analyzer, so a stated country wins over the database.
struct StatedClientAnalyzer: Analyzer {
    let name = "stated-client"
    let stage = InspectionStage.connect
    let needs: AnalyzerNeeds = .envelope
    var clientName: String?
    var country: String?
    var asn: Int?

    func analyze(_ input: InspectionInput) async -> Findings {
        var out = Findings()
        if let clientName { out.facts.append(.reverseDNS(names: [clientName], verified: clientName)) }
        if let country { out.facts.append(.country(country)) }
        if let asn { out.facts.append(.asn(asn)) }
        return out
    }
}
