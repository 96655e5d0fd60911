import Policy
import Synchronization

/// An SPF record (RFC 7208 §4.6, §12), parsed whole before anything is
/// evaluated: a syntax error anywhere makes the result permerror, even after
/// a mechanism that would have matched (§4.6).
struct SPFRecord: Equatable, Sendable {
    enum Qualifier: Equatable, Sendable {
        case pass, fail, softfail, neutral
    }

    enum Mechanism: Equatable, Sendable {
        case all
        case include(MacroString)
        case a(MacroString?, v4: Int, v6: Int)
        case mx(MacroString?, v4: Int, v6: Int)
        case ptr(MacroString?)
        case ip4(CIDR)
        case ip6(CIDR)
        case exists(MacroString)

        /// Terms that cost a DNS lookup count against the limit of 10 (§4.6.4).
        var queriesDNS: Bool {
            switch self {
            case .include, .a, .mx, .ptr, .exists: return true
            case .all, .ip4, .ip6: return false
            }
        }
    }

    struct Directive: Equatable, Sendable {
        var qualifier: Qualifier
        var mechanism: Mechanism
    }

    var directives: [Directive] = []
    var redirect: MacroString?
    var exp: MacroString?

    struct SyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Whether a TXT record's text is an SPF record: "v=spf1" then a space or the end (§4.5).
    static func isSPF(_ text: String) -> Bool {
        let u = Array(text.utf8)
        guard u.count >= 6, String(decoding: u[0..<6], as: UTF8.self).lowercased() == "v=spf1" else { return false }
        return u.count == 6 || u[6] == 0x20
    }

    /// Records parsed before, by their text (the same providers' records and includes come with most mail).
    static let parsed = RecordCache<Result<SPFRecord, SyntaxError>>()

    /// `parse`, remembered.
    static func cachedParse(_ text: String) throws(SyntaxError) -> SPFRecord {
        try parsed.value(for: text) { text in
            do throws(SyntaxError) { return .success(try parse(text)) } catch { return .failure(error) }
        }.get()
    }

    static func parse(_ text: String) throws(SyntaxError) -> SPFRecord {
        var record = SPFRecord()
        let terms = text.split(separator: " ", omittingEmptySubsequences: true).dropFirst()  // "v=spf1"
        for term in terms {
            try record.add(String(term))
        }
        return record
    }

    private static func isAlpha(_ a: UInt8) -> Bool { (a | 0x20) >= 97 && (a | 0x20) <= 122 }
    private static func isDigit(_ a: UInt8) -> Bool { a >= 48 && a <= 57 }

    private mutating func add(_ term: String) throws(SyntaxError) {
        var rest = Substring(term)
        var name = ""
        // ASCII tests on the byte: Character's isLetter is a Unicode table lookup per character of every record.
        while let c = rest.first, let a = c.asciiValue, Self.isAlpha(a) || (!name.isEmpty && (Self.isDigit(a) || c == "-" || c == "_" || c == ".")) {
            name.append(c)
            rest.removeFirst()
        }
        if rest.first == "=" && !name.isEmpty {
            try modifier(name.lowercased(), String(rest.dropFirst()))
            return
        }
        var t = Substring(term)
        var qualifier = Qualifier.pass
        switch t.first {
        case "+": qualifier = .pass; t.removeFirst()
        case "-": qualifier = .fail; t.removeFirst()
        case "~": qualifier = .softfail; t.removeFirst()
        case "?": qualifier = .neutral; t.removeFirst()
        default: break
        }
        var mech = ""
        while let c = t.first, let a = c.asciiValue, Self.isAlpha(a) || Self.isDigit(a) {
            mech.append(c)
            t.removeFirst()
        }
        let arg = String(t)
        let m: Mechanism
        switch mech.lowercased() {
        case "all":
            guard arg.isEmpty else { throw SyntaxError("'all' takes no argument: \(term)") }
            m = .all
        case "include":
            m = .include(try Self.requiredDomain(arg, term))
        case "exists":
            m = .exists(try Self.requiredDomain(arg, term))
        case "ptr":
            m = .ptr(arg.isEmpty ? nil : try Self.requiredDomain(arg, term))
        case "a", "mx":
            let (spec, v4, v6) = try Self.dualCIDR(arg, term)
            let domain = try spec.map { s throws(SyntaxError) in try Self.requiredDomain(s, term) }
            m = mech.lowercased() == "a" ? .a(domain, v4: v4, v6: v6) : .mx(domain, v4: v4, v6: v6)
        case "ip4":
            guard arg.hasPrefix(":"), let net = Self.ip4Network(String(arg.dropFirst())) else {
                throw SyntaxError("bad ip4 network: \(term)")
            }
            m = .ip4(net)
        case "ip6":
            guard arg.hasPrefix(":"), let net = Self.ip6Network(String(arg.dropFirst())) else {
                throw SyntaxError("bad ip6 network: \(term)")
            }
            m = .ip6(net)
        default:
            throw SyntaxError("unknown mechanism: \(term)")
        }
        directives.append(Directive(qualifier: qualifier, mechanism: m))
    }

