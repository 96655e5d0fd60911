import Foundation
import MailMessage

/// A DMARC policy record (RFC 7489 §6.3, RFC 9989 §4.7): only what a
/// receiver acts on. Reporting tags (rua, ruf, fo, rf, ri) are read past;
/// unknown tags are ignored, as RFC 9989 requires.
public struct DMARCRecord: Sendable, Equatable {
    public enum Policy: String, Sendable, CaseIterable {
        case none, quarantine, reject

        /// One step less strict (RFC 7489 §6.6.4 sampling, RFC 9989 t=y).
        var relaxed: Policy { self == .reject ? .quarantine : .none }
    }

    /// p=; a record without a valid p= is read as p=none (RFC 9989 §4.7).
    public var policy: Policy = .none
    /// sp=, for subdomains of the domain that published it.
    public var subdomainPolicy: Policy?
    /// np=, for subdomains that do not exist (RFC 9091, RFC 9989).
    public var nonexistentPolicy: Policy?
    /// adkim=s / aspf=s: strict alignment (the default is relaxed).
    public var strictDKIM = false
    public var strictSPF = false
    /// pct= (RFC 7489 only; RFC 9989 removed it): the share of failing mail the policy applies to.
    public var percent: Int?
    /// t=y (RFC 9989): the domain is testing; the policy is applied one step less strict.
    public var testing = false
    /// psd=: "y" a public suffix domain, "n" an organizational domain, "u" (default) unknown.
    public var psd: Character = "u"

    /// Records parsed before, by their text: a tree walk reads the same few for every message.
    static let parsed = RecordCache<DMARCRecord?>()

    /// `parse`, remembered.
    static func cachedParse(_ text: String) -> DMARCRecord? { parsed.value(for: text, parse) }

    /// Parses a TXT record; nil when it is not a DMARC record (it must
    /// begin with v=DMARC1, §6.4).
    public static func parse(_ text: String) -> DMARCRecord? {
        var tags: [(String, String)] = []
        for part in text.split(separator: ";", omittingEmptySubsequences: true) {
            // A part that is not tag=value is read past, like an unknown tag.
            guard let eq = part.firstIndex(of: "=") else { continue }
            let name = part[..<eq].trimmed.lowercased()
            let value = part[part.index(after: eq)...].trimmed
            tags.append((name, value))
        }
        guard let first = tags.first, first.0 == "v", first.1 == "DMARC1" else { return nil }
        var r = DMARCRecord()
        for (name, value) in tags.dropFirst() {
            let v = value.lowercased()
            switch name {
            case "p": r.policy = Policy(rawValue: v) ?? .none
            case "sp": r.subdomainPolicy = Policy(rawValue: v)
            case "np": r.nonexistentPolicy = Policy(rawValue: v)
            case "adkim": r.strictDKIM = v == "s"
            case "aspf": r.strictSPF = v == "s"
            case "pct": if let n = Int(v), (0...100).contains(n) { r.percent = n }
            case "t": r.testing = v == "y"
            case "psd": if v == "y" || v == "n" { r.psd = v.first! }
            default: break
            }
        }
        return r
    }
}
