import Auth
import Checks
import Policy

/// DKIM (RFC 6376): every signature (at most `DKIMVerifier.maxSignatures`)
/// verified. The body hashes are computed while the message streams in
/// (or in the inspection's one read of the text, for `mxgate test`); the
/// keys are looked up after it, inside the DNS budget.
struct DKIMAnalyzer: BodyHashingAnalyzer {
    let name = "dkim"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = [.headers, .textStream, .dns]
    /// The resolver, or a zone in `mxgate test --dns-zone`; nil: no DNS.
    let dns: (any DNSLookup)?

    func makeMessage(header: [UInt8]) -> DKIMMessage { DKIMMessage(header: header) }

    func verify(_ message: DKIMMessage, timeout: Double?) async -> Findings {
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
