import Auth
import Checks
import MailMessage
import Policy

/// DMARC (RFC 7489, RFC 9989) at end of data, after the text read has
/// verified DKIM and ARC: the From domain's policy and organizational domain
/// by the DNS tree walk, alignment with the SPF result of MAIL and the DKIM
/// signatures that passed, inside what is left of the DNS budget. A chain
/// that passed ARC and whose newest hops were sealed by `trustedSealers`
/// may vouch for a message a forwarder broke (RFC 8617 §7.2).
struct DMARCAnalyzer: Analyzer {
    let name = "dmarc"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = [.headers, .envelope, .dns, .textFindings]
    /// The resolver, or a zone in `mxgate test --dns-zone`; nil: no DNS.
    let dns: (any DNSLookup)?
    /// ARC sealer domains ([auth] trusted_arc_sealers).
    let trustedSealers: Set<String>

    func analyze(_ input: InspectionInput) async -> Findings {
        let facts = input.facts
        // The From fields as received (the session's facts carry headers only when a rule reads them).
        let from = (input.headers?.fields ?? facts.headers).filter { $0.name.lowercased() == "from" }
        let domains = from.flatMap { AddressList.domains(in: $0.value) }
        guard !from.isEmpty else {
            return Findings(facts: [.dmarc(DMARCCheck(result: "none", domain: "", policy: nil, disposition: "none",
                                                      reason: "the message has no From header"))])
        }
        guard let dns else {
            return Findings(facts: [.dmarc(DMARCCheck(result: "temperror", domain: domains.first ?? "", policy: nil,
                                                      disposition: "none", reason: "no DNS resolver"))])
        }
        let started = ContinuousClock.now
        let verifier = DMARCVerifier(dns: dns, queryTimeout: input.dnsQueryTimeout, deadline: input.dnsDeadline(from: started))
        let spf = facts.spf.map { DMARCVerifier.Identifier(result: $0.result, domain: $0.domain) }
        let dkim = (facts.dkim ?? []).filter { !$0.domain.isEmpty }.map { DMARCVerifier.Identifier(result: $0.result, domain: $0.domain) }
        let o = await verifier.evaluate(fromDomains: domains, spf: spf, dkim: dkim, vouches: vouches(facts.arc))
        var out = Findings(facts: [.dmarc(DMARCCheck(result: o.result.rawValue, domain: o.domain, policy: o.policy?.rawValue,
                                                     disposition: o.disposition.rawValue, reason: o.reason))])
        out.dnsSeconds = (ContinuousClock.now - started).inSeconds
        return out
    }

    /// The hops that may vouch: of a chain that passed, the newest ones, for
    /// as long as each was sealed by a trusted sealer (an untrusted hop after
    /// a trusted one could have rewritten what the trusted one saw).
    func vouches(_ arc: ARCCheck?) -> [ARCCheck.Hop] {
        guard let arc, arc.result == "pass", !trustedSealers.isEmpty else { return [] }
        return Array(arc.hops.prefix { trustedSealers.contains($0.sealer) })
    }
}
