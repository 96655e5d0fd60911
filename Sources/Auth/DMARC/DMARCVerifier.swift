import Checks
import Foundation
import Policy

/// What DMARC concluded for a message (RFC 7489 §6.6, RFC 9989 §5.3).
public struct DMARCOutcome: Sendable, Equatable {
    public enum Result: String, Sendable, CaseIterable {
        case pass, fail, none, temperror, permerror
    }
    public var result: Result
    /// The RFC5322.From domain evaluated (for several, the one that decided).
    public var domain: String
    /// The policy the domain asks for mail that fails (p=, sp= or np=, as
    /// it applies to this domain); nil when there is no policy record.
    public var policy: DMARCRecord.Policy?
    /// What DMARC asks to do with this message: the policy for a failure,
    /// eased by t=y, pct= sampling or a trusted ARC sealer; none otherwise.
    public var disposition: DMARCRecord.Policy
    /// In words: what aligned, or why nothing did.
    public var reason: String
    /// Where the policy record was found (the domain, its organizational
    /// domain, or a public suffix domain).
    public var policyDomain: String?
}

/// DMARC evaluation over any DNS source: the policy and the organizational
/// domain found by RFC 9989's DNS tree walk (§4.10), not a public suffix
/// list; strict and relaxed alignment of the SPF and DKIM results with the
/// From domain; np=, psd=, t=, and pct= as RFC 7489 §6.6.4 reads it.
/// A lookup that fails temporarily makes the result temperror, never pass
/// or none.
public struct DMARCVerifier: Sendable {
    let dns: any DNSLookup
    let queryTimeout: Double?
    let deadline: ContinuousClock.Instant?
    /// pct= sampling draws from this (tests fix it); 0..<100.
    let sample: @Sendable () -> Int

    public init(dns: any DNSLookup, queryTimeout: Double? = nil, deadline: ContinuousClock.Instant? = nil,
                sample: @escaping @Sendable () -> Int = { Int.random(in: 0..<100) }) {
        self.dns = dns
        self.queryTimeout = queryTimeout
        self.deadline = deadline
        self.sample = sample
    }

    /// An authenticated identifier: SPF's MAIL FROM (or HELO) domain, or a
    /// DKIM signature's d=, with its result.
    public struct Identifier: Sendable {
        public var result: String
        public var domain: String
        public init(result: String, domain: String) {
            self.result = result
            self.domain = domain.lowercased()
        }
    }

    /// Evaluates every distinct From domain; the outcome reported is the
    /// one that matters most (a failure before a temperror before an error;
    /// the stricter policy first). No From domain at all is permerror: the
    /// author cannot be checked (RFC 7489 §6.6.1). `vouches` are the
    /// newest hops of a chain that passed ARC, each sealed by a trusted
    /// sealer: one that saw DMARC pass for the domain turns a failure into a pass.
    public func evaluate(fromDomains: [String], spf: Identifier?, dkim: [Identifier],
                         vouches: [ARCCheck.Hop] = []) async -> DMARCOutcome {
        var distinct: [String] = []
        for d in fromDomains.map({ $0.lowercased() }) where !distinct.contains(d) { distinct.append(d) }
        guard !distinct.isEmpty else {
            return DMARCOutcome(result: .permerror, domain: "", policy: nil, disposition: .none,
                                reason: "the From header has no domain to check")
        }
        let walk = TreeWalk(verifier: self)
        var outcomes: [DMARCOutcome] = []
        for d in distinct.prefix(5) {
            outcomes.append(await evaluate(d, spf: spf, dkim: dkim, vouches: vouches, walk: walk))
        }
        func rank(_ o: DMARCOutcome) -> Int {
            let r: Int = switch o.result {
            case .fail: 4
            case .temperror: 3
            case .permerror: 2
            case .none: 1
            case .pass: 0
            }
            let p: Int = switch o.disposition { case .reject: 2; case .quarantine: 1; case .none: 0 }
            return r * 10 + p
        }
        var worst = outcomes[0]
        for o in outcomes.dropFirst() where rank(o) > rank(worst) { worst = o }
        if distinct.count > 1 { worst.reason += " (the From header names \(distinct.count) domains)" }
        return worst
    }

