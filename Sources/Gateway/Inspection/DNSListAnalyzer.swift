import Checks
import Foundation
import MailMessage
import Policy

/// The DNS lists of one kind the policy uses (client IP lists at connect,
/// sender domain lists at mail, URI host lists at end of data), asked all
/// at once within what is left of the message's DNS budget. A lookup the
/// budget cuts short counts as not listed and is named in a warning.
struct DNSListAnalyzer: Analyzer {
    let target: DNSList.Target
    let lists: [DNSList]
    let checks: ClientChecks
    /// The configured budget, for the warning's text.
    let budget: Double
    /// At most this many distinct URI hosts per message go to URI lists.
    static let maxURIHosts = 20

    var name: String { "dns-lists-\(target.rawValue)" }
    var stage: InspectionStage {
        switch target {
        case .client: return .connect
        case .sender: return .mail
        case .uri: return .endOfData
        }
    }
    var needs: AnalyzerNeeds { target == .uri ? [.mime, .dns] : [.envelope, .dns] }

    func values(_ input: InspectionInput) -> [String] {
        switch target {
        case .client:
            return [input.facts.clientIP]
        case .sender:
            guard case .mailbox(let box)? = input.facts.mailFrom, !box.isAddressLiteral else { return [] }
            return [box.domain]
        case .uri:
            var hosts: [String] = []
            for h in (input.mime?.urls ?? []).compactMap(URLExtractor.host) where !hosts.contains(h) && hosts.count < Self.maxURIHosts {
                hosts.append(h)
            }
            return hosts
        }
    }

    func analyze(_ input: InspectionInput) async -> Findings {
        let queries = lists.flatMap { l in values(input).flatMap { l.queries(for: $0) } }
        guard !queries.isEmpty else { return Findings() }
        let started = ContinuousClock.now
        let (answers, unanswered) = await checks.lookupLists(queries, budget: input.dnsBudget)
        let spent = ContinuousClock.now - started
        var out = Findings(facts: [.dnsListAnswers(answers)])
        out.dnsSeconds = spent.inSeconds
        if !unanswered.isEmpty {
            let b = budget.formatted(.number.precision(.fractionLength(0...3)))
            out.warnings.append("DNS budget of \(b)s used up before \(unanswered.joined(separator: ", ")) answered; counted as not listed")
        }
        return out
    }
}
