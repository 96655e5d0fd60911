import MailMessage

/// How the message travelled, read from the session and the Received
/// fields: what a real MTA writes and spamware gets wrong.
///
/// The hop that handed the message in is the session's client when it is
/// a public address (mxgate is the MX). When it is not (a front MX or a
/// filter on the LAN passed it on, or `mxgate test` replays a stored
/// message), it is the newest Received field whose client has a public
/// address: the trusted relays in between are on private addresses. This
/// is SpamAssassin's "last untrusted relay", with the private ranges as
/// the trusted networks.
struct RelaySignals: SignalDetector {
    static let names = ["HELO_BARE_WORD", "RCVD_RATWARE_DATE", "FREEMAIL_NOT_RELAYED", "BRAND_NOT_RELAYED"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let received = input.headers.all("Received")
        if let hop = entryHop(input.client, received), !hop.authenticated, isBareWord(hop.helo) {
            // Postfix's reject_non_fqdn_helo_hostname: a mail server names itself by its domain name.
            out.append(Signal("HELO_BARE_WORD", "the host that handed the message in (\(hop.ip)) introduced itself as \"\(hop.helo.prefix(40))\", not a domain name"))
        }
        for r in received where ratwareDate(r) {
            out.append(Signal("RCVD_RATWARE_DATE", "a Received field is dated \"\(stamp(r).prefix(40))\", a form no mail server writes"))
            break
        }
        if let (domain, brand) = notRelayed(input, received) {
            out.append(Signal(brand ? "BRAND_NOT_RELAYED" : "FREEMAIL_NOT_RELAYED", "From is at \(domain), but no Received field shows \(domain)'s servers"))
        }
    }

    /// One hop: the name the client gave in HELO, its address, whether it logged in.
    struct Hop: Equatable {
        var helo: String
        var ip: String
        var authenticated: Bool
    }

    static func entryHop(_ client: ClientHop?, _ received: [String]) -> Hop? {
        if let c = client, isPublic(c.ip) { return Hop(helo: c.helo ?? "", ip: c.ip, authenticated: false) }
        for r in received {
            guard let hop = parse(r) else { continue }
            if isPublic(hop.ip) { return hop }
        }
        return nil
    }

    /// A Received field's client, in the forms Sendmail, Postfix, Exim,
    /// qmail and Exchange write: `from HELO (rdns [IP])`, `from rdns ([IP]
    /// helo=HELO)`, `from rdns (HELO helo) (IP)`. nil when it names no client
    /// address. Read on the bytes: Foundation's string search here cost as
    /// much as all the other heuristics on real mail.
    static func parse(_ field: String) -> Hop? {
        // Folding white space as one space; the searches fold case.
        var f: [UInt8] = []
        f.reserveCapacity(field.utf8.count)
        for c in field.utf8 {
            let space = c == 32 || c == 9 || c == 13 || c == 10
            if space { if let l = f.last, l != 32 { f.append(32) } } else { f.append(c) }
        }
        /// Where `needle` (lower case) first occurs in f[..<limit], any case.
        func find(_ needle: String, before limit: Int) -> Int? {
            f.withUnsafeBufferPointer { ByteSearch.firstIndex(of: Array(needle.utf8), in: UnsafeBufferPointer(rebasing: $0[..<limit]), foldingASCII: true) }
        }
        guard find("from ", before: min(5, f.count)) == 0 else { return nil }
        // The from clause ends where " by " starts.
        let end = find(" by ", before: f.count) ?? f.count
        var w = 5
        while w < end && f[w] != 32 { w += 1 }
        guard w > 5 else { return nil }
        var helo = f[5..<w]
        func after(_ tag: String) -> ArraySlice<UInt8>? {
            guard let i = find(tag, before: end) else { return nil }
            return f[(i + tag.utf8.count)..<end].prefix { $0 != UInt8(ascii: ")") && $0 != 32 && $0 != UInt8(ascii: "]") }
        }
        if let h = after("helo=") ?? after("(helo ") { helo = h }
        // The address the receiving MTA saw is in its comment; Exim writes it as the first word: `from [IP] (helo=NAME)`.
        let comment = String(decoding: f[w..<end], as: UTF8.self)
        guard let ip = address(in: Substring(comment)) ?? address(in: Substring(String(decoding: f[5..<w], as: UTF8.self))) else { return nil }
        let authenticated = ["authenticated", " with esmtpa", " with esmtpsa", " with smtpa", " with asmtp"].contains {
            find($0, before: f.count) != nil
        }
        return Hop(helo: String(decoding: helo, as: UTF8.self), ip: ip, authenticated: authenticated)
    }