    private func evaluate(_ author: String, spf: Identifier?, dkim: [Identifier], vouches: [ARCCheck.Hop],
                          walk: TreeWalk) async -> DMARCOutcome {
        // 1. The policy (§4.10.1): the first record of the walk up from the From domain.
        let found: (name: String, record: DMARCRecord)?
        switch await walk.policy(for: author) {
        case .success(let f): found = f
        case .failure(let e):
            return DMARCOutcome(result: .temperror, domain: author, policy: nil, disposition: .none,
                                reason: "the DMARC policy lookup for \(author) failed: \(e)")
        }
        guard let found else {
            return DMARCOutcome(result: .none, domain: author, policy: nil, disposition: .none,
                                reason: "\(author) publishes no DMARC policy")
        }
        let record = found.record
        var policy = record.policy
        if found.name != author {
            policy = record.subdomainPolicy ?? record.policy
            if let np = record.nonexistentPolicy, np != policy, await walk.doesNotExist(author) { policy = np }
        }
        var out = DMARCOutcome(result: .fail, domain: author, policy: policy, disposition: .none, reason: "",
                               policyDomain: found.name)

        // 2. Alignment (§4.4): an identifier that passed, in the same
        // domain (strict) or organization (relaxed) as the author.
        var unknown: [String] = []
        func aligned(_ id: Identifier, strict: Bool) async -> Bool? {
            if id.domain == author { return true }
            if strict { return false }
            return await walk.sameOrganization(id.domain, author)
        }
        for sig in dkim where sig.result == "pass" {
            switch await aligned(sig, strict: record.strictDKIM) {
            case true?:
                out.result = .pass
                out.reason = "DKIM signature of \(sig.domain) aligns with \(author)"
                return out
            case nil: unknown.append("the organizational domain of \(sig.domain)")
            case false?: break
            }
        }
        if let spf, spf.result == "pass" {
            switch await aligned(spf, strict: record.strictSPF) {
            case true?:
                out.result = .pass
                out.reason = "SPF pass for \(spf.domain) aligns with \(author)"
                return out
            case nil: unknown.append("the organizational domain of \(spf.domain)")
            case false?: break
            }
        }
        // A check that could not finish might have aligned: not a failure we can stand by.
        // Under the record's own alignment mode: strict, a subdomain's check could never have aligned.
        let pending = dkim.map { ($0, record.strictDKIM) } + (spf.map { [($0, record.strictSPF)] } ?? [])
        for (id, strict) in pending where id.result == "temperror" {
            if await aligned(id, strict: strict) != false { unknown.append("the \(id.domain) check") }
        }
        if !unknown.isEmpty {
            out.result = .temperror
            out.reason = "could not finish \(unknown.joined(separator: ", ")) (DNS failed temporarily)"
            return out
        }
        var parts: [String] = []
        if let spf { parts.append("SPF \(spf.result) for \(spf.domain.isEmpty ? "-" : spf.domain)") } else { parts.append("no SPF result") }
        if dkim.isEmpty { parts.append("no DKIM signature") }
        for s in dkim { parts.append("DKIM \(s.result) for \(s.domain.isEmpty ? "-" : s.domain)") }
        out.reason = "nothing aligns with \(author): " + parts.joined(separator: ", ")

        // 3. A trusted ARC sealer saw it pass before a forwarder broke it (RFC 8617 §7.2).
        if let v = vouches.first(where: { $0.dmarc == "pass" && ($0.headerFrom == nil || $0.headerFrom == author) }) {
            out.result = .pass
            out.reason = "trusted ARC sealer \(v.sealer) (i=\(v.instance)) saw DMARC pass for \(author); here \(out.reason)"
            return out
        }

        // 4. The disposition: the policy, eased for testing and sampling.
        var disposition = policy
        if record.testing {
            disposition = disposition.relaxed
            out.reason += "; t=y (testing)"
        } else if let pct = record.percent, pct < 100, sample() >= pct {
            disposition = disposition.relaxed
            out.reason += "; sampled out by pct=\(pct)"
        }
        out.disposition = disposition
        return out
    }

    /// One query for a policy record: the record when exactly one TXT
    /// record at _dmarc.NAME is DMARC (several: none counts, §4.10).
    func record(at name: String) async -> Result<DMARCRecord?, DNSError> {
        if let deadline, ContinuousClock.now >= deadline { return .failure(.timeout) }
        switch await dns.query("_dmarc.\(name)", type: DNSType.txt, timeout: queryTimeout) {
        case .success(let rdata):
            let records = rdata.compactMap { DMARCRecord.cachedParse(String(decoding: DNSRecord.text($0), as: UTF8.self)) }
            return .success(records.count == 1 ? records[0] : nil)
        case .failure(let e) where e.isDefinite: return .success(nil)
        case .failure(let e): return .failure(e)
        }
    }

