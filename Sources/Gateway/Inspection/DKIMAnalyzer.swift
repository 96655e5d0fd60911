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
        Sink(message: DKIMMessage(header: input.headerBytes ?? []), dns: dns, budget: input.dnsBudget)
    }

    private final class Sink: TextSink, @unchecked Sendable {
        let message: DKIMMessage
        let dns: (any DNSLookup)?
        let budget: Double
        let blocks = false
        private var skipper: HeaderSkipper

        init(message: DKIMMessage, dns: (any DNSLookup)?, budget: Double) {
            self.message = message
            self.dns = dns
            self.budget = budget
            skipper = HeaderSkipper(bodyOffset: message.bodyOffset)
        }

        func consume(_ piece: UnsafeRawBufferPointer) {
            guard message.signatureCount > 0, let body = skipper.body(of: piece) else { return }
            message.feedBody(body)
        }

        func finish(readError: Error?) -> Findings {
            message.finishBody()
            return Findings()
        }

        func resolve(_ found: Findings) async -> Findings {
            guard message.signatureCount > 0 else { return Findings(facts: [.dkim([])]) }
            guard let dns else {
                return Findings(facts: [.dkim([AuthCheck(result: "temperror", domain: "", reason: "no DNS resolver")])])
            }
            let started = ContinuousClock.now
            let timeout = budget.isFinite ? max(0.001, budget) : nil
            let results = await message.verify(with: DKIMVerifier(dns: dns, queryTimeout: timeout))
            var out = Findings(facts: [.dkim(results.map {
                AuthCheck(result: $0.result.rawValue, domain: $0.domain, reason: $0.reason, selector: $0.selector)
            })])
            let spent = ContinuousClock.now - started
            out.dnsSeconds = spent.inSeconds
            return out
        }
    }
}

/// The body part of the text's pieces: the text starts with the header
/// section, which the body hashes of DKIM and ARC leave out.
struct HeaderSkipper {
    let bodyOffset: Int?
    private var seen = 0

    init(bodyOffset: Int?) { self.bodyOffset = bodyOffset }

    mutating func body(of piece: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard let start = bodyOffset else { return nil }
        let from = max(0, start - seen)
        seen += piece.count
        return from < piece.count ? UnsafeRawBufferPointer(rebasing: piece[from...]) : nil
    }
}
