import Auth
import Checks
import Policy

/// ARC (RFC 8617) validation, no sealing: the chain's structure, the newest
/// ARC-Message-Signature (its body hash computed as the message streams
/// in, like DKIM's), every ARC-Seal; how far back the message signatures hold; and,
/// for a chain that passed, who sealed each hop and what it saw, so DMARC
/// can take a trusted sealer's word.
struct ARCAnalyzer: BodyHashingAnalyzer {
    let name = "arc"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = [.headers, .textStream, .dns]
    /// The resolver, or a zone in `mxgate test --dns-zone`; nil: no DNS.
    let dns: (any DNSLookup)?

    func makeMessage(header: [UInt8]) -> ARCChain { ARCChain(header: header) }

    func verify(_ chain: ARCChain, timeout: Double?) async -> Findings {
        if chain.isEmpty { return Findings(facts: [.arc(ARCCheck(result: "none"))]) }
        guard let dns else {
            // Nothing can be verified: the chain counts as not validated, never as passing.
            return Findings(facts: [.arc(ARCCheck(result: "fail", reason: "no DNS resolver to fetch the sealers' keys"))])
        }
        let o = await chain.verify(with: DKIMVerifier(dns: dns, queryTimeout: timeout))
        let hops = o.hops.map { ARCCheck.Hop(instance: $0.instance, sealer: $0.sealer, dmarc: $0.results["dmarc"], headerFrom: $0.headerFrom) }
        return Findings(facts: [.arc(ARCCheck(result: o.result.rawValue, oldestPass: o.oldestPass, hops: hops, reason: o.reason))])
    }
}
