import Policy

/// A zone file that cannot be read: where and why.
public struct DNSZoneError: Error, Sendable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

extension DNSZone {
    /// Reads an RFC 1035 §5 master file: $ORIGIN and $TTL, owner names
    /// relative to the origin ("@" is the origin itself, a blank owner the
    /// previous one), optional TTL and class, parentheses across lines, ";"
    /// comments; A, AAAA, MX, TXT (quoted strings with \" and \DDD escapes),
    /// PTR and CNAME are kept; SOA, NS and other types are read and ignored.
    public static func load(masterFile text: String, origin: String = ".") throws(DNSZoneError) -> DNSZone {
        let zone = DNSZone()
        var origin = key(origin)
        var owner: String?
        var pending: [String] = []
        var depth = 0
        var startLine = 0
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let (tokens, opens, closes) = try tokenize(String(raw), line: n + 1)
            if depth == 0 {
                startLine = n + 1
                // A blank owner: the line starts with white space and holds a record.
                if raw.first == " " || raw.first == "\t", !tokens.isEmpty { pending = [""] }
            }
            pending += tokens
            depth += opens - closes
            guard depth <= 0 else { continue }
            depth = 0
            var t = pending
            pending = []
            guard !t.isEmpty else { continue }
            if t[0] == "$ORIGIN" {
                guard t.count >= 2 else { throw DNSZoneError(line: startLine, message: "$ORIGIN needs a name") }
                origin = absolute(t[1], origin)
                continue
            }
            if t[0] == "$TTL" { continue }
            if t[0].hasPrefix("$") { throw DNSZoneError(line: startLine, message: "unknown directive \(t[0])") }
            let name: String
            if t[0].isEmpty {
                guard let o = owner else { throw DNSZoneError(line: startLine, message: "a record with no owner name") }
                name = o
            } else {
                name = t[0] == "@" ? origin : absolute(t[0], origin)
            }
            owner = name
            t.removeFirst()
            // [TTL] [class] or [class] [TTL], then the type.
            while let f = t.first, f.allSatisfy(\.isNumber) || ["IN", "CH", "HS"].contains(f.uppercased()) { t.removeFirst() }
            guard let type = t.first?.uppercased() else { throw DNSZoneError(line: startLine, message: "a record with no type") }
            let data = Array(t.dropFirst())
            func need(_ count: Int) throws(DNSZoneError) {
                guard data.count >= count else { throw DNSZoneError(line: startLine, message: "\(type) needs \(count) field(s)") }
            }
            switch type {
            case "A", "AAAA":
                try need(1)
                guard let ip = IPAddress(data[0]), ip.isV4 == (type == "A") else {
                    throw DNSZoneError(line: startLine, message: "'\(data[0])' is not an \(type == "A" ? "IPv4" : "IPv6") address")
                }
                zone.add(name, type: type == "A" ? DNSType.a : DNSType.aaaa, rdata: address(ip))
            case "MX":
                try need(2)
                guard let pref = Int(data[0]), pref >= 0, pref < 65536 else {
                    throw DNSZoneError(line: startLine, message: "MX preference '\(data[0])' is not a number")
                }
                zone.add(name, type: DNSType.mx, rdata: mx(pref, data[1] == "." ? "" : absolute(data[1], origin)))
            case "TXT", "SPF":
                try need(1)
                if type == "TXT" { zone.add(name, type: DNSType.txt, rdata: self.text(data.map { Array($0.utf8) })) }
            case "PTR", "CNAME":
                try need(1)
                zone.add(name, type: type == "PTR" ? DNSType.ptr : DNSType.cname, rdata: wireName(absolute(data[0], origin)))
            case "SOA", "NS", "CAA", "SRV", "DS", "DNSKEY", "RRSIG", "NSEC", "TLSA", "HINFO":
                zone.addName(name)
            default:
                throw DNSZoneError(line: startLine, message: "unknown record type \(type)")
            }
        }
        if depth > 0 { throw DNSZoneError(line: startLine, message: "unclosed parenthesis") }
        return zone
    }

    static func absolute(_ name: String, _ origin: String) -> String {
        if name.hasSuffix(".") { return key(name) }
        return origin.isEmpty ? key(name) : key(name) + "." + origin
    }

    /// Splits a line into fields: quoted strings (escapes decoded) stay one
    /// field, ";" starts a comment, parentheses are counted and dropped.
    static func tokenize(_ line: String, line n: Int) throws(DNSZoneError) -> ([String], Int, Int) {
        var out: [String] = []
        var opens = 0, closes = 0
        var cur: [UInt8] = []
        var inQuote = false, quoted = false
        let b = Array(line.utf8)
        var i = 0
        func flush() {
            if !cur.isEmpty || quoted { out.append(String(decoding: cur, as: UTF8.self)) }
            cur = []
            quoted = false
        }
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\\"), i + 1 < b.count {
                if i + 3 < b.count, let v = Int(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self)), v < 256,
                   b[(i + 1)...(i + 3)].allSatisfy({ $0 >= 48 && $0 <= 57 }) {
                    cur.append(UInt8(v))
                    i += 4
                } else {
                    cur.append(b[i + 1])
                    i += 2
                }
                continue
            }
            if inQuote {
                if c == UInt8(ascii: "\"") { inQuote = false; flush() } else { cur.append(c) }
            } else if c == UInt8(ascii: "\"") {
                flush()
                inQuote = true
                quoted = true
            } else if c == UInt8(ascii: ";") {
                break
            } else if c == UInt8(ascii: "(") || c == UInt8(ascii: ")") {
                flush()
                if c == UInt8(ascii: "(") { opens += 1 } else { closes += 1 }
            } else if c == 32 || c == 9 || c == 13 {
                flush()
            } else {
                cur.append(c)
            }
            i += 1
        }
        if inQuote { throw DNSZoneError(line: n, message: "unclosed quote") }
        flush()
        return (out, opens, closes)
    }
}
