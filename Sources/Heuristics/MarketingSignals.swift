import MailMessage

/// Bulk advertising read as a whole rather than word by word. One phrase
/// ("no obligation", "order now") proves nothing, a newsletter the
/// recipient asked for has a few; a pitch stacks them. So the signals are
/// how many different phrases of the trade the subject and text hold (2 to
/// 3, 4 to 7, 8 and more: each level its own fitted score), as SpamAssassin's
/// hundreds of small body rules add up. Also the type advertising shouts in
/// (big and red fonts), words spelled out letter by letter to get past
/// filters ("V 1 A G R A"), prices, a text that keeps saying "you", and a
/// subject that speaks to the reader or gives a percentage.
struct MarketingSignals: SignalDetector {
    static let names = ["SPAM_PHRASES_2", "SPAM_PHRASES_4", "SPAM_PHRASES_8", "HTML_LOUD_FONTS", "BODY_SPACED_LETTERS", "BODY_PRICES",
                        "BODY_ADDRESSES_READER", "SUBJECT_ADDRESSES_READER", "SUBJECT_PERCENT"]

    /// The trade's phrases, lower case with single spaces, by theme. Chosen
    /// from what bulk mail has said for twenty years, not from one corpus:
    /// each counts once, and only their number is scored.
    static let phrases = [
        // removal and compliance boilerplate
        "to be removed", "remove yourself", "removal instructions", "to unsubscribe from this", "this is not spam",
        "this is not a spam", "not unsolicited", "one-time mailing", "one time mailing", "bill 1618", "you are receiving this",
        "you have received this", "opt-in", "opted in", "opt out", "opt-out", "no longer wish to receive",
        "do not wish to receive", "wish to be removed", "future mailings", "further mailings", "sent in compliance",
        "email marketing", "bulk email", "mass email", "email addresses", "this advertisement", "this ad is",
        // the offer
        "no obligation", "free quote", "free consultation", "free trial", "free gift", "free bonus", "free information",
        "free info", "absolutely free", "100% free", "completely free", "order now", "order today", "buy now", "call now",
        "call today", "toll free", "toll-free", "act now", "act today", "don't delay", "limited time", "offer expires",
        "special offer", "exclusive offer", "special promotion", "while supplies last", "money back", "money-back",
        "satisfaction guaranteed", "risk free", "risk-free", "no risk", "lowest price", "lowest prices", "best price",
        "best prices", "lowest rates", "best rates", "fraction of the price", "fraction of the cost", "why pay more",
        "save up to", "% off", "huge discount", "wholesale price", "credit cards accepted", "major credit cards",
        "no credit check", "no hidden", "no catch", "no strings attached", "what are you waiting for", "click here",
        "click below", "click the link below", "visit our website", "visit our web site", "once in a lifetime",
        "apply now", "apply online", "sign up free", "join now", "you have been selected", "you've been selected",
        "you have been chosen", "congratulations", "claim your", "cash bonus", "last chance", "final notice",
        "don't miss", "exclusive deal", "limited-time", "incredible offer", "unbelievable",
        // money and business
        "make money", "earn money", "extra income", "extra cash", "additional income", "financial freedom",
        "be your own boss", "work from home", "home based business", "home-based business", "business opportunity",
        "multi-level marketing", "network marketing", "mlm", "residual income", "get paid", "weekly income",
        "financial independence", "income opportunity", "start your own business", "no experience", "passive income",
        "investment opportunity", "forex", "bitcoin", "cryptocurrency", "per week", "per month", "guaranteed",
        // finance
        "mortgage rate", "refinance", "refinancing", "home loan", "debt consolidation", "consolidate your",
        "eliminate debt", "get out of debt", "credit card debt", "bad credit", "credit rating", "credit report",
        "pre-approved", "preapproved", "low interest", "interest rates", "lower your payments", "monthly payment",
        "cash advance", "payday loan", "insurance quote", "life insurance", "auto insurance", "stock alert", "strong buy",
        "investor alert", "penny stock", "hot stock", "extended warranty",
        // health, pharmacy and adult
        "viagra", "cialis", "levitra", "pharmacy", "no prescription", "without prescription", "prescription drugs",
        "generic drugs", "lose weight", "weight loss", "diet pill", "burn fat", "human growth hormone", "anti-aging",
        "penis", "enlargement", "erection", "libido", "herbal", "all natural", "doctor approved", "fda approved",
        "miracle", "our price", "bestsellers", "hot singles", "meet singles", "lonely",
        // goods
        "replica watch", "designer replica", "rolex", "designer watches", "luxury watches", "oem software", "cheap software", "university diploma", "diplomas",
        "online degree", "college degree", "ink cartridge", "timeshare", "online casino", "free spins", "gift card",
        // the address and the tale
        "dear friend", "dear sir", "dear valued customer", "valued customer", "dear beneficiary", "next of kin",
        "million dollars", "united states dollars", "us$", "strictly confidential", "mutual benefit", "god bless",
        "late husband", "barrister", "foreign partner", "modalities", "you have won", "winning number",
        // this decade's pitches: miracle cures, crypto windfalls, rewards waiting
        "blood sugar", "diabetes", "hearing aid", "keto", "cbd", "gummies", "weird trick", "doctors hate", "usdt",
        "crypto wallet", "withdrawal", "welcome bonus", "free shipping", "your reward", "claim now", "you've won",
        "winner", "prize", "survey reward", "loyalty program", "points expire",
        // the same pitches in the languages bulk mail most often arrives in besides English
        "gratis", "kostenlos", "gewonnen", "gutschein", "jetzt sichern", "auszahlung", "angebot", "rabatt",
        "grátis", "clique aqui", "promoção", "desconto", "parabéns", "prêmio", "resgate", "liberado",
        "haga clic", "descuento", "felicidades", "premio", "sorpresa", "gratuit", "cliquez ici", "félicitations",
        "gagné", "offre spéciale", "klik hier", "gefeliciteerd", "aanbieding", "clicca qui", "offerta", "congratulazioni",
    ]

