import Foundation
import Testing
import Yams

@testable import Auth
import Checks
import Policy

/// The OpenSPF conformance suites (release 2014.04 for RFC 7208, and the
/// RFC 4408 one), copied into Suites/ with their licences: every test of
/// every scenario run through SPFVerifier against the scenario's zone. Where
/// a test allows several results, any of them passes; a given explanation
/// (other than the suite's DEFAULT) must be the one produced, up to case.
///
/// The zone follows the suite's own driver conventions: a name's SPF-type
/// records also serve as its TXT records unless it lists TXT records (or
/// "TXT: NONE"); TIMEOUT makes every query for a type the name has no record
/// of time out.
struct SPFConformanceTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let suite: String
        let scenario: String
        let name: String
        let helo: String
        let host: String
        let mailfrom: String
        let results: [String]
        let explanation: String?
        let zone: DNSZone
        var testDescription: String { "\(suite) \(scenario): \(name)" }
    }

    static let cases: [Case] = {
        var out: [Case] = []
        for suite in ["rfc7208-tests", "rfc4408-tests"] {
            guard let url = Bundle.module.url(forResource: suite, withExtension: "yml", subdirectory: "Suites"),
                  let yaml = try? String(contentsOf: url, encoding: .utf8),
                  let docs = try? Yams.load_all(yaml: yaml) else { continue }
            for case let doc as [String: Any] in docs {
                let scenario = doc["description"] as? String ?? "?"
                let zone = makeZone(doc["zonedata"] as? [String: Any] ?? [:])
                for case let (name, t as [String: Any]) in (doc["tests"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
                    let r = t["result"]
                    let results = (r as? [Any] ?? (r.map { [$0] } ?? [])).map { text($0) }
                    out.append(Case(suite: suite, scenario: scenario, name: name, helo: text(t["helo"]), host: text(t["host"]),
                                    mailfrom: text(t["mailfrom"]), results: results,
                                    explanation: t["explanation"].map(text), zone: zone))
                }
            }
        }
        return out
    }()

    static func text(_ v: Any?) -> String {
        switch v {
        case let s as String: return s
        case nil: return ""
        case let v?: return "\(v)"
        }
    }

    static func strings(_ v: Any?) -> [[UInt8]] {
        if let list = v as? [Any] { return list.map { Array(text($0).utf8) } }
        return [Array(text(v).utf8)]
    }

    static func makeZone(_ data: [String: Any]) -> DNSZone {
        let zone = DNSZone()
        for (name, rrs) in data {
            zone.addName(name)
            var spf: [[[UInt8]]] = []
            var hasTXT = false
            for rr in rrs as? [Any] ?? [] {
                if let s = rr as? String, s == "TIMEOUT" {
                    zone.addTimeout(name)
                    continue
                }
                guard let d = rr as? [String: Any], let (type, value) = d.first else { continue }
                switch type {
                case "SPF":
                    spf.append(value is [Any] && (value as! [Any]).isEmpty ? [] : strings(value))
                case "TXT":
                    hasTXT = true
                    if text(value) != "NONE" { zone.add(name, type: DNSType.txt, rdata: DNSZone.text(strings(value))) }
                case "A", "AAAA":
                    for a in (value as? [Any] ?? [value]) {
                        if let ip = IPAddress(text(a)) { zone.add(name, type: type == "A" ? DNSType.a : DNSType.aaaa, rdata: DNSZone.address(ip)) }
                    }
                case "MX":
                    if let mx = value as? [Any], mx.count == 2 {
                        zone.add(name, type: DNSType.mx, rdata: DNSZone.mx(Int(text(mx[0])) ?? 0, text(mx[1])))
                    }
                case "PTR":
                    zone.add(name, type: DNSType.ptr, rdata: DNSZone.wireName(text(value)))
                case "CNAME":
                    zone.add(name, type: DNSType.cname, rdata: DNSZone.wireName(text(value)))
                default:
                    continue
                }
            }
            if !hasTXT { for s in spf { zone.add(name, type: DNSType.txt, rdata: DNSZone.text(s)) } }
        }
        return zone
    }

    @Test func bothSuitesAreLoaded() {
        #expect(Self.cases.filter { $0.suite == "rfc7208-tests" }.count > 200)
        #expect(Self.cases.filter { $0.suite == "rfc4408-tests" }.count > 150)
    }

    @Test(arguments: Self.cases)
    func conformance(_ c: Case) async throws {
        let ip = try #require(IPAddress(c.host), "host \(c.host)")
        let verifier = SPFVerifier(dns: c.zone, receiver: "mx.example.com")
        let out = await verifier.checkMailFrom(ip: ip, sender: c.mailfrom, helo: c.helo)
        #expect(c.results.contains(out.result.rawValue), "got \(out.result.rawValue) (\(out.reason ?? "")), want \(c.results)")
        if let want = c.explanation, want != "DEFAULT", out.result == .fail {
            // Compared without case: the suite writes %{i}'s IPv6 nibbles in capitals, RFC 7208 §7.4's own
            // example in small letters, and both name the same DNS name.
            #expect(out.explanation?.lowercased() == want.lowercased())
        }
    }
}
