import Foundation
import Heuristics
import Policy

/// The heuristic signals (phishing links, look-alike senders, header
/// anomalies, risky attachments) as facts for `signal` rules; the policy
/// gives each its score (policies/heuristics.policy, fitted by
/// bench/fit_weights.py).
struct HeuristicsAnalyzer: Analyzer {
    let name = "heuristics"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = [.headers, .mime]
    /// The domains we accept mail for: display names and look-alikes are judged against them.
    let localDomains: [String]

    func analyze(_ input: InspectionInput) async -> Findings {
        guard let headers = input.headers, let mime = input.mime else { return Findings() }
        let found = Heuristics.detect(HeuristicInput(headers: headers, mime: mime, receivedAt: input.receivedAt ?? Date(),
                                                     localDomains: localDomains, client: input.facts.clientHop))
        return Findings(facts: [.signals(found)])
    }
}

extension SessionFacts {
    /// The client as the relay signals see the hop that handed the message in.
    var clientHop: ClientHop { ClientHop(helo: helo, ip: clientIP) }
}
