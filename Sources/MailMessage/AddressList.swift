/// The domains of an RFC 5322 address list (From, Reply-To, To): DMARC
/// needs the From domain, and a display name or a comment must never be
/// mistaken for it ("paypal.com" <x@evil.example> is evil.example).
public enum AddressList {
    /// Every mailbox's domain, lowercased, without a trailing dot, in order;
    /// a mailbox without `@` gives nothing. Groups (`name: a, b;`),
    /// comments, quoted strings and angle addresses are understood.
    public static func domains(in value: String) -> [String] {
        addresses(in: value).compactMap(domain(of:))
    }

    /// The domain of one address, lower case, without a trailing dot; nil when it has none.
    public static func domain(of address: String) -> String? {
        guard let at = address.lastIndex(of: "@") else { return nil }
        var d = address[address.index(after: at)...].lowercased()
        while d.hasSuffix(".") { d.removeLast() }
        return d.isEmpty ? nil : d
    }

    /// The addr-specs of the list, with comments and white space removed.
    /// Read by Unicode scalar, not by Character: every delimiter is ASCII,
    /// and grapheme breaking and Character's property lookups were most of
    /// the cost for every message's From, Reply-To and To.
    public static func addresses(in value: String) -> [String] {
        var out: [String] = []
        var plain = String.UnicodeScalarView()    // the mailbox's text outside <> (an addr-spec when there is no <>)
        var angle: String.UnicodeScalarView?      // inside <>, when the mailbox has one
        var inAngle = false
        var quoted = false, escaped = false
        var depth = 0                             // comment nesting
        func flush() {
            let spec = String(angle ?? plain)
            if !spec.isEmpty { out.append(spec) }
            plain = String.UnicodeScalarView()
            angle = nil
        }
        for c in value.unicodeScalars {
            if escaped {
                escaped = false
                if quoted { plain.append(c) }
                continue
            }
            if depth > 0 {
                if c == "\\" { escaped = true } else if c == "(" { depth += 1 } else if c == ")" { depth -= 1 }
                continue
            }
            if quoted {
                if c == "\\" { escaped = true } else if c == "\"" { quoted = false } else { plain.append(c) }
                continue
            }
            switch c {
            case "(": depth = 1
            case "\"": quoted = true
            case "<" where !inAngle:
                inAngle = true
                angle = String.UnicodeScalarView()
            case ">" where inAngle: inAngle = false
            case ",", ";":
                if !inAngle { flush() }
            case ":" where !inAngle:
                plain = String.UnicodeScalarView()  // a group's name
            case " ", "\t", "\r", "\n", "\u{0B}", "\u{0C}":
                break
            case _ where c.value >= 0x80 && c.properties.isWhitespace:
                break
            default:
                if inAngle { angle?.append(c) } else { plain.append(c) }
            }
        }
        flush()
        // A route (<@a,@b:x@y>) keeps only its mailbox.
        return out.map { spec in spec.lastIndex(of: ":").map { String(spec[spec.index(after: $0)...]) } ?? spec }
    }
}
