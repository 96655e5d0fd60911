import Foundation

/// `[classifier]`: the built-in statistical classifier. On when `model`
/// names a file; it says nothing until `min_learned` of spam and of ham
/// have been learnt.
public struct ClassifierSettings: Sendable, Equatable {
    /// The model file (embedded storage).
    public var model: String
    /// Fewer spam or ham learnt than this: no verdict at all.
    public var minLearned = 50
    /// The symbol's score at probability 1 (CLASSIFIER_SPAM) and 0 (CLASSIFIER_HAM), scaled in between.
    public var spamScore = 8.0
    public var hamScore = -6.0
    /// Probabilities within this distance of 0.5 give no symbol: the classifier is unsure.
    public var unsure = 0.05
    /// Learn by itself from mail whose score (without the classifier's own)
    /// is at least `autolearnSpam` (spam) or at most `autolearnHam` and delivered (ham).
    public var autolearn = false
    public var autolearnSpam = 12.0
    public var autolearnHam = -2.0
    /// `mxgate quarantine release` learns the released message as ham.
    public var learnReleased = true
    /// Hashed feature space: 2^bits weights (22: 16 MB in memory at most).
    public var dimensionBits = 22

    public init(model: String) { self.model = model }
}

extension ConfigReader {
    static let classifierKeys: Set<String> = [
        "model", "min_learned", "spam_score", "ham_score", "unsure", "autolearn", "autolearn_spam", "autolearn_ham",
        "learn_released", "dimension_bits",
    ]

    mutating func readClassifier(_ s: inout Section, _ c: inout GatewayConfig) {
        guard let model = string(&s, "model") else {
            if !s.table.keys.isEmpty { error(s.table.keyPositions.values.first ?? TOMLPosition(line: 1, column: 1), "[classifier] needs model = \"PATH\" (the model file)") }
            return
        }
        var k = ClassifierSettings(model: c.resolve(model))
        if let n = integer(&s, "min_learned") { k.minLearned = n }
        if let v = number(&s, "spam_score", min: 0) { k.spamScore = v }
        if let v = number(&s, "ham_score", max: 0) { k.hamScore = v }
        if let v = number(&s, "unsure", min: 0, max: 0.49) { k.unsure = v }
        if let b = bool(&s, "autolearn") { k.autolearn = b }
        if let v = number(&s, "autolearn_spam") { k.autolearnSpam = v }
        if let v = number(&s, "autolearn_ham") { k.autolearnHam = v }
        if let b = bool(&s, "learn_released") { k.learnReleased = b }
        if let n = integer(&s, "dimension_bits", min: 12) {
            if n > 26, let p = s.table["dimension_bits"]?.position { error(p, "[classifier] dimension_bits must be 12 to 26") } else { k.dimensionBits = n }
        }
        c.classifier = k
    }

    /// A number (integer or float) within bounds.
    mutating func number(_ s: inout Section, _ key: String, min: Double = -.infinity, max: Double = .infinity) -> Double? {
        guard let n = s.table[key] else { return nil }
        let v: Double
        switch n.value {
        case .integer(let i): v = Double(i)
        case .float(let f): v = f
        default:
            error(n.position, "[\(s.name)] \(key) must be a number, not \(n.value.typeName)")
            return nil
        }
        guard v >= min && v <= max else {
            error(n.position, "[\(s.name)] \(key) must be \(max == .infinity ? "at least \(min)" : min == -.infinity ? "at most \(max)" : "between \(min) and \(max)")")
            return nil
        }
        return v
    }
}
