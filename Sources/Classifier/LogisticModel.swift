import Foundation

/// Online logistic regression on hashed binary features, after Goodman and
/// Yih ("Online Discriminative Spam Filter Training", CEAS 2006): chosen
/// by measurement over naive Bayes, which the TREC spam tracks and our own
/// corpus runs (BENCHMARKS.md) show is the weaker of the two. A message's
/// feature vector is scaled to unit length, so a long message does not
/// weigh more than a short one; its content (subject, text, links,
/// attachments) and how it was sent (header fields, heuristic signals)
/// are scaled each on its own, so the forty header fields of list mail do
/// not drown a spam's three lines (on four corpus splits trained on three
/// quarters: a fifth fewer spam missed, no more ham flagged).
///
/// Learning is "train on near errors" (Sculley's relaxed online SVM idea,
/// as TONE in CRM114): a message already classified right with a margin
/// does not move the weights, so easy spam learnt a thousand times does
/// not drown the rare hard ham. What each message moved is kept by its
/// digest, so `--forget` takes exactly that back out.
public struct LogisticModel: Sendable {
    public let dimensionBits: Int
    public internal(set) var weights: [Float]
    public internal(set) var bias: Double = 0
    public internal(set) var spamLearned = 0
    public internal(set) var hamLearned = 0
    /// Per learnt message: its class and the total step it moved every one of its features (and the bias).
    public internal(set) var learned: [MessageFeatures.Digest: Entry] = [:]

    public struct Entry: Sendable, Equatable {
        public var spam: Bool
        public var step: Float
    }

    /// Tuned on the corpus (bench/accuracy.sh, four different splits):
    /// with the steps only near errors take, a large rate learns a new
    /// kind of spam from one message; 2 and 4 left a third more ham among
    /// the spam at the same recall, 16 overshot.
    public static let rate: Double = 8.0
    /// A ham's step is this many times a spam's: the cost of a false
    /// positive is larger, and the hard ham (newsletters, offers the
    /// reader asked for) are few beside the spam they resemble. 3 and 5
    /// beat 1 on every split; 5 put fewer ham over the line.
    public static let hamWeight: Double = 5.0
    /// No update when the message's log-odds are already this far on its side.
    public static let margin: Double = 2.5

    public init(dimensionBits: Int = 22) {
        precondition((12...26).contains(dimensionBits))
        self.dimensionBits = dimensionBits
        weights = [Float](repeating: 0, count: 1 << dimensionBits)
    }

    /// The log-odds of spam.
    public func logOdds(_ f: MessageFeatures) -> Double {
        guard !f.indices.isEmpty else { return bias }
        var content: Float = 0, sending: Float = 0
        let mask = weights.count - 1  // features hashed for a larger space still land inside this one
        let k = min(f.contentCount, f.indices.count)
        weights.withUnsafeBufferPointer { w in
            f.indices.withUnsafeBufferPointer { x in
                for j in 0..<k { content += w[Int(x[j]) & mask] }
                for j in k..<x.count { sending += w[Int(x[j]) & mask] }
            }
        }
        let (a, b) = Self.scales(f)
        return bias + Double(content * a + sending * b)
    }

    public func probability(_ f: MessageFeatures) -> Double {
        1 / (1 + Self.exp(-logOdds(f)))
    }

    public enum LearnOutcome: Sendable, Equatable {
        case learned
        /// Learnt before as this class: nothing to do.
        case alreadyLearned
        /// Learnt before as the other class: taken back, then learnt as this one.
        case relearned
    }

    /// Learns one message as spam or ham. `passes` above one repeats the
    /// step while the message is still on the wrong side of the margin.
    @discardableResult
    public mutating func learn(_ f: MessageFeatures, spam: Bool, passes: Int = 1) -> LearnOutcome {
        var outcome = LearnOutcome.learned
        if let old = learned[f.digest] {
            if old.spam == spam { return .alreadyLearned }
            _ = forget(f)
            outcome = .relearned
        }
        if spam { spamLearned += 1 } else { hamLearned += 1 }
        var entry = Entry(spam: spam, step: 0)
        for _ in 0..<max(1, passes) {
            guard let step = nearStep(f, spam: spam) else { break }
            apply(f, step: step)
            entry.step += step
        }
        learned[f.digest] = entry
        return outcome
    }

    /// One more step for a message already learnt as this class, when it
    /// is still inside the margin: a later round over a batch (`mxgate
    /// learn --passes`), which settles the weights better than many steps
    /// on each message in turn. What it moves joins the message's entry,
    /// so `forget` still takes all of it back. False when not learnt as `spam`.
    @discardableResult
    public mutating func reinforce(_ f: MessageFeatures, spam: Bool) -> Bool {
        guard var entry = learned[f.digest], entry.spam == spam else { return false }
        guard let step = nearStep(f, spam: spam) else { return true }
        apply(f, step: step)
        entry.step += step
        learned[f.digest] = entry
        return true
    }

    /// The step learning `f` as `spam` takes now, nil when its log-odds are
    /// already past the margin on that side (train on near errors only).
    private func nearStep(_ f: MessageFeatures, spam: Bool) -> Float? {
        let z = logOdds(f)
        if (spam && z >= Self.margin) || (!spam && z <= -Self.margin) { return nil }
        let p = 1 / (1 + Self.exp(-z))
        return Float(Self.rate * ((spam ? 1 : 0) - p) * (spam ? 1 : Self.hamWeight))
    }

    /// Takes back what learning this message did. False when it was never learnt.
    @discardableResult
    public mutating func forget(_ f: MessageFeatures) -> Bool {
        guard let old = learned.removeValue(forKey: f.digest) else { return false }
        apply(f, step: -old.step)
        if old.spam { spamLearned = max(0, spamLearned - 1) } else { hamLearned = max(0, hamLearned - 1) }
        return true
    }

    private mutating func apply(_ f: MessageFeatures, step: Float) {
        guard step != 0 else { return }
        let k = min(f.contentCount, f.indices.count)
        let (a, b) = Self.scales(f)
        let mask = weights.count - 1
        weights.withUnsafeMutableBufferPointer { w in
            for i in f.indices[..<k] { w[Int(i) & mask] += step * a }
            for i in f.indices[k...] { w[Int(i) & mask] += step * b }
        }
        bias += Double(step) * 0.05
    }

    /// What each feature of the content part and of the sending part counts for: each part's vector at unit length.
    private static func scales(_ f: MessageFeatures) -> (Float, Float) {
        let k = min(f.contentCount, f.indices.count)
        return (1 / Float(max(1, k)).squareRoot(), 1 / Float(max(1, f.indices.count - k)).squareRoot())
    }

    /// Features with a weight: the model's real size.
    public var nonZero: Int { weights.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }

    static func exp(_ x: Double) -> Double { Foundation.exp(min(max(x, -40), 40)) }
}