    static let phraseSet = PhraseSet(phrases)

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        var found = input.textHits.matches(.marketing)
        let subject = input.value("Subject") ?? ""
        let subjectText = input.subject
        found.formUnion(subjectText.matches(phraseSet))
        let shown = found.sorted().prefix(4).map { "\"\(phrases[$0])\"" }.joined(separator: ", ")
        // One level fires, the highest reached: each is scored on its own, and none adds to another.
        if let level = [8, 4, 2].first(where: { found.count >= $0 }) {
            out.append(Signal("SPAM_PHRASES_\(level)", "\(found.count) phrases of bulk advertising, such as \(shown)"))
        }
        if input.mime.loudFonts >= 2 {
            out.append(Signal("HTML_LOUD_FONTS", "\(input.mime.loudFonts) <font> tags in large type or red"))
        }
        let style = Pitch(input.text.lower)
        if style.spacedRuns >= 2 { out.append(Signal("BODY_SPACED_LETTERS", "\(style.spacedRuns) words spelled out letter by letter")) }
        if style.prices >= 3 { out.append(Signal("BODY_PRICES", "\(style.prices) prices ($, €, £ and a figure)")) }
        if style.words >= 40 && style.you * 100 >= style.words * 5 {
            out.append(Signal("BODY_ADDRESSES_READER", "\(style.you) of \(style.words) words are you or your"))
        }
        let subjectWords = Pitch(subjectText.lower)
        if subjectWords.you > 0 { out.append(Signal("SUBJECT_ADDRESSES_READER", "the subject speaks to the reader (\(subject.prefix(40)))")) }
        if percent(subject) { out.append(Signal("SUBJECT_PERCENT", "the subject gives a percentage (\(subject.prefix(40)))")) }
    }

    /// "50% off", "up to 70 %".
    static func percent(_ s: String) -> Bool {
        let b = Array(s.utf8)
        for (i, c) in b.enumerated() where c == 37 {
            var j = i - 1
            if j >= 0 && b[j] == 32 { j -= 1 }
            if j >= 0 && b[j] >= 48 && b[j] <= 57 { return true }
        }
        return false
    }
}

/// How a pitch reads, counted in one pass over the lower-cased text (words
/// separated by single spaces): words spelled out one character at a time
/// ("v 1 a g r a": runs of five or more one-character tokens with three
/// letters among them; a row of digits does not count), prices, and how
/// often the text says you and your.
struct Pitch {
    var spacedRuns = 0
    var prices = 0
    var words = 0
    var you = 0

    init(_ text: [UInt8]) {
        // Over a raw buffer, tokens as index ranges: a slice per word was a retain and a release each.
        var p = Pitch()
        text.withUnsafeBufferPointer { t in
            func isAlnum(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
            var tokens = 0, letters = 0
            var start = 0
            while start < t.count {
                var end = start
                while end < t.count && t[end] != 32 { end += 1 }
                if end - start == 1 && isAlnum(t[start]) {
                    tokens += 1
                    if t[start] >= 97 { letters += 1 }
                } else if end > start {
                    if tokens >= 5 && letters >= 3 { p.spacedRuns += 1 }
                    tokens = 0; letters = 0
                    p.words += 1
                    Self.count(t, start, end, &p)
                }
                start = end + 1
            }
            if tokens >= 5 && letters >= 3 { p.spacedRuns += 1 }
        }
        self = p
    }

    private init() {}

    private static let youWords: [[UInt8]] = ["you", "your", "you're", "yours", "yourself", "you'll", "you've"].map { Array($0.utf8) }

    private static func count(_ t: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ p: inout Pitch) {
        // "$50", "€1.99", "£10" (the pound and euro signs in UTF-8 end in 0xA3 and 0xAC).
        let f = t[start]
        if f == 36 || f == 0xC2 || f == 0xE2 {
            let skip = f == 36 ? 1 : f == 0xC2 ? 2 : 3
            if start + skip < end, t[start + skip] >= 48 && t[start + skip] <= 57,
               f == 36 || t[start + skip - 1] == 0xA3 || t[start + skip - 1] == 0xAC {
                p.prices += 1
            }
        }
        var e = end
        while e > start && !(t[e - 1] >= 97 && t[e - 1] <= 122) { e -= 1 }
        if t[start] == 121, e - start >= 3, e - start <= 8 {
            let word = UnsafeBufferPointer(rebasing: t[start..<e])
            if youWords.contains(where: { word.elementsEqual($0) }) { p.you += 1 }
        }
    }
}
