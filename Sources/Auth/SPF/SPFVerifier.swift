import Checks
import Foundation
import Policy

/// An SPF result (RFC 7208 §2.6).
public enum SPFResult: String, Sendable, CaseIterable {
    case none, neutral, pass, fail, softfail, temperror, permerror
}

/// What one SPF check found: the result, the domain checked, and for the
/// record what matched or what went wrong.
public struct SPFOutcome: Sendable, Equatable {
    public var result: SPFResult
    public var domain: String
    /// The explanation for a fail (the record's exp=), when it gave one.
    public var explanation: String?
    /// The mechanism that matched, or why the result is an error.
    public var reason: String?
}

/// check_host() of RFC 7208 §4, over any DNS source: every mechanism and
/// modifier, macros, the limit of 10 DNS-querying terms and 2 void lookups
/// (§4.6.4), at most 10 MX and PTR names per lookup. DNS failures are
/// temperror; nothing is guessed.
public struct SPFVerifier: Sendable {
    let dns: any DNSLookup
    /// Seconds one DNS query may take.
    let queryTimeout: Double?
    /// The receiving host's name, for %{r} in explanations.
    let receiver: String
    /// When the whole check must be done (the message's DNS budget): a
    /// lookup past it counts as timed out, so the result is temperror.
    let deadline: ContinuousClock.Instant?

    public init(dns: any DNSLookup, queryTimeout: Double? = nil, receiver: String = "unknown",
                deadline: ContinuousClock.Instant? = nil) {
        self.dns = dns
        self.queryTimeout = queryTimeout
        self.receiver = receiver
        self.deadline = deadline
    }

    /// The MAIL FROM identity; with a null sender, `postmaster@HELO` (§2.4).
    public func checkMailFrom(ip: IPAddress, sender: String, helo: String) async -> SPFOutcome {
        var local = "postmaster", domain = helo
        if let at = sender.lastIndex(of: "@") {
            domain = String(sender[sender.index(after: at)...])
            let l = String(sender[..<at])
            if !l.isEmpty { local = l }
        } else if !sender.isEmpty {
            domain = sender  // a bare domain: postmaster at it
        }
        return await check(ip: ip, domain: domain, local: local, helo: helo)
    }

    /// The HELO identity (§2.3).
    public func checkHelo(ip: IPAddress, helo: String) async -> SPFOutcome {
        await check(ip: ip, domain: helo, local: "postmaster", helo: helo)
    }

    func check(ip: IPAddress, domain: String, local: String, helo: String) async -> SPFOutcome {
        let run = Run(verifier: self, ip: ip, local: local, senderDomain: domain, helo: helo)
        var (result, explanation, reason) = await run.checkHost(domain)
        if result != .fail { explanation = nil }
        return SPFOutcome(result: result, domain: domain, explanation: explanation, reason: reason)
    }

    /// A domain SPF can be checked for (§4.3): labels of 1–63 octets, at least two of them.
    static func isCheckable(_ domain: String) -> Bool {
        // Over the UTF-8 bytes: split(separator:) on Characters cost as much as parsing the record.
        var bytes = domain.utf8[...]
        if bytes.last == UInt8(ascii: ".") { bytes = bytes.dropLast() }
        guard bytes.count <= 253 else { return false }
        var labels = 0, length = 0
        for b in bytes {
            if b == UInt8(ascii: ".") {
                guard length > 0 else { return false }
                labels += 1
                length = 0
            } else {
                length += 1
                if length > 63 { return false }
            }
        }
        return length > 0 && labels >= 1
    }
}

/// One evaluation, with its counters (they span includes and redirects).
private final class Run: @unchecked Sendable {
    let v: SPFVerifier
    let ip: IPAddress
    let local: String
    let senderDomain: String
    let helo: String
    var lookups = 0
    var voids = 0
    var validatedName: String?

    init(verifier: SPFVerifier, ip: IPAddress, local: String, senderDomain: String, helo: String) {
        v = verifier
        self.ip = ip
        self.local = local
        self.senderDomain = senderDomain
        self.helo = helo
    }

    struct Stop: Error {
        let result: SPFResult
        let reason: String
    }

    func query(_ name: String, _ type: Int32) async -> Result<[[UInt8]], DNSError> {
        guard SPFVerifier.isCheckable(name) else { return .failure(.nxdomain) }
        var timeout = v.queryTimeout
        if let deadline = v.deadline {
            let seconds = ContinuousClock.now.duration(to: deadline).inSeconds
            guard seconds > 0 else { return .failure(.timeout) }
            timeout = min(timeout ?? seconds, seconds)
        }
        return await v.dns.query(name, type: type, timeout: timeout)
    }

