/// The phrase lists the detectors look for in the decoded text, searched
/// together in one pass. Searched one list at a time, the six passes over
/// up to 32 KB of text were a quarter of the heuristics' time; the hits of
/// each list come out as its own pass would have found them, in the same order.
enum TextPhrases {
    /// Which list; the raw value indexes `sets`.
    enum List: Int, CaseIterable {
        case credential, unsubscribe, lure, coin, action, marketing
    }

    static let sets: [PhraseSet] = [BodySignals.credentialSet, BulkSignals.unsubscribeSet, LureSignals.lureSet, LureSignals.coinSet,
                                    LureSignals.actionSet, MarketingSignals.phraseSet]
    /// The lists one after another: a phrase in two lists is in here twice and found for each.
    static let union = PhraseSet(sets.flatMap(\.phrases))
    /// For each phrase of `union`, its list and its index in that list.
    static let owner: [(list: Int, index: Int)] = sets.enumerated().flatMap { l, set in set.phrases.indices.map { (l, $0) } }
}

/// Where the text holds each list's phrases: per list, the phrase's index
/// in its list and where in the lower-cased text it ends, in text order.
struct PhraseHits: Sendable {
    private var byList: [[(phrase: Int, end: Int)]]

    init(_ lower: [UInt8]) {
        var byList = [[(phrase: Int, end: Int)]](repeating: [], count: TextPhrases.sets.count)
        TextPhrases.owner.withUnsafeBufferPointer { owner in
            TextPhrases.union.forEachMatch(in: lower) { n, end in
                let o = owner[n]
                byList[o.list].append((o.index, end))
            }
        }
        self.byList = byList
    }

    func forEach(_ list: TextPhrases.List, _ body: (_ phrase: Int, _ end: Int) -> Void) {
        for h in byList[list.rawValue] { body(h.phrase, h.end) }
    }

    /// The indices of the list's phrases the text holds, each once.
    func matches(_ list: TextPhrases.List) -> Set<Int> { Set(byList[list.rawValue].map(\.phrase)) }

    /// The list's first phrase (by its place in the list) the text holds.
    func first(_ list: TextPhrases.List) -> String? {
        byList[list.rawValue].map(\.phrase).min().map { TextPhrases.sets[list.rawValue].phrases[$0] }
    }
}
