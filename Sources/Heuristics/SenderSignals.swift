import MailMessage

/// Who the message says it is from. Phishing borrows a brand's name or
/// the recipient's own domain for the display name, registers a domain
/// that looks like one of them, or asks for replies to a free-mail box.
struct SenderSignals: SignalDetector {
    static let names = ["BRAND_IMPERSONATION", "LOOKALIKE_DOMAIN", "DISPLAY_NAME_OWN_DOMAIN", "ADMIN_IMPERSONATION",
                        "FREEMAIL_REPLY_TO", "FROM_PUNYCODE", "FROM_NAME_HAS_OTHER_ADDRESS", "FROM_TLD_ABUSED", "FROM_FREE_HOSTING",
                        "FROM_DOMAIN_ODD", "FROM_DOMAIN_INVALID", "FROM_NO_ADDRESS"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        guard let from = input.value("From") else { return }
        let all = input.fromAddresses
        if !(all.first?.utf8.contains(UInt8(ascii: "@")) ?? false) {
            // A name and no mailbox, or a comma outside quotes that splits the name from
            // its address ("Ihr Gewinner Team, jehd <service@…>", shown as the name alone):
            // RFC 5322 asks for one mailbox, and every mail program quotes such a name.
            out.append(Signal("FROM_NO_ADDRESS", "the From field \"\(from.prefix(60))\" starts with a name that has no address"))
        }
        guard let address = all.first(where: { $0.utf8.contains(UInt8(ascii: "@")) })?.lowercased(), let at = address.lastIndex(of: "@") else { return }
        let domain = String(address[address.index(after: at)...])
        let registered = Domains.registered(domain)
        // Invisible characters out first: "Tr\u{E0139}ust Wallet" is read as Trust Wallet.
        let display = String(String.UnicodeScalarView(displayName(from).lowercased().unicodeScalars.filter { !TextStats.isInvisible($0.value) }))
        let ours = Set(input.localDomains.map(Domains.registered))
        let fromUs = ours.contains(registered)

        if !display.isEmpty && !fromUs {
            let name = Array(display.utf8)  // checked against every brand and administrator title
            // "Masami Hiramatsu (Google)" names an employer, not a sender: a brand in parentheses does not count.
            let unbracketed = withoutParentheses(display)
            let claimed = Array(unbracketed.utf8)
            for brand in Domains.brands where containsWord(claimed, brand.name) && !brand.domains.contains(registered)
                && (!Domains.ordinaryWordBrands.contains(brand.name) || Self.namesOnly(brand.name, unbracketed)) {
                out.append(Signal("BRAND_IMPERSONATION", "the name \"\(display.prefix(60))\" says \(brand.name), the address is at \(domain)"))
                break
            }
            for d in ours where display.containsBytes(d) || containsWord(name, String(d.split(separator: ".").first ?? "")) && d.count > 6 {
                out.append(Signal("DISPLAY_NAME_OWN_DOMAIN", "the name \"\(display.prefix(60))\" names our \(d), the address is at \(domain)"))
                break
            }
            if let claim = Domains.adminNames.first(where: { containsWord(name, $0) }) {
                out.append(Signal("ADMIN_IMPERSONATION", "the name says \"\(claim)\" from outside, at \(domain)"))
            }
            if let other = AddressList.addresses(in: displayName(from)).first?.lowercased(), other.utf8.contains(UInt8(ascii: "@")), other != address {
                out.append(Signal("FROM_NAME_HAS_OTHER_ADDRESS", "the name shows \(other), the address is \(address)"))
            }
        }
        // A domain whose skeleton is one of ours or a brand's, but is not it.
        let skel = Domains.skeleton(registered)
        let twin = Domains.brandSkeletons[skel].flatMap { $0 == registered ? nil : $0 }
            ?? ours.first { $0 != registered && Domains.skeleton($0) == skel }
        if !fromUs, let twin {
            out.append(Signal("LOOKALIKE_DOMAIN", "\(domain) looks like \(twin)"))
        }
        let labels = domain.split(separator: ".")
        // No mail system on the Internet can answer for "detran" or "bank_secure.com": the address is made up.
        if !domain.hasPrefix("["), labels.count < 2 || domain.utf8.contains(where: { !($0 >= 97 && $0 <= 122 || $0 >= 48 && $0 <= 57 || $0 == 45 || $0 == 46 || $0 >= 0x80) }) {
            out.append(Signal("FROM_DOMAIN_INVALID", "the From domain \"\(domain.prefix(60))\" is not a domain name"))
        }
        if let tld = labels.last, Domains.abusedTLDs.contains(String(tld)) {
            out.append(Signal("FROM_TLD_ABUSED", "the From domain \(domain) is under .\(tld), a top-level domain much used for abuse"))
        }
        if let host = Domains.isUnder(domain, Domains.freeHosting) {
            out.append(Signal("FROM_FREE_HOSTING", "the From domain \(domain) is a free hosting subdomain (\(host))"))
        }
        if labels.count >= 6 || labels.filter({ $0.count == 1 }).count >= 3 {
            out.append(Signal("FROM_DOMAIN_ODD", "the From domain \(domain.prefix(60)) has \(labels.count) labels"))
        }
        if labels.contains(where: { $0.hasPrefix("xn--") }) {
            out.append(Signal("FROM_PUNYCODE", "the From domain \(domain) is punycode"))
        }
        if let r = input.replyToAddresses.first?.lowercased(),
           let rat = r.lastIndex(of: "@") {
            let rd = Domains.registered(String(r[r.index(after: rat)...]))
            if rd != registered && Domains.freemail.contains(rd) {
                out.append(Signal("FREEMAIL_REPLY_TO", "replies go to \(r), a free-mail address, not to \(domain)"))
            }
        }
    }

