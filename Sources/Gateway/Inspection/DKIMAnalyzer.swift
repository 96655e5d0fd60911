import Auth
import Checks
import Policy

/// DKIM (RFC 6376): every signature (at most `DKIMVerifier.maxSignatures`)
/// verified. The body hashes are computed in the inspection's one read of
/// the text; the keys are looked up after it, inside the DNS budget.
struct DKIMAnalyzer: TextAnalyzer {
    let name = "dkim"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = [.headers, .textStream, .dns]
    /// The resolver, or a zone in `mxgate test --dns-zone`; nil: no DNS.
    let dns: (any DNSLookup)?

    func makeSink(_ input: InspectionInput) -> any TextSink {
        let dns = dns, timeout = input.dnsQueryTimeout
        return BodyHashSink(DKIMMessage(header: input.headerBytes ?? [])) { message in
            guard message.signatureCount > 0 else { return Findings(facts: [.dkim([])]) }
            guard let dns else {
                return Findings(facts: [.dkim([AuthCheck(result: "temperror", domain: "", reason: "no DNS resolver")])])
            }
            let results = await message.verify(with: DKIMVerifier(dns: dns, queryTimeout: timeout))
            return Findings(facts: [.dkim(results.map {
                AuthCheck(result: $0.result.rawValue, domain: $0.domain, reason: $0.reason, selector: $0.selector)
            })])
        }
    }
}
