import Classifier
import Foundation
import Heuristics
import MailMessage

/// The statistical classifier's verdict as a symbol: CLASSIFIER_SPAM or
/// CLASSIFIER_HAM, its score scaled by how sure the model is (the
/// probability goes in the audit record). Untrained, or unsure, it adds
/// nothing: a guess would only move scores at random.
///
/// The heuristic signals are features of the model, so this analyzer runs
/// the heuristics too, once, and hands them on as facts when the policy
/// scores them (it then takes HeuristicsAnalyzer's place).
struct ClassifierAnalyzer: Analyzer {
    let name = "classifier"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = [.headers, .mime]
    let classifier: SharedClassifier
    let settings: ClassifierSettings
    /// The domains we accept mail for, as HeuristicsAnalyzer's.
    let localDomains: [String]
    /// The policy has `signal` rules: the signals are facts as well as features.
    let reportSignals: Bool

    func analyze(_ input: InspectionInput) async -> Findings {
        guard let headers = input.headers, let mime = input.mime else { return Findings() }
        let signals = Heuristics.detect(HeuristicInput(headers: headers, mime: mime, receivedAt: input.receivedAt ?? Date(),
                                                       localDomains: localDomains, client: input.facts.clientHop))
        let features = MessageFeatures(headers: headers, summary: mime, signals: signals.map(\.name),
                                       dimensionBits: classifier.dimensionBits)
        var out = Findings()
        if reportSignals { out.facts.append(.signals(signals)) }
        out.classified = features
        guard let p = classifier.classify(features, minLearned: settings.minLearned) else { return out }
        out.facts.append(.classifier(p))
        if let s = Self.symbol(p, settings) { out.symbols.append(s) }
        return out
    }
    /// Linear in the distance from the unsure band to certainty.
    static func symbol(_ p: Double, _ k: ClassifierSettings) -> Symbol? {
        let edge = 0.5 + k.unsure
        if p >= edge {
            return Symbol(name: "CLASSIFIER_SPAM", score: Symbol.rounded(k.spamScore * (p - edge) / (1 - edge)))
        }
        if p <= 1 - edge {
            return Symbol(name: "CLASSIFIER_HAM", score: Symbol.rounded(k.hamScore * ((1 - edge) - p) / (1 - edge)))
        }
        return nil
    }
}

extension PolicyDriver {
    /// Autolearn: spam when the score without the classifier's own symbol
    /// is at least `autolearn_spam`; ham when it is at most `autolearn_ham`
    /// and the message is delivered; otherwise nothing. Thresholds far from
    /// the tag line keep the classifier from teaching itself its own mistakes.
    func autolearnClass(_ k: ClassifierSettings, delivered: Bool) -> Bool? {
        let own = symbols.filter { $0.name.hasPrefix("CLASSIFIER_") }.reduce(0) { $0 + $1.score }
        let score = (spamScore ?? 0) - own
        if score >= k.autolearnSpam { return true }
        if delivered && score <= k.autolearnHam { return false }
        return nil
    }
}