    /// Whether a name has no A, AAAA or MX record (RFC 9091 §2.7's
    /// non-existent domain); a failed lookup counts as existing.
    func exists(_ name: String) async -> Bool {
        for type in [DNSType.a, DNSType.aaaa, DNSType.mx] {
            switch await dns.query(name, type: type, timeout: queryTimeout) {
            case .failure(.nxdomain): return false
            case .failure(.noData): continue
            default: return true
            }
        }
        return false
    }

    /// The names a tree walk queries, in order (§4.10): the name itself,
    /// then (from at most 7 labels) one label fewer each time, down to the
    /// top-level domain.
    static func walkTargets(_ domain: String) -> [String] {
        // The usual name (no empty label): each parent is the text after a
        // dot, cut from the name's bytes rather than joined from its labels.
        let u = domain.utf8
        if let first = u.first, first != UInt8(ascii: "."), u.last != UInt8(ascii: "."), !domain.containsBytes("..") {
            var afterDots: [String.Index] = []
            var i = u.startIndex
            while i < u.endIndex {
                if u[i] == UInt8(ascii: ".") { afterDots.append(u.index(after: i)) }
                i = u.index(after: i)
            }
            // The parents with at most 7 labels, longest first.
            return [domain] + afterDots.suffix(7).map { String(domain[$0...]) }
        }
        let labels = domain.split(separator: ".").map(String.init)
        guard !labels.isEmpty else { return [] }
        var out = [domain]
        var n = min(labels.count - 1, 7)
        while n >= 1 {
            out.append(labels.suffix(n).joined(separator: "."))
            n -= 1
        }
        return out
    }
}

/// One message's tree walks, sharing their queries: the From domain and
/// every identifier climb through the same parents.
final class TreeWalk {
    let verifier: DMARCVerifier
    private var records: [String: Result<DMARCRecord?, DNSError>] = [:]

    init(verifier: DMARCVerifier) { self.verifier = verifier }

    func record(_ name: String) async -> Result<DMARCRecord?, DNSError> {
        if let r = records[name] { return r }
        let r = await verifier.record(at: name)
        records[name] = r
        return r
    }

    /// The first record up the tree from `domain`, and where it was.
    func policy(for domain: String) async -> Result<(name: String, record: DMARCRecord)?, DNSError> {
        for target in DMARCVerifier.walkTargets(domain) {
            switch await record(target) {
            case .failure(let e): return .failure(e)
            case .success(let r?): return .success((target, r))
            case .success(nil): continue
            }
        }
        return .success(nil)
    }

    /// The organizational domain (§4.10.2): where a record says psd=n; one
    /// label below a record that says psd=y; else the record with the fewest
    /// labels; with no record, the domain itself.
    func organization(of domain: String) async -> Result<String, DNSError> {
        let labels = domain.split(separator: ".")
        var fewest: String?
        for target in DMARCVerifier.walkTargets(domain) {
            switch await record(target) {
            case .failure(let e): return .failure(e)
            case .success(nil): continue
            case .success(let r?):
                if r.psd == "n" { return .success(target) }
                if r.psd == "y" && target != domain {
                    let n = target.split(separator: ".").count + 1
                    return .success(labels.suffix(n).joined(separator: "."))
                }
                fewest = target
            }
        }
        return .success(fewest ?? domain)
    }

    /// Relaxed alignment: the two names have the same organizational domain;
    /// nil when a lookup failed. Names with no label in common never align,
    /// with no lookup at all.
    func sameOrganization(_ a: String, _ b: String) async -> Bool? {
        let la = a.split(separator: "."), lb = b.split(separator: ".")
        guard let ta = la.last, let tb = lb.last, ta == tb else { return false }
        guard case .success(let oa) = await organization(of: a) else { return nil }
        guard case .success(let ob) = await organization(of: b) else { return nil }
        return oa == ob
    }

    private var nonexistent: [String: Bool] = [:]

    func doesNotExist(_ name: String) async -> Bool {
        if let v = nonexistent[name] { return v }
        let v = !(await verifier.exists(name))
        nonexistent[name] = v
        return v
    }
}
