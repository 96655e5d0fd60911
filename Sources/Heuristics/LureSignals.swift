/// Money held out to the reader: a balance, bonus, prize or payout with an
/// amount beside it ("Ihr Guthaben von 6400,00 € steht zur Abholung
/// bereit", "claim your 500 USDT bonus"). The lure of payout phishing and
/// prize spam in every language; a bill or a receipt names an amount the
/// reader owes or paid, not one waiting for them, and rarely with these
/// words. Measured on the corpus: 27 spam and phishing messages to 2 ham.
struct LureSignals: SignalDetector {
    static let names = ["BALANCE_CLAIM", "CRYPTO_LURE", "SUBJECT_ACCOUNT_ALERT"]

    /// What a phishing subject says to make the reader act before thinking:
    /// the account is at risk or blocked, a payment or a notice is due, a
    /// reward or a parcel waits (lower case; en, pt, es, de, fr, nl). Each
    /// was measured on the corpus's subjects: among 3,017 ham, two or three
    /// subjects say any of them; "package", "document", "alert" and "login",
    /// which ham subjects say often, are left out.
    static let alertPhrases = [
        "unusual sign", "unusual activity", "suspicious activity", "security notice", "security alert", "verify", "verification", "your account",
        "account suspended", "suspended", "limited", "action required", "final notice", "payment successful", "payment failed",
        "payment declined", "reward", "gift card", "shipment", "parcel",
        "sua conta", "regularize", "pendente", "pendência", "vencendo", "vencimento", "boleto", "fatura", "intimação", "notificação",
        "bloqueado", "bloqueio", "aviso", "acesso", "datos de acceso", "su cuenta", "suspendida", "suspensa", "verifique",
        "ihr konto", "konto", "zahlung", "bestätigen", "gesperrt", "votre compte", "suspendu", "uw account", "uw rekening", "geblokkeerd",
    ]
    static let alertSet = PhraseSet(alertPhrases)

    /// A coin, a token or a wallet maker's name, and what phishing wants done
    /// with it (a wallet to connect, a phrase to re-enter, a withdrawal or an
    /// airdrop to claim): wallet drainers and fake exchange notices. Not the
    /// bare word crypto, which is also cryptography.
    static let coinWords = [
        "bitcoin", "bitcoins", "btc", "usdt", "ethereum", "metamask", "trust wallet", "trustwallet", "coinbase", "binance",
        "kucoin", "blockchain", "cryptocurrency", "cryptocurrencies", "crypto wallet", "tether", "ledger live", "phantom wallet",
    ]
    static let coinSet = PhraseSet(coinWords)
    static let actionWords = [
        "wallet", "seed phrase", "recovery phrase", "secret phrase", "withdraw", "withdrawal", "airdrop", "claim", "deposit",
    ]
    static let actionSet = PhraseSet(actionWords)

    /// Words for money waiting for the reader (lower case; en, de, pt, es, fr, it, nl).
    static let lureWords = [
        "balance", "bonus", "payout", "reward", "prize", "winnings", "jackpot", "guthaben", "gewinn", "auszahlung",
        "saldo", "prêmio", "premio", "solde", "beloning", "tegoed", "vincita",
    ]
    static let lureSet = PhraseSet(lureWords)

