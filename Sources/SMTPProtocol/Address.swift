/// A mailbox from an SMTP envelope (RFC 5321 §4.1.2), kept with the facts the
/// relay gate needs to refuse address tricks: source routes, quoted local
/// parts, address literals.
public struct Mailbox: Sendable, Hashable, CustomStringConvertible {
    /// The local part as it appeared, without surrounding quotes but with
    /// quoted-pairs resolved.
    public var localPart: String
    /// The domain in lower case, or an address literal including its brackets.
    /// Empty only for the special recipient `<Postmaster>` (RFC 5321 §4.5.1).
    public var domain: String
    public var wasQuoted: Bool
    /// The A-d-l of a source route (`<@a,@b:user@c>`), which RFC 5321 says to
    /// ignore but which open-relay probes still send.
    public var sourceRoute: [String]

    public init(localPart: String, domain: String, wasQuoted: Bool = false, sourceRoute: [String] = []) {
        self.localPart = localPart
        self.domain = domain
        self.wasQuoted = wasQuoted
        self.sourceRoute = sourceRoute
    }

    public var isAddressLiteral: Bool { domain.hasPrefix("[") }
    public var needsSMTPUTF8: Bool { !localPart.utf8.allSatisfy { $0 < 0x80 } || !domain.utf8.allSatisfy { $0 < 0x80 } }

    public var description: String {
        if domain.isEmpty { return localPart }
        let lp: String
        if wasQuoted {
            var q = "\""
            for c in localPart { if c == "\"" || c == "\\" { q.append("\\") }; q.append(c) }
            lp = q + "\""
        } else {
            lp = localPart
        }
        return lp + "@" + domain
    }
}

/// A MAIL FROM reverse path: a mailbox or the null sender `<>`.
public enum ReversePath: Sendable, Hashable, CustomStringConvertible {
    case null
    case mailbox(Mailbox)

    public var description: String {
        switch self {
        case .null: return ""
        case .mailbox(let m): return m.description
        }
    }
}

/// Why an address failed to parse; the text goes into a 501 reply.
public struct AddressError: Error, Sendable, Hashable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// Parses RFC 5321 paths. One function per grammar rule, each quoting it.
public struct AddressParser {
    private let bytes: [UInt8]
    private var index = 0
    /// RFC 6531 allows UTF-8 in addresses; the session decides whether the
    /// client said SMTPUTF8 and refuses otherwise with a proper code.
    private let allowUTF8 = true

    private init(_ text: Substring) {
        bytes = Array(text.utf8)
    }

    /// Parses `<path>` or `<>` and returns the path and the text after it (parameters).
    public static func parseReversePath(_ text: Substring) throws(AddressError) -> (ReversePath, Substring) {
        var p = AddressParser(text)
        p.skipSpaces()
        if p.peek(UInt8(ascii: "<")) && p.peek(UInt8(ascii: ">"), offset: 1) {
            p.index += 2
            return (.null, p.rest())
        }
        let m = try p.path(allowPostmaster: false)
        return (.mailbox(m), p.rest())
    }

    public static func parseForwardPath(_ text: Substring) throws(AddressError) -> (Mailbox, Substring) {
        var p = AddressParser(text)
        p.skipSpaces()
        let m = try p.path(allowPostmaster: true)
        return (m, p.rest())
    }

    /// Parses a bare mailbox (`user@domain`), as used in tables and the CLI.
    public static func parseMailbox(_ text: String) throws(AddressError) -> Mailbox {
        var p = AddressParser(Substring(text))
        let m = try p.mailbox()
        guard p.index == p.bytes.count else { throw AddressError("unexpected text after address") }
        return m
    }

    private func rest() -> Substring {
        Substring(decoding: bytes[index...], as: UTF8.self)
    }

    private func peek(_ b: UInt8, offset: Int = 0) -> Bool {
        index + offset < bytes.count && bytes[index + offset] == b
    }

    private mutating func skipSpaces() {
        while index < bytes.count && bytes[index] == UInt8(ascii: " ") { index += 1 }
    }

    private mutating func expect(_ b: UInt8, _ what: String) throws(AddressError) {
        guard peek(b) else { throw AddressError("expected \(what)") }
        index += 1
    }

    // Path = "<" [ A-d-l ":" ] Mailbox ">"
    // A-d-l = At-domain *( "," At-domain )
    // At-domain = "@" Domain
    private mutating func path(allowPostmaster: Bool) throws(AddressError) -> Mailbox {
        try expect(UInt8(ascii: "<"), "'<' to start the address")
        var route: [String] = []
        if peek(UInt8(ascii: "@")) {
            repeat {
                index += 1  // "@" (first pass) — later passes consumed "," already
                route.append(try domain())
                if peek(UInt8(ascii: ",")) {
                    index += 1
                    guard peek(UInt8(ascii: "@")) else { throw AddressError("bad source route") }
                    continue
                }
                break
            } while true
            try expect(UInt8(ascii: ":"), "':' after source route")
        }
        // RFC 5321 §4.5.1: "<Postmaster>" without a domain must be accepted.
        if allowPostmaster, route.isEmpty {
            let save = index
            let word = atomRun()
            if word.lowercased() == "postmaster", peek(UInt8(ascii: ">")) {
                index += 1
                return Mailbox(localPart: word, domain: "")
            }
            index = save
        }
        var m = try mailbox()
        m.sourceRoute = route
        try expect(UInt8(ascii: ">"), "'>' to end the address")
        return m
    }

