import MailMessage
import Policy

/// The Authentication-Results header (RFC 8601) mxgate writes into every
/// message it passes on, and the removal of incoming ones that claim to be
/// ours (§5): otherwise any sender could write our verdict for us.
enum AuthenticationResults {
    /// "Authentication-Results: ID; spf=pass smtp.mailfrom=D; spf=pass smtp.helo=H;
    /// dkim=pass header.d=D header.s=S; dmarc=pass (p=reject dis=none) header.from=D; arc=pass",
    /// or "ID; none" when nothing was checked. Folded, one result a line.
    static func header(authservID: String, facts: SessionFacts) -> String {
        var results: [String] = []
        if let spf = facts.spf, case .mailbox? = facts.mailFrom {
            results.append("spf=\(spf.result) smtp.mailfrom=\(value(spf.domain))")
        }
        if let helo = facts.spfHelo, let name = facts.helo {
            results.append("spf=\(helo.result) smtp.helo=\(value(name))")
        }
        if let dkim = facts.dkim {
            if dkim.isEmpty { results.append("dkim=none") }
            for s in dkim where !s.domain.isEmpty {
                results.append("dkim=\(s.result) header.d=\(value(s.domain)) header.s=\(value(s.selector ?? ""))")
            }
        }
        if let dmarc = facts.dmarc {
            var r = "dmarc=\(dmarc.result)"
            if let p = dmarc.policy { r += " (p=\(p) dis=\(dmarc.disposition))" }
            if !dmarc.domain.isEmpty { r += " header.from=\(value(dmarc.domain))" }
            results.append(r)
        }
        if let arc = facts.arc {
            var r = "arc=\(arc.result)"
            if let newest = arc.hops.first { r += " (i=\(newest.instance) d=\(value(newest.sealer)))" }
            if arc.oldestPass > 0 { r += " header.oldest-pass=\(arc.oldestPass)" }
            results.append(r)
        }
        let id = value(authservID)
        if results.isEmpty { return "Authentication-Results: \(id); none" }
        return "Authentication-Results: \(id);\r\n\t" + results.joined(separator: ";\r\n\t")
    }

    /// A property value as RFC 8601 §2.2 allows it: a dot-atom as it is,
    /// anything else as a quoted string (printable ASCII only).
    static func value(_ s: String) -> String {
        let atom = !s.isEmpty && s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "!#$%&'*+-/=?^_`{|}~.@".utf8.contains(b)
        }
        if atom { return s }
        var out = "\""
        for b in s.utf8 where b >= 0x20 && b < 0x7F {
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { out.append("\\") }
            out.append(Character(Unicode.Scalar(b)))
        }
        return out + "\""
    }

    /// The header fields of `text` without the Authentication-Results fields
    /// whose authserv-id is `authservID` (compared without case), and how
    /// many bytes of `text` they replace (up to the empty line that ends the
    /// section, which stays); nil when there is none.
    static func strippingForged(_ text: [UInt8], authservID: String) -> (header: [UInt8], replaces: Int)? {
        guard let end = HeaderSection.bounds(text)?.fieldsEnd, end > 0 else { return nil }
        let ours = authservID.lowercased()
        // Fields as ranges: from a line that does not start with white space to the next such line.
        var fields: [Range<Int>] = []
        var fieldStart = 0
        var j = 0
        var any = false
        while j < end {
            if j > fieldStart && text[j] != 32 && text[j] != 9 {
                fields.append(fieldStart..<j)
                fieldStart = j
            }
            // Most messages have no Authentication-Results at all: a look at the first letter of each field first.
            if j == fieldStart && (text[j] | 0x20) == UInt8(ascii: "a") { any = true }
            while j < end && text[j] != 10 { j += 1 }
            j += 1
        }
        fields.append(fieldStart..<end)
        guard any else { return nil }
        var kept: [UInt8] = []
        kept.reserveCapacity(end)
        var removed = false
        for f in fields {
            if Self.isOurs(text[f], ours) { removed = true } else { kept += text[f] }
        }
        guard removed else { return nil }
        // The empty line that ends the section stays in the text, as HeaderRewriter leaves it.
        return (kept, end)
    }

    /// Whether a whole field (name, colon, value with its folds) is an
    /// Authentication-Results field for `ours`. The authserv-id is the
    /// value's first token, after white space and comments.
    static func isOurs(_ field: ArraySlice<UInt8>, _ ours: String) -> Bool {
        let name = "authentication-results:".utf8
        guard field.count > name.count,
              zip(field.prefix(name.count), name).allSatisfy({ ($0 | 0x20) == ($1 | 0x20) || $0 == $1 }) else { return false }
        var v = field.dropFirst(name.count)
        var depth = 0
        while let c = v.first {
            if c == UInt8(ascii: "(") { depth += 1 } else if c == UInt8(ascii: ")") { depth = max(0, depth - 1) } else if depth == 0 && !(c == 32 || c == 9 || c == 13 || c == 10) { break }
            v = v.dropFirst()
        }
        var token: [UInt8] = []
        for c in v {
            if c == UInt8(ascii: ";") || c == 32 || c == 9 || c == 13 || c == 10 || c == UInt8(ascii: "(") { break }
            token.append(c >= 65 && c <= 90 ? c + 32 : c)
        }
        return String(decoding: token, as: UTF8.self) == ours
    }
}