    private mutating func modifier(_ name: String, _ value: String) throws(SyntaxError) {
        switch name {
        case "redirect":
            guard redirect == nil else { throw SyntaxError("more than one redirect modifier") }
            redirect = try Self.domainSpec(value, "redirect=\(value)")
        case "exp":
            guard exp == nil else { throw SyntaxError("more than one exp modifier") }
            exp = try Self.domainSpec(value, "exp=\(value)")
        default:
            // Unknown modifiers are ignored (§6), but must still be well formed.
            _ = try MacroString.parse(value, explanation: false)
        }
    }

    /// ":domain-spec" after a mechanism's name.
    private static func requiredDomain(_ arg: String, _ term: String) throws(SyntaxError) -> MacroString {
        guard arg.hasPrefix(":"), arg.count > 1 else { throw SyntaxError("missing domain: \(term)") }
        return try domainSpec(String(arg.dropFirst()), term)
    }

    /// domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "." ] ) / macro-expand (§7.1).
    static func domainSpec(_ text: String, _ term: String) throws(SyntaxError) -> MacroString {
        let m = try MacroString.parse(text, explanation: false)
        if case .macro? = m.parts.last { return m }
        guard case .literal(let tail)? = m.parts.last else { throw SyntaxError("empty domain: \(term)") }
        var t = Substring(tail)
        if t.hasSuffix(".") { t.removeLast() }
        guard let dot = t.lastIndex(of: ".") else {
            // The whole name is one label: acceptable only after a macro ("%{d}com" is not; "%{d}.com" is).
            throw SyntaxError("domain must end in a top-level label: \(term)")
        }
        let top = t[t.index(after: dot)...]
        guard isTopLabel(top) else { throw SyntaxError("bad top-level label '\(top)': \(term)") }
        return m
    }

    /// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
    static func isTopLabel(_ s: Substring) -> Bool {
        guard let first = s.first, let last = s.last, first != "-", last != "-" else { return false }
        guard s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else { return false }
        return s.contains { $0.isLetter } || s.contains("-")
    }

    /// [":" domain-spec] [ "/" ip4-cidr ] [ "//" ip6-cidr ], cidrs taken from the end.
    private static func dualCIDR(_ arg: String, _ term: String) throws(SyntaxError) -> (String?, Int, Int) {
        var s = Substring(arg)
        var v4 = 32, v6 = 128
        if let r = s.range(of: "//", options: .backwards) {
            let digits = s[r.upperBound...]
            if let n = cidrLength(digits, max: 128) {
                v6 = n
                s = s[..<r.lowerBound]
            } else if digits.allSatisfy(\.isNumber) {
                throw SyntaxError("bad ip6 prefix length: \(term)")
            }
        }
        if let slash = s.lastIndex(of: "/") {
            let digits = s[s.index(after: slash)...]
            if let n = cidrLength(digits, max: 32) {
                v4 = n
                s = s[..<slash]
            } else if digits.allSatisfy(\.isNumber) {
                throw SyntaxError("bad ip4 prefix length: \(term)")
            }
        }
        if s.isEmpty { return (nil, v4, v6) }
        guard s.hasPrefix(":") else { throw SyntaxError("unknown mechanism: \(term)") }
        return (String(s), v4, v6)
    }

    /// "0" / %x31-39 0*2DIGIT, at most `max`.
    static func cidrLength(_ digits: Substring, max: Int) -> Int? {
        guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if digits.count > 1 && digits.first == "0" { return nil }
        guard let n = Int(digits), n <= max else { return nil }
        return n
    }

    static func ip4Network(_ text: String) -> CIDR? {
        let (addr, len) = split(text)
        let parts = addr.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy({ $0.isASCII && $0.isNumber }) && (p.count == 1 || p.first != "0") && Int(p)! <= 255
        }) else { return nil }
        var prefix = 32
        if let len {
            guard let n = cidrLength(len, max: 32) else { return nil }
            prefix = n
        }
        return CIDR("\(addr)/\(prefix)")
    }

    static func ip6Network(_ text: String) -> CIDR? {
        let (addr, len) = split(text)
        guard addr.contains(":"), let ip = IPAddress(String(addr)) else { return nil }
        var prefix = 128
        if let len {
            guard let n = cidrLength(len, max: 128) else { return nil }
            prefix = n
        }
        // An IPv4-mapped address (::ffff:a.b.c.d) is kept in the IPv4 space.
        if ip.isV4 { return prefix >= 96 ? CIDR("\(ip)/\(prefix - 96)") : CIDR("::/\(prefix)") }
        return CIDR("\(addr)/\(prefix)")
    }

    private static func split(_ text: String) -> (Substring, Substring?) {
        guard let slash = text.firstIndex(of: "/") else { return (Substring(text), nil) }
        return (text[..<slash], text[text.index(after: slash)...])
    }
}
