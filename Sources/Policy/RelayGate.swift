import SMTPProtocol

/// Relay permission as a fixed gate before any rule (DESIGN.md): a recipient
/// is accepted only if its domain is one of ours and its address carries no
/// routing trick that a downstream might act on. No rule can open this gate.
public struct RelayGate: Sendable {
    /// Exact domains, lower case.
    public let domains: Set<String>
    /// Parent domains written as ".example.com": any subdomain matches.
    public let parentDomains: [String]

    public static let relayDenied = "Relay access denied"

    public init(domains: [String]) {
        var exact = Set<String>()
        var parents: [String] = []
        for d in domains.map({ $0.lowercased() }) {
            if d.hasPrefix(".") { parents.append(d) } else { exact.insert(d) }
        }
        self.domains = exact
        self.parentDomains = parents
    }

    public var primaryDomain: String? { domains.sorted().first ?? parentDomains.first.map { String($0.dropFirst()) } }

    public func accepts(domain: String) -> Bool {
        let d = domain.lowercased()
        return domains.contains(d) || parentDomains.contains { d.hasSuffix($0) }
    }

    /// nil when the recipient may be relayed; otherwise the 554 reply with the
    /// reason, which goes into the audit record as the rule `relay-gate`.
    public func check(_ box: Mailbox) -> SMTPReply? {
        func deny(_ why: String) -> SMTPReply {
            SMTPReply(554, "5.7.1", "<\(box)>: \(Self.relayDenied) (\(why))")
        }
        if box.domain.isEmpty {
            // RFC 5321 §4.5.1: <Postmaster> is always ours.
            return box.localPart.lowercased() == "postmaster" && primaryDomain != nil ? nil : deny("no domain")
        }
        if !box.sourceRoute.isEmpty { return deny("source route") }
        if box.isAddressLiteral { return deny("address literal") }
        // The % hack, bang paths and quoted '@' turn a local part into a route.
        if box.localPart.contains(where: { $0 == "%" || $0 == "!" || $0 == "@" }) { return deny("routing characters in local part") }
        if box.wasQuoted && box.localPart.contains(where: { $0 == "\"" || $0 == "\\" || $0 == " " }) {
            return deny("quoted local part")
        }
        if !accepts(domain: box.domain) { return deny("domain not accepted here") }
        return nil
    }
}
