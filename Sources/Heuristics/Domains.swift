import MailMessage

/// Domain names as the heuristics compare them: the registered domain (so
/// mail.paypal.com and paypal.com are one sender), a "skeleton" in which
/// look-alike characters are the same (paypa1.com, rnicrosoft.com), and the
/// lists of free-mail providers, link shorteners and well-known brands.
enum Domains {
    /// Public suffixes of two labels common in mail (a full Public Suffix
    /// List is not needed to tell one registered domain from another).
    static let twoLabelSuffixes: Set<String> = [
        "co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au", "org.au", "co.nz", "co.jp", "ne.jp", "or.jp", "co.kr",
        "com.br", "com.cn", "net.cn", "com.tw", "com.hk", "com.mx", "com.ar", "co.za", "co.in", "com.sg", "com.tr", "com.ua",
        "co.il", "com.pl", "com.ru", "com.my", "co.id", "com.vn", "com.ph", "com.pk", "com.sa", "com.eg", "com.co",
    ]

    static func registered(_ host: String) -> String {
        // The usual host (no empty label): its last labels found from the end of the bytes, no array of labels made.
        let l = host.lowercased()
        let u = l.utf8
        if let first = u.first, first != UInt8(ascii: "."), u.last != UInt8(ascii: "."), !l.containsBytes("..") {
            var dots: [String.Index] = []
            var i = u.endIndex
            while i > u.startIndex && dots.count < 3 {
                i = u.index(before: i)
                if u[i] == UInt8(ascii: ".") { dots.append(i) }
            }
            guard dots.count >= 2 else { return l }
            let lastTwo = String(l[u.index(after: dots[1])...])
            guard twoLabelSuffixes.contains(lastTwo) else { return lastTwo }
            return dots.count == 3 ? String(l[u.index(after: dots[2])...]) : l
        }
        let labels = l.split(separator: ".").map(String.init)
        guard labels.count > 2 else { return labels.joined(separator: ".") }
        let lastTwo = labels.suffix(2).joined(separator: ".")
        if twoLabelSuffixes.contains(lastTwo) { return labels.suffix(3).joined(separator: ".") }
        return lastTwo
    }

    static func isIPLiteral(_ host: String) -> Bool {
        if host.utf8.allSatisfy({ $0 < 0x80 }) { return isASCIIIPLiteral(Array(host.utf8)) }
        let h = host.trimming { $0 == "[" || $0 == "]" }
        if h.utf8.contains(UInt8(ascii: ":")) && h.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        // Decimal dotted quads, and the hex or single-number forms browsers also accept.
        if parts.count == 4 && parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { return true }
        if parts.count == 1, let n = UInt64(h), n > 16_777_216 { return true }
        return parts.count == 4 && parts.allSatisfy { $0.lowercased().hasPrefix("0x") }
    }