    // Mailbox = Local-part "@" ( Domain / address-literal )
    private mutating func mailbox() throws(AddressError) -> Mailbox {
        let (local, quoted) = try localPart()
        guard local.utf8.count <= 64 else { throw AddressError("local part longer than 64 octets (RFC 5321 §4.5.3.1.1)") }
        try expect(UInt8(ascii: "@"), "'@' and a domain")
        let d: String
        if peek(UInt8(ascii: "[")) {
            d = try addressLiteral()
        } else {
            d = try domain()
        }
        return Mailbox(localPart: local, domain: d, wasQuoted: quoted)
    }

    // Local-part = Dot-string / Quoted-string
    // Dot-string = Atom *("." Atom)
    private mutating func localPart() throws(AddressError) -> (String, Bool) {
        if peek(UInt8(ascii: "\"")) {
            return (try quotedString(), true)
        }
        var parts: [String] = []
        repeat {
            let a = atomRun()
            guard !a.isEmpty else { throw AddressError("bad local part") }
            parts.append(a)
            if peek(UInt8(ascii: ".")) { index += 1; continue }
            break
        } while true
        return (parts.joined(separator: "."), false)
    }

    // Atom = 1*atext  (RFC 5322 atext; RFC 6531 adds UTF8-non-ascii)
    private mutating func atomRun() -> String {
        let start = index
        while index < bytes.count, Self.isAtext(bytes[index]) || (allowUTF8 && bytes[index] >= 0x80) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    static func isAtext(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-/=?^_`{|}~".utf8.contains(b)
        }
    }

    // Quoted-string = DQUOTE *QcontentSMTP DQUOTE
    // QcontentSMTP = qtextSMTP / quoted-pairSMTP
    // quoted-pairSMTP = %d92 %d32-126
    // qtextSMTP = %d32-33 / %d35-91 / %d93-126
    private mutating func quotedString() throws(AddressError) -> String {
        index += 1
        var out: [UInt8] = []
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: out, as: UTF8.self)
            } else if b == UInt8(ascii: "\\") {
                guard index + 1 < bytes.count, (32...126).contains(bytes[index + 1]) else {
                    throw AddressError("bad quoted pair in local part")
                }
                out.append(bytes[index + 1])
                index += 2
            } else if (32...126).contains(b) || (allowUTF8 && b >= 0x80) {
                out.append(b)
                index += 1
            } else {
                throw AddressError("bad character in quoted local part")
            }
        }
        throw AddressError("unterminated quoted local part")
    }

    // Domain = sub-domain *("." sub-domain)
    // sub-domain = Let-dig [Ldh-str]
    // Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig
    private mutating func domain() throws(AddressError) -> String {
        var labels: [String] = []
        repeat {
            let start = index
            while index < bytes.count {
                let b = bytes[index]
                let isLetDig = (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                    || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || (allowUTF8 && b >= 0x80)
                if isLetDig || b == UInt8(ascii: "-") { index += 1 } else { break }
            }
            let label = bytes[start..<index]
            guard let first = label.first, let last = label.last, first != UInt8(ascii: "-"), last != UInt8(ascii: "-") else {
                throw AddressError("bad domain name")
            }
            guard label.count <= 63 else { throw AddressError("domain label longer than 63 octets") }
            labels.append(String(decoding: label, as: UTF8.self))
            if peek(UInt8(ascii: ".")) { index += 1; continue }
            break
        } while true
        let d = labels.joined(separator: ".")
        guard d.utf8.count <= 255 else { throw AddressError("domain longer than 255 octets") }
        return d.lowercased()
    }

    // address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
    //                         General-address-literal ) "]"
    private mutating func addressLiteral() throws(AddressError) -> String {
        let start = index
        index += 1
        while index < bytes.count, bytes[index] != UInt8(ascii: "]") {
            let b = bytes[index]
            guard b > 32, b < 127, b != UInt8(ascii: "["), b != UInt8(ascii: "\\") else {
                throw AddressError("bad address literal")
            }
            index += 1
        }
        try expect(UInt8(ascii: "]"), "']' to end the address literal")
        guard index - start > 2 else { throw AddressError("empty address literal") }
        return String(decoding: bytes[start..<index], as: UTF8.self).lowercased()
    }
}