    /// The display name of a From value ("Name <addr>"), quotes removed.
    static func displayName(_ from: String) -> String {
        guard let lt = from.firstIndex(of: "<") else { return "" }
        return from[..<lt].trimmed.trimming { $0 == "\"" }.trimmed
    }

    /// Words a brand's own mail puts after its name ("Chase Online", "Apple Support").
    static let serviceWords: Set<String> = ["support", "service", "services", "team", "security", "alert", "alerts", "online",
                                           "account", "accounts", "id", "store", "bank", "notification", "notifications",
                                           "billing", "customer", "care", "help", "info", "update", "updates", "mobile"]

    /// The display name is `brand` alone or followed by service words only: a
    /// brand that is also a first name or a word ("Chase Smith", "Lockergnome
    /// Apple Core") counts only then.
    static func namesOnly(_ brand: String, _ display: String) -> Bool {
        let words = display.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { $0.lowercased() }
        let brandWords = brand.split(separator: " ").map(String.init)
        guard words.count >= brandWords.count, Array(words.prefix(brandWords.count)) == brandWords else { return false }
        return words.dropFirst(brandWords.count).allSatisfy(serviceWords.contains)
    }

    /// `s` with every parenthesised part left out.
    static func withoutParentheses(_ s: String) -> String {
        guard s.utf8.contains(UInt8(ascii: "(")) else { return s }
        var depth = 0
        return String(s.unicodeScalars.filter { c in
            if c == "(" { depth += 1 } else if c == ")" { depth = max(0, depth - 1); return false }
            return depth == 0
        }.map(Character.init))
    }

    /// `word` in `hay` (UTF-8) with no letter either side, compared as bytes (Foundation's
    /// range(of:) cost a few µs a call, and a display name is checked against every brand).
    static func containsWord(_ hay: [UInt8], _ word: String) -> Bool {
        var word = word
        // The word's own bytes, not a copy: this runs for every brand on every message.
        return word.withUTF8 { needle in
            guard let first = needle.first, hay.count >= needle.count else { return false }
            func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 97 && (b | 0x20) <= 122 || b >= 0x80 }
            for i in 0...(hay.count - needle.count) where hay[i] == first {
                var k = 1
                while k < needle.count && hay[i + k] == needle[k] { k += 1 }
                guard k == needle.count else { continue }
                let before = i == 0 ? nil : hay[i - 1]
                let after = i + needle.count == hay.count ? nil : hay[i + needle.count]
                if !(before.map(isLetter) ?? false) && !(after.map(isLetter) ?? false) { return true }
            }
            return false
        }
    }

}
