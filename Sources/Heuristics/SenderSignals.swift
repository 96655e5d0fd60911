import MailMessage

/// Who the message says it is from. Phishing borrows a brand's name or
/// the recipient's own domain for the display name, registers a domain
/// that looks like one of them, or asks for replies to a free-mail box.
struct SenderSignals: SignalDetector {
    static let names = ["BRAND_IMPERSONATION", "LOOKALIKE_DOMAIN", "DISPLAY_NAME_OWN_DOMAIN", "ADMIN_IMPERSONATION",
                        "FREEMAIL_REPLY_TO", "FROM_PUNYCODE", "FROM_NAME_HAS_OTHER_ADDRESS"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        guard let from = input.value("From") else { return }
        guard let address = AddressList.addresses(in: from).first?.lowercased(), let at = address.lastIndex(of: "@") else { return }
        let domain = String(address[address.index(after: at)...])
        let registered = Domains.registered(domain)
        let display = displayName(from).lowercased()
        let ours = Set(input.localDomains.map(Domains.registered))
        let fromUs = ours.contains(registered)

        if !display.isEmpty && !fromUs {
            for brand in Domains.brands where containsWord(display, brand.name) && !brand.domains.contains(registered) {
                out.append(Signal("BRAND_IMPERSONATION", "the name \"\(display.prefix(60))\" says \(brand.name), the address is at \(domain)"))
                break
            }
            for d in ours where display.contains(d) || containsWord(display, String(d.split(separator: ".").first ?? "")) && d.count > 6 {
                out.append(Signal("DISPLAY_NAME_OWN_DOMAIN", "the name \"\(display.prefix(60))\" names our \(d), the address is at \(domain)"))
                break
            }
            if let claim = Domains.adminNames.first(where: { containsWord(display, $0) }) {
                out.append(Signal("ADMIN_IMPERSONATION", "the name says \"\(claim)\" from outside, at \(domain)"))
            }
            if let other = AddressList.addresses(in: displayName(from)).first?.lowercased(), other.contains("@"), other != address {
                out.append(Signal("FROM_NAME_HAS_OTHER_ADDRESS", "the name shows \(other), the address is \(address)"))
            }
        }
        // A domain whose skeleton is one of ours or a brand's, but is not it.
        let skel = Domains.skeleton(registered)
        let targets = ours.union(Domains.brands.flatMap(\.domains))
        if !fromUs, let twin = targets.first(where: { $0 != registered && Domains.skeleton($0) == skel }) {
            out.append(Signal("LOOKALIKE_DOMAIN", "\(domain) looks like \(twin)"))
        }
        if domain.split(separator: ".").contains(where: { $0.hasPrefix("xn--") }) {
            out.append(Signal("FROM_PUNYCODE", "the From domain \(domain) is punycode"))
        }
        if let replyTo = input.value("Reply-To"), let r = AddressList.addresses(in: replyTo).first?.lowercased(),
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
        return String(from[..<lt]).trimmed.trimmingCharacters(in: ["\""]).trimmed
    }

    static func containsWord(_ text: String, _ word: String) -> Bool {
        guard !word.isEmpty else { return false }
        var search = text.startIndex
        while let r = text.range(of: word, range: search..<text.endIndex) {
            let before = r.lowerBound == text.startIndex ? nil : text[text.index(before: r.lowerBound)]
            let after = r.upperBound == text.endIndex ? nil : text[r.upperBound]
            if !(before?.isLetter ?? false) && !(after?.isLetter ?? false) { return true }
            search = r.upperBound
        }
        return false
    }
}
