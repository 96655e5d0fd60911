import Audit
import Auth
import Checks
import Policy

/// SPF (RFC 7208) at MAIL: the MAIL FROM identity and the HELO identity,
/// side by side, within what is left of the message's DNS budget. With a
/// null sender the HELO result stands for the sender (§2.4).
struct SPFAnalyzer: Analyzer {
    let name = "spf"
    let stage = InspectionStage.mail
    let needs: AnalyzerNeeds = [.envelope, .dns]
    /// The resolver, or an offline zone in `mxgate test --dns-zone`; nil: no DNS at all.
    let dns: (any DNSLookup)?
    /// Our name, for %{r} in explanations.
    let receiver: String

    func analyze(_ input: InspectionInput) async -> Findings {
        guard let ip = IPAddress(input.facts.clientIP) else { return Findings() }
        let helo = input.facts.helo ?? ""
        var sender = ""
        if case .mailbox(let box)? = input.facts.mailFrom { sender = box.description }
        guard let dns else {
            let none = AuthCheck(result: "temperror", domain: sender.isEmpty ? helo : Self.domain(of: sender),
                                 reason: "no DNS resolver")
            return Findings(facts: [.spf(none, helo: nil)])
        }
        let started = ContinuousClock.now
        let verifier = SPFVerifier(dns: dns, receiver: receiver, deadline: input.dnsDeadline(from: started))
        async let heloOutcome = helo.isEmpty ? nil : verifier.checkHelo(ip: ip, helo: helo)
        let mailOutcome = sender.isEmpty ? nil : await verifier.checkMailFrom(ip: ip, sender: sender, helo: helo)
        let heloCheck = await heloOutcome.map(Self.check)
        let mail = mailOutcome.map(Self.check) ?? heloCheck ?? AuthCheck(result: "none", domain: helo, reason: "no HELO name")
        var out = Findings(facts: [.spf(mail, helo: heloCheck)])
        let spent = ContinuousClock.now - started
        out.dnsSeconds = spent.inSeconds
        return out
    }

    static func check(_ o: SPFOutcome) -> AuthCheck {
        AuthCheck(result: o.result.rawValue, domain: o.domain.lowercased(), reason: o.explanation.map { "\(o.reason ?? ""); explanation: \($0)" } ?? o.reason)
    }

    static func domain(of sender: String) -> String {
        sender.lastIndex(of: "@").map { String(sender[sender.index(after: $0)...]) } ?? sender
    }
}

extension SessionFacts {
    /// The authentication results for the audit record; nil when nothing was checked.
    var auditAuth: AuditAuth? {
        let a = AuditAuth(spf: spf.map { .init(result: $0.result, domain: $0.domain) },
                          spfHelo: spfHelo.map { .init(result: $0.result, domain: $0.domain) },
                          dkim: dkim.map { $0.map { .init(result: $0.result, domain: $0.domain, selector: $0.selector ?? "") } },
                          dmarc: dmarc.map { .init(result: $0.result, domain: $0.domain, policy: $0.policy ?? "none", disposition: $0.disposition) },
                          arc: arc.map { .init(result: $0.result) })
        return a.isEmpty ? nil : a
    }
}
