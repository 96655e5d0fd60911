/// How bulk mail was sent. A sender who mails in bulk and means it offers a
/// way out in the header, where mail programs show a button: List-Unsubscribe
/// (RFC 2369, one click by RFC 8058), which Gmail and Yahoo have required of
/// bulk senders since 2024, or List-Id from a mailing list manager. Spam
/// prints an unsubscribe line in the text, for the look of it, and leaves the
/// header out, since a working address would confirm the recipient. The
/// same goes for Precedence: bulk with no list named.
struct BulkSignals: SignalDetector {
    static let names = ["UNSUBSCRIBE_NO_LIST_HEADER", "PRECEDENCE_BULK_NO_LIST"]

    /// The way out, as the text words it (lower case; en, de, fr, es, pt, nl, it).
    static let unsubscribePhrases = [
        "unsubscribe", "opt out", "opt-out", "to be removed", "remove yourself", "removed from our", "abmelden", "abbestellen",
        "désabonner", "désinscri", "darse de baja", "darte de baja", "cancelar suscripción", "cancelar inscrição",
        "descadastr", "uitschrijven", "afmelden", "disiscriviti", "cancellati", "no longer receive", "stop receiving",
        "remove me from", "be removed from", "ne plus recevoir", "no longer wish to receive",
    ]
    static let unsubscribeSet = PhraseSet(unsubscribePhrases)

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let h = input.headers
        guard h.first("List-Unsubscribe") == nil, h.first("List-Id") == nil else { return }
        if let phrase = input.textHits.first(.unsubscribe) {
            out.append(Signal("UNSUBSCRIBE_NO_LIST_HEADER", "the text says \"\(phrase)\" and the header has no List-Unsubscribe"))
        }
        // Precedence: bulk says "sent to many"; a list manager would also have said which list.
        if let p = h.first("Precedence")?.trimmed.lowercased(), p == "bulk" || p == "junk" {
            out.append(Signal("PRECEDENCE_BULK_NO_LIST", "Precedence: \(p) with no List-Id or List-Unsubscribe"))
        }
    }
}