    /// How far after the word the amount may come (bytes, within one sentence).
    static let window = 40

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let text = input.text.lower
        var found: (word: Int, end: Int)?
        input.textHits.forEach(.lure) { n, end in
            // A whole word: "prime" in "primer" or "balance" in "imbalance" is not a lure.
            guard found == nil, isWholeWord(text, lureWords[n], end: end) else { return }
            if amountFollows(text, from: end) { found = (n, end) }
        }
        if let coin = firstWord(.coin, input), let act = firstWord(.action, input) {
            out.append(Signal("CRYPTO_LURE", "\(coin) and \(act): a wallet or a coin to act on"))
        }
        if let alert = firstWholeWord(alertSet, in: input.subject) {
            out.append(Signal("SUBJECT_ACCOUNT_ALERT", "the subject says \"\(alert)\": an account, a payment or a notice to act on"))
        }
        if let f = found {
            let start = f.end - lureWords[f.word].utf8.count
            let shown = String(decoding: text[start..<min(text.count, f.end + window)], as: UTF8.self)
            out.append(Signal("BALANCE_CLAIM", "money waiting for the reader (\(shown))"))
        }
    }

    /// The list's first whole word or phrase in the subject, else in the text (the list's hits there).
    static func firstWord(_ list: TextPhrases.List, _ input: HeuristicInput) -> String? {
        let set = TextPhrases.sets[list.rawValue]
        if let found = firstWholeWord(set, in: input.subject) { return found }
        var found: String?
        input.textHits.forEach(list) { n, end in
            if found == nil, isWholeWord(input.text.lower, set.phrases[n], end: end) { found = set.phrases[n] }
        }
        return found
    }

    /// The first phrase of `set` that `t` holds as a whole word or phrase.
    static func firstWholeWord(_ set: PhraseSet, in t: TextStats) -> String? {
        var found: String?
        t.forEachMatch(set) { n, end in
            if found == nil, isWholeWord(t.lower, set.phrases[n], end: end) { found = set.phrases[n] }
        }
        return found
    }

    /// `phrase`, ending at `end` in `t`, has no letter on either side.
    static func isWholeWord(_ t: [UInt8], _ phrase: String, end: Int) -> Bool {
        wordEdge(t, end) && wordEdge(t, end - phrase.utf8.count - 1)
    }

    /// The byte at `i` is not a letter (or `i` is outside the text).
    static func wordEdge(_ t: [UInt8], _ i: Int) -> Bool {
        guard i >= 0 && i < t.count else { return true }
        let b = t[i]
        return !((b >= 97 && b <= 122) || b >= 0x80)
    }

    /// A currency amount within `window` bytes, before the sentence ends:
    /// a digit next to €, $ or £ (a space between allowed), or followed by
    /// a currency's code or name.
    static func amountFollows(_ t: [UInt8], from start: Int) -> Bool {
        let end = min(t.count, start + window)
        var i = start
        while i < end {
            let b = t[i]
            if b == 33 || b == 63 || (b == 46 && i + 1 < t.count && t[i + 1] == 32) { return false }  // ! ? ". "
            if isCurrencySign(t, i) {
                if digitNear(t, i - 1, step: -1) || digitNear(t, i + signLength(t, i), step: 1) { return true }
            } else if b >= 48 && b <= 57 {
                var j = i
                while j < t.count && ((t[j] >= 48 && t[j] <= 57) || t[j] == 46 || t[j] == 44) { j += 1 }
                if j < t.count && t[j] == 32 { j += 1 }
                for code in currencyCodes where j + code.count <= t.count && t[j..<(j + code.count)].elementsEqual(code) {
                    let after = j + code.count
                    if after >= t.count || !((t[after] >= 97 && t[after] <= 122)) { return true }
                }
                i = max(j, i + 1)
                continue
            }
            i += 1
        }
        return false
    }

    static let currencyCodes: [[UInt8]] = ["eur", "euro", "euros", "usd", "usdt", "btc", "eth", "dollars", "gbp", "chf", "reais"].map { Array($0.utf8) }

    /// "$" and "£" (C2 A3) and "€" (E2 82 AC).
    static func isCurrencySign(_ t: [UInt8], _ i: Int) -> Bool {
        if t[i] == 36 { return true }
        if t[i] == 0xC2 && i + 1 < t.count && t[i + 1] == 0xA3 { return true }
        return t[i] == 0xE2 && i + 2 < t.count && t[i + 1] == 0x82 && t[i + 2] == 0xAC
    }

    static func signLength(_ t: [UInt8], _ i: Int) -> Int { t[i] == 36 ? 1 : t[i] == 0xC2 ? 2 : 3 }

    /// A digit at `i`, or one space further in the direction of `step`.
    static func digitNear(_ t: [UInt8], _ i: Int, step: Int) -> Bool {
        func digit(_ k: Int) -> Bool { k >= 0 && k < t.count && t[k] >= 48 && t[k] <= 57 }
        if digit(i) { return true }
        return i >= 0 && i < t.count && t[i] == 32 && digit(i + step)
    }
}
