import MailMessage

/// Where the links go. Phishing shows one host and links to another, hides
/// the destination behind a shortener, a bare IP address or punycode, or
/// runs code from the link itself.
struct LinkSignals: SignalDetector {
    static let names = ["LINK_TEXT_HOST_MISMATCH", "LINK_TO_IP", "LINK_SHORTENER", "LINK_DATA_OR_SCRIPT", "LINK_PUNYCODE",
                        "LINK_USERINFO", "MANY_LINKS", "LINK_TLD_ABUSED", "LINK_FREE_HOSTING"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        for link in input.mime.links {
            let href = link.href.trimmed
            let lower = href.lowercased()
            if lower.hasPrefix("javascript:") || lower.hasPrefix("data:") || lower.hasPrefix("vbscript:") {
                out.append(Signal("LINK_DATA_OR_SCRIPT", "a link runs \(lower.prefix { $0 != ":" }): content"))
                continue
            }
            guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), let host = URLExtractor.host(href) else { continue }
            if let shown = shownHost(link.text), Domains.registered(shown) != Domains.registered(host), !Domains.shorteners.contains(host) {
                out.append(Signal("LINK_TEXT_HOST_MISMATCH", "link text shows \(shown), the link goes to \(host)"))
            }
        }
        for url in input.mime.urls {
            guard let host = URLExtractor.host(url) else { continue }
            if Domains.isIPLiteral(host) { out.append(Signal("LINK_TO_IP", "a link goes to the address \(host)")) }
            if Domains.shorteners.contains(host) { out.append(Signal("LINK_SHORTENER", "a link goes through the shortener \(host)")) }
            // Labels and path segments split on the bytes: splitting by Character was a fifth of this detector.
            let labels = host.utf8.split(separator: UInt8(ascii: "."))
            if let tld = labels.last.map({ String(Substring($0)) }), Domains.abusedTLDs.contains(tld) {
                out.append(Signal("LINK_TLD_ABUSED", "a link goes to \(host), under .\(tld)"))
            }
            if let platform = Domains.isUnder(host, Domains.freeHosting) {
                out.append(Signal("LINK_FREE_HOSTING", "a link goes to \(host), free hosting on \(platform)"))
            }
            if labels.contains(where: { $0.starts(with: "xn--".utf8) }) {
                out.append(Signal("LINK_PUNYCODE", "a link goes to the punycode host \(host)"))
            }
            if let rest = url.utf8.split(separator: UInt8(ascii: "/"), maxSplits: 3).dropFirst(1).first, rest.contains(UInt8(ascii: "@")) {
                out.append(Signal("LINK_USERINFO", "a link hides its host after user@ (\(Substring(rest).prefix(60)))"))
            }
        }
        let distinct = Set(input.mime.urls).count
        if distinct >= 20 { out.append(Signal("MANY_LINKS", "\(distinct) different links")) }
    }

    /// The host a link's text shows, when the text is (or starts with) a URL or a domain name.
    static func shownHost(_ text: String) -> String? {
        var t = text.trimmed.lowercased()
        guard t.count >= 4, !t.utf8.contains(UInt8(ascii: " ")) || t.hasPrefix("http") else { return nil }
        if let space = t.firstIndex(of: " ") { t = String(t[..<space]) }
        if let h = URLExtractor.host(t.hasPrefix("http") ? t : "http://" + t) {
            let labels = h.split(separator: ".")
            // A domain name: two labels or more, a last label of letters.
            guard labels.count >= 2, let tld = labels.last, tld.count >= 2, tld.allSatisfy(\.isLetter) else { return nil }
            return h.lowercased()
        }
        return nil
    }
}