    /// A lookup that may come back empty: counts a void one, throws on a failure.
    func records(_ name: String, _ type: Int32) async throws(Stop) -> [[UInt8]] {
        switch await query(name, type) {
        case .success(let r) where !r.isEmpty:
            return r
        case .success, .failure(.nxdomain), .failure(.noData):
            voids += 1
            if voids > 2 { throw Stop(result: .permerror, reason: "more than 2 void DNS lookups") }
            return []
        case .failure(let e):
            throw Stop(result: .temperror, reason: "DNS lookup of \(name) failed: \(e)")
        }
    }

    func countLookup() throws(Stop) {
        lookups += 1
        if lookups > 10 { throw Stop(result: .permerror, reason: "more than 10 DNS-querying terms") }
    }

    func checkHost(_ domain: String) async -> (SPFResult, String?, String?) {
        do {
            return try await evaluate(domain)
        } catch {
            return (error.result, nil, error.reason)
        }
    }

    /// check_host for `domain`: (result, explanation, reason).
    func evaluate(_ domain: String) async throws(Stop) -> (SPFResult, String?, String?) {
        guard SPFVerifier.isCheckable(domain) else { return (.none, nil, "not a domain SPF applies to: \(domain)") }
        let texts: [String]
        switch await query(domain, DNSType.txt) {
        case .success(let r):
            texts = r.map { String(decoding: DNSRecord.text($0), as: UTF8.self) }
        case .failure(.nxdomain), .failure(.noData):
            return (.none, nil, "no SPF record for \(domain)")
        case .failure(let e):
            return (.temperror, nil, "DNS lookup of \(domain) failed: \(e)")
        }
        let spf = texts.filter(SPFRecord.isSPF)
        guard !spf.isEmpty else { return (.none, nil, "no SPF record for \(domain)") }
        guard spf.count == 1 else { return (.permerror, nil, "\(domain) has \(spf.count) SPF records") }
        let record: SPFRecord
        do { record = try SPFRecord.cachedParse(spf[0]) } catch { return (.permerror, nil, "\(domain): \(error)") }

        for d in record.directives {
            if d.mechanism.queriesDNS { try countLookup() }
            if try await matches(d.mechanism, domain) {
                let result: SPFResult
                switch d.qualifier {
                case .pass: result = .pass
                case .fail: result = .fail
                case .softfail: result = .softfail
                case .neutral: result = .neutral
                }
                let why = "\(domain): matched \(Self.describe(d))"
                return (result, result == .fail ? await explanation(record, domain) : nil, why)
            }
        }
        if let redirect = record.redirect {
            try countLookup()
            let target = await domainName(redirect, domain)
            let (r, e, why) = try await evaluate(target)
            if r == .none { return (.permerror, nil, "redirect to \(target), which has no SPF record") }
            return (r, e, why)
        }
        return (.neutral, nil, "\(domain): nothing matched")
    }

    func matches(_ m: SPFRecord.Mechanism, _ domain: String) async throws(Stop) -> Bool {
        switch m {
        case .all:
            return true
        case .ip4(let net), .ip6(let net):
            return net.contains(ip) && net.isV4 == ip.isV4
        case .include(let spec):
            let target = await domainName(spec, domain)
            let (r, _, why) = try await evaluate(target)
            switch r {
            case .pass: return true
            case .fail, .softfail, .neutral: return false
            case .temperror: throw Stop(result: .temperror, reason: why ?? "include:\(target)")
            case .permerror, .none: throw Stop(result: .permerror, reason: "include:\(target) gave \(r.rawValue)")
            }
        case .a(let spec, let v4, let v6):
            let target = spec == nil ? domain : await domainName(spec!, domain)
            return try await addressMatches(target, v4, v6, countVoid: true)
        case .mx(let spec, let v4, let v6):
            let target = spec == nil ? domain : await domainName(spec!, domain)
            let hosts = try await records(target, DNSType.mx).compactMap(DNSRecord.mx).map(\.host)
            if hosts.count > 10 { throw Stop(result: .permerror, reason: "\(target) has more than 10 MX records") }
            for h in hosts where !h.isEmpty {
                if try await addressMatches(h, v4, v6, countVoid: false) { return true }
            }
            return false
        case .ptr(let spec):
            let target = spec == nil ? domain : await domainName(spec!, domain)
            return await validatedNames(within: target).contains { Self.isWithin($0, target) }
        case .exists(let spec):
            let target = await domainName(spec, domain)
            return !(try await records(target, DNSType.a)).isEmpty
        }
    }