    /// The first [address] in the text, or a bare IPv4 address in parentheses (qmail).
    static func address(in s: Substring) -> String? {
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if c == "[" || c == "(" {
                let rest = s[s.index(after: i)...]
                var a = rest.prefix { $0 != "]" && $0 != ")" && $0 != " " }
                if a.lowercased().hasPrefix("ipv6:") { a = a.dropFirst(5) }
                if !a.isEmpty && (a.contains(":") && a.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) || isIPv4(a)) { return String(a) }
            }
            i = s.index(after: i)
        }
        return nil
    }

    static func isIPv4(_ s: Substring) -> Bool { octets(s) != nil }

    static func octets(_ s: Substring) -> [Int]? {
        let p = s.split(separator: ".", omittingEmptySubsequences: false)
        guard p.count == 4 else { return nil }
        var out: [Int] = []
        for x in p {
            guard !x.isEmpty, x.count <= 3, x.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(x), n <= 255 else { return nil }
            out.append(n)
        }
        return out
    }

    /// Not loopback, private (RFC 1918, 4193), shared (6598), link-local or documentation: an address on the internet.
    static func isPublic(_ ip: String) -> Bool {
        if let o = octets(Substring(ip)) {
            switch (o[0], o[1], o[2]) {
            case (0, _, _), (10, _, _), (127, _, _), (169, 254, _), (192, 168, _), (192, 0, 2), (198, 51, 100), (203, 0, 113): return false
            case (172, 16...31, _), (100, 64...127, _), (198, 18...19, _): return false
            case (224...255, _, _): return false
            default: return true
            }
        }
        let l = ip.lowercased()
        guard l.contains(":") else { return false }
        return !(l == "::1" || l.hasPrefix("fe80") || l.hasPrefix("fc") || l.hasPrefix("fd") || l.hasPrefix("2001:db8") || l == "::")
    }

    /// Not a domain name nor an address literal. qmail writes "unknown"
    /// for a client without reverse DNS: that says nothing of its HELO.
    static func isBareWord(_ helo: String) -> Bool {
        !helo.isEmpty && !helo.contains(".") && !helo.hasPrefix("[") && !helo.contains(":") && helo.lowercased() != "unknown"
    }

    /// The date stamp: what follows the last semicolon.
    static func stamp(_ field: String) -> Substring {
        let u = field.utf8
        guard let i = u.lastIndex(of: UInt8(ascii: ";")) else { return "" }
        return field[u.index(after: i)...].drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
    }

    /// "Sep, 02 2002 4:11:57 PM +0400": a month where the weekday goes, or a
    /// twelve-hour clock. Bulk-mailing programs of the 2000s wrote their
    /// forged Received fields so; an MTA writes RFC 5322's date-time.
    static func ratwareDate(_ field: String) -> Bool {
        let s = Array(stamp(field).utf8.prefix(60))
        guard !s.isEmpty else { return false }
        func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        // "Mmm, D[D] YYYY": three letters, a comma, a day, a four-digit year.
        if s.count > 12, s[3] == UInt8(ascii: ","), s[4] == UInt8(ascii: " ") {
            var i = 5
            while i < s.count && isDigit(s[i]) { i += 1 }
            if i > 5, i + 5 <= s.count, s[i] == UInt8(ascii: " "), s[(i + 1)...(i + 4)].allSatisfy(isDigit) { return true }
        }
        // "h:mm:ss AM"
        for i in 3..<max(3, s.count - 3) where isDigit(s[i - 1]) && s[i] == UInt8(ascii: " ")
            && (s[i + 1] == UInt8(ascii: "A") || s[i + 1] == UInt8(ascii: "P")) && s[i + 2] == UInt8(ascii: "M")
            && s[i - 3] == UInt8(ascii: ":") {
            return true
        }
        return false
    }

    /// Free-mail providers and a word their relays' names carry: mail sent
    /// through a provider's servers has a Received field naming them.
    static let freemail: [(domain: String, relays: [String])] = [
        ("yahoo", ["yahoo"]), ("hotmail", ["hotmail", "msn", "outlook"]), ("msn", ["hotmail", "msn", "outlook"]),
        ("outlook", ["outlook", "hotmail", "msn"]), ("live", ["outlook", "hotmail", "msn", "live"]), ("aol", ["aol", "yahoo"]),
        ("gmail", ["google", "gmail"]), ("googlemail", ["google", "gmail"]),
    ]

    /// A list or a news gateway passes mail on under the author's From without the provider's hops.
    static let listFields = ["List-Id", "List-Post", "List-Unsubscribe", "Mailing-List", "X-Mailing-List", "Newsgroups"]

    /// The From domain when it is a free-mail provider's (`freemail`) or a
    /// brand's (`brand`) and nothing shows the message passed its servers:
    /// no Received field naming them, no session with them, no signature by
    /// the domain, no list or news gateway in between.
    static func notRelayed(_ input: HeuristicInput, _ received: [String]) -> (domain: String, brand: Bool)? {
        guard let from = input.fromAddresses.first, let at = from.lastIndex(of: "@") else { return nil }
        let reg = Domains.registered(String(from[from.index(after: at)...]))
        let label = reg.prefix { $0 != "." }
        let relays: [String], brand: Bool
        if let provider = freemail.first(where: { $0.domain == label }) {
            (relays, brand) = (provider.relays, false)
        } else if let b = Domains.brands.first(where: { $0.domains.contains(reg) }) {
            // Any of the brand's domains may name its servers (facebookmail.com's come from facebook.com).
            (relays, brand) = (b.domains.map { String($0.prefix { $0 != "." }) }, true)
        } else {
            return nil
        }
        guard !listFields.contains(where: { input.headers.first($0) != nil }) else { return nil }
        let names = relays.map { Array($0.utf8) }
        func namesRelay(_ s: String) -> Bool {
            let t = Array(s.utf8)
            return t.withUnsafeBufferPointer { t in names.contains { ByteSearch.firstIndex(of: $0, in: t, foldingASCII: true) != nil } }
        }
        if received.contains(where: namesRelay) { return nil }
        // Live, the provider's last hop is the session itself, and a signature by the provider's domain says as much.
        if let h = input.client?.helo, namesRelay(h) { return nil }
        if input.headers.all("DKIM-Signature").contains(where: { $0.lowercased().containsBytes("d=\(reg)") }) { return nil }
        return (reg, brand)
    }
}