    /// isIPLiteral for an ASCII host, on its bytes (Character's isNumber and
    /// isHexDigit are Unicode lookups, and every link's host is asked): the same answers.
    static func isASCIIIPLiteral(_ bytes: [UInt8]) -> Bool {
        var h = bytes[...]
        while let f = h.first, f == UInt8(ascii: "[") || f == UInt8(ascii: "]") { h = h.dropFirst() }
        while let l = h.last, l == UInt8(ascii: "[") || l == UInt8(ascii: "]") { h = h.dropLast() }
        func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        func isHex(_ b: UInt8) -> Bool { isDigit(b) || (b | 0x20 >= 97 && b | 0x20 <= 102) }
        if h.contains(UInt8(ascii: ":")) && h.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) { return true }
        let parts = h.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        if parts.count == 4 && parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(isDigit) }) { return true }
        if parts.count == 1, let n = UInt64(String(decoding: h, as: UTF8.self)), n > 16_777_216 { return true }
        return parts.count == 4 && parts.allSatisfy { $0.count >= 2 && $0.first == UInt8(ascii: "0") && $0.dropFirst().first! | 0x20 == UInt8(ascii: "x") }
    }

    /// Look-alike characters made the same: digits that pass for letters,
    /// "rn" for "m", "vv" for "w", Cyrillic and Greek letters drawn like Latin ones; hyphens dropped.
    static func skeleton(_ s: String) -> String {
        var out = ""
        for u in s.lowercased().unicodeScalars {
            switch u {
            case "0": out += "o"
            case "1", "!", "|": out += "l"
            case "3": out += "e"
            case "5": out += "s"
            case "-", "_": continue
            case "\u{430}", "\u{3B1}": out += "a"
            case "\u{435}", "\u{3B5}": out += "e"
            case "\u{43E}", "\u{3BF}": out += "o"
            case "\u{440}", "\u{3C1}": out += "p"
            case "\u{441}": out += "c"
            case "\u{445}", "\u{3C7}": out += "x"
            case "\u{443}": out += "y"
            case "\u{456}", "\u{3B9}", "\u{131}": out += "l"  // dotless and Cyrillic i, read with l (i and l look alike too)
            case "i": out += "l"
            default: out.unicodeScalars.append(u)
            }
        }
        // "rn" as "m" and "vv" as "w", left to right, without Foundation's bridged replacingOccurrences.
        guard out.containsBytes("rn") || out.containsBytes("vv") else { return out }
        var merged = String.UnicodeScalarView()
        var pending: Unicode.Scalar?
        for u in out.unicodeScalars {
            if let p = pending {
                pending = nil
                if p == "r" && u == "n" { merged.append("m"); continue }
                if p == "v" && u == "v" { merged.append("w"); continue }
                merged.append(p)
            }
            if u == "r" || u == "v" { pending = u } else { merged.append(u) }
        }
        if let p = pending { merged.append(p) }
        return String(merged)
    }

    static let freemail: Set<String> = [
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "hotmail.com", "outlook.com", "live.com",
        "msn.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.com", "gmx.net", "gmx.de", "web.de", "mail.ru",
        "yandex.ru", "yandex.com", "protonmail.com", "proton.me", "zoho.com", "qq.com", "163.com", "126.com", "rediffmail.com",
        "tutanota.com", "inbox.com", "lycos.com", "rocketmail.com", "att.net", "comcast.net", "verizon.net", "libero.it",
    ]

    static let shorteners: Set<String> = [
        "bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly", "shorturl.at",
        "rb.gy", "t.ly", "tiny.cc", "bit.do", "s.id", "v.gd", "shorte.st", "adf.ly", "bl.ink", "lnkd.in", "qrco.de", "urlz.fr",
        "tinyurl.is", "short.io", "x.co", "0rz.tw", "u.to", "clck.ru",
    ]

    /// Top-level domains the abuse trackers (Spamhaus, Interisle) rank as
    /// most used for spam and phishing, cheap to register in bulk.
    static let abusedTLDs: Set<String> = [
        "shop", "top", "xyz", "click", "online", "site", "icu", "buzz", "live", "store", "cyou", "rest", "cfd", "sbs",
        "lol", "quest", "monster", "bond", "autos", "boats", "homes", "beauty", "hair", "makeup", "skin", "mom", "cam",
        "work", "life", "fun", "space", "website", "today", "win", "loan", "bid", "gq", "ml", "cf", "tk", "ga", "zip", "mov",
    ]

    /// Free hosting and app platforms where anyone gets a subdomain in a
    /// minute: phishing pages and throwaway senders live there.
    static let freeHosting: Set<String> = [
        "firebaseapp.com", "web.app", "herokuapp.com", "github.io", "netlify.app", "vercel.app", "pages.dev", "workers.dev",
        "r2.dev", "glitch.me", "repl.co", "000webhostapp.com", "weebly.com", "wixsite.com", "godaddysites.com", "blogspot.com",
        "appspot.com", "azurewebsites.net", "web.core.windows.net", "ipfs.io", "dweb.link", "framer.app", "webflow.io",
        "square.site", "mystrikingly.com", "carrd.co", "firebasestorage.googleapis.com", "onrender.com", "fly.dev",
    ]

    /// `host` is `suffix` or below it.
    static func isUnder(_ host: String, _ suffixes: Set<String>) -> String? {
        var h = Substring(host)
        while true {
            if suffixes.contains(String(h)) { return String(h) }
            guard let dot = h.firstIndex(of: ".") else { return nil }
            h = h[h.index(after: dot)...]
        }
    }

    /// Brands phishing imitates most, with the registered domains they send from.
    static let brands: [(name: String, domains: Set<String>)] = [
        ("paypal", ["paypal.com", "paypal.co.uk", "paypal.de"]), ("apple", ["apple.com", "icloud.com"]),
        ("icloud", ["apple.com", "icloud.com"]), ("microsoft", ["microsoft.com", "office.com", "outlook.com", "live.com", "office365.com"]),
        ("office 365", ["microsoft.com", "office.com", "office365.com"]), ("outlook", ["microsoft.com", "outlook.com"]),
        ("onedrive", ["microsoft.com", "onedrive.com"]), ("sharepoint", ["microsoft.com", "sharepoint.com"]),
        ("amazon", ["amazon.com", "amazon.co.uk", "amazon.de", "amazon.fr", "amazonses.com"]), ("netflix", ["netflix.com"]),
        ("dhl", ["dhl.com", "dhl.de"]), ("fedex", ["fedex.com"]), ("usps", ["usps.com"]), ("ups", ["ups.com"]),
        ("wells fargo", ["wellsfargo.com"]), ("chase", ["chase.com", "jpmorgan.com"]), ("bank of america", ["bankofamerica.com", "bofa.com"]),
        ("docusign", ["docusign.com", "docusign.net"]), ("dropbox", ["dropbox.com"]), ("google", ["google.com", "gmail.com", "youtube.com"]),
        ("facebook", ["facebook.com", "facebookmail.com", "meta.com"]), ("instagram", ["instagram.com", "facebookmail.com"]),
        ("linkedin", ["linkedin.com"]), ("adobe", ["adobe.com"]), ("coinbase", ["coinbase.com"]), ("binance", ["binance.com"]),
        ("metamask", ["metamask.io"]), ("american express", ["americanexpress.com", "aexp.com"]), ("citibank", ["citi.com", "citibank.com"]),
        ("hsbc", ["hsbc.com", "hsbc.co.uk"]), ("santander", ["santander.com", "santander.co.uk"]), ("itau", ["itau.com.br"]),
        ("bradesco", ["bradesco.com.br"]), ("caixa", ["caixa.gov.br"]), ("banco do brasil", ["bb.com.br"]), ("nubank", ["nubank.com.br"]),
        ("mercado libre", ["mercadolibre.com"]), ("mercado pago", ["mercadopago.com"]), ("steam", ["steampowered.com", "steamcommunity.com"]),
        ("ebay", ["ebay.com"]), ("irs", ["irs.gov"]), ("trust wallet", ["trustwallet.com"]), ("kucoin", ["kucoin.com"]),
        ("pagseguro", ["pagseguro.com.br", "pagbank.com.br", "uol.com.br"]), ("ledger live", ["ledger.com"]),
        ("ledger", ["ledger.com"]), ("trezor", ["trezor.io"]),
    ]

    /// Brands whose name is also a first name or an ordinary word: in a
    /// display name they count only alone or with service words after them
    /// (SenderSignals.namesOnly).
    static let ordinaryWordBrands: Set<String> = ["chase", "apple", "steam", "outlook", "ups", "irs", "caixa", "ledger"]

    /// Each brand domain by its skeleton, made once.
    static let brandSkeletons: [String: String] = {
        var out: [String: String] = [:]
        for d in brands.flatMap(\.domains).sorted() where out[skeleton(d)] == nil { out[skeleton(d)] = d }
        return out
    }()

    /// Display names that claim to be the recipient's own mail administrators.
    static let adminNames = ["webmail", "mailbox", "helpdesk", "help desk", "it support", "it department", "email admin",
                             "mail administrator", "system administrator", "postmaster", "account team", "security team"]
}