    func addressMatches(_ host: String, _ v4: Int, _ v6: Int, countVoid: Bool) async throws(Stop) -> Bool {
        let type = ip.isV4 ? DNSType.a : DNSType.aaaa
        let found: [[UInt8]]
        if countVoid {
            found = try await records(host, type)
        } else {
            switch await query(host, type) {
            case .success(let r): found = r
            case .failure(.nxdomain), .failure(.noData): found = []
            case .failure(let e): throw Stop(result: .temperror, reason: "DNS lookup of \(host) failed: \(e)")
            }
        }
        let prefix = ip.isV4 ? 96 + v4 : v6
        let mask: UInt128 = prefix == 0 ? 0 : ~UInt128(0) << (128 - prefix)
        return found.compactMap(DNSRecord.address).contains { $0.isV4 == ip.isV4 && $0.value & mask == ip.value & mask }
    }

    /// The client's PTR names that resolve back to it (§5.5), at most 10 tried;
    /// DNS errors only mean fewer names.
    func validatedNames(within target: String?) async -> [String] {
        guard case .success(let ptrs) = await query(ip.reverseName, DNSType.ptr) else { return [] }
        var names = ptrs.compactMap(DNSRecord.name).prefix(10).map { $0 }
        if let target { names.sort { Self.isWithin($0, target) && !Self.isWithin($1, target) } }
        var out: [String] = []
        for n in names {
            if case .success(let addrs) = await query(n, ip.isV4 ? DNSType.a : DNSType.aaaa),
               addrs.compactMap(DNSRecord.address).contains(ip) {
                out.append(n)
            }
        }
        return out
    }

    static func isWithin(_ name: String, _ domain: String) -> Bool {
        let n = DNSZone.key(name), d = DNSZone.key(domain)
        return n == d || n.hasSuffix("." + d)
    }

    func domainName(_ spec: MacroString, _ domain: String) async -> String {
        MacroString.truncated(await spec.expand { await self.letter($0, domain, explanation: false) })
    }

    func letter(_ c: Character, _ domain: String, explanation: Bool) async -> String {
        switch c {
        case "s": return "\(local)@\(senderDomain)"
        case "l": return local
        case "o": return senderDomain
        case "d": return domain
        case "i":
            if ip.isV4 { return ip.description }
            return (0..<32).map { String(UInt8(truncatingIfNeeded: ip.value >> (124 - 4 * UInt128($0))) & 0xF, radix: 16) }
                .joined(separator: ".")
        case "p":
            if validatedName == nil {
                let names = await validatedNames(within: domain)
                validatedName = names.first { Self.isWithin($0, domain) } ?? names.first ?? "unknown"
            }
            return validatedName!
        case "v": return ip.isV4 ? "in-addr" : "ip6"
        case "h": return helo
        case "c": return ip.description
        case "r": return v.receiver
        case "t": return String(Int(Date().timeIntervalSince1970))
        default: return ""
        }
    }

    /// exp= (§6.2): one TXT record whose text is expanded; any problem means no explanation.
    func explanation(_ record: SPFRecord, _ domain: String) async -> String? {
        guard let exp = record.exp else { return nil }
        let name = await domainName(exp, domain)
        guard case .success(let r) = await query(name, DNSType.txt), r.count == 1 else { return nil }
        let text = String(decoding: DNSRecord.text(r[0]), as: UTF8.self)
        guard let m = try? MacroString.parse(text, explanation: true) else { return nil }
        return await m.expand { await self.letter($0, domain, explanation: true) }
    }

    static func describe(_ d: SPFRecord.Directive) -> String {
        let q: String
        switch d.qualifier {
        case .pass: q = ""
        case .fail: q = "-"
        case .softfail: q = "~"
        case .neutral: q = "?"
        }
        switch d.mechanism {
        case .all: return q + "all"
        case .include: return q + "include"
        case .a: return q + "a"
        case .mx: return q + "mx"
        case .ptr: return q + "ptr"
        case .ip4(let n): return q + "ip4:\(n)"
        case .ip6(let n): return q + "ip6:\(n)"
        case .exists: return q + "exists"
        }
    }
}
