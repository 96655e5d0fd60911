import Foundation
import Testing
import Yams

@testable import Auth
import Checks
import Policy

/// DMARC evaluation against the cases in Data/dmarc-alignment.yml: strict
/// and relaxed alignment, sp=, np=, psd=, t=, pct=, the tree walk's
/// organizational domain, temporary failures, several From domains and
/// trusted ARC sealers. The table is data, so a case is added without code.
struct DMARCVerifierTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let zone: DNSZone
        let from: [String]
        let spf: DMARCVerifier.Identifier?
        let dkim: [DMARCVerifier.Identifier]
        let vouches: [ARCCheck.Hop]
        let want: [String: String?]
        var testDescription: String { name }
    }

    static let cases: [Case] = {
        guard let url = Bundle.module.url(forResource: "dmarc-alignment", withExtension: "yml", subdirectory: "Data"),
              let yaml = try? String(contentsOf: url, encoding: .utf8),
              let list = try? Yams.load(yaml: yaml) as? [[String: Any]] else { return [] }
        return list.map { c in
            let zone = DNSZone()
            for (name, value) in c["zone"] as? [String: Any] ?? [:] {
                switch value {
                case "exists" as String: zone.add(name, type: DNSType.a, rdata: [192, 0, 2, 1])
                case "timeout" as String: zone.addTimeout(name)
                case let texts as [String]: for t in texts { zone.add(name, type: DNSType.txt, rdata: DNSZone.text([Array(t.utf8)])) }
                case let t as String: zone.add(name, type: DNSType.txt, rdata: DNSZone.text([Array(t.utf8)]))
                default: break
                }
            }
            func id(_ v: Any?) -> DMARCVerifier.Identifier? {
                guard let d = v as? [String: Any], let r = d["result"] as? String, let dom = d["domain"] as? String else { return nil }
                return DMARCVerifier.Identifier(result: r, domain: dom)
            }
            let vouches = (c["vouches"] as? [[String: Any]] ?? []).enumerated().map { i, v in
                ARCCheck.Hop(instance: i + 1, sealer: v["sealer"] as? String ?? "", dmarc: v["dmarc"] as? String, headerFrom: v["from"] as? String)
            }
            var want: [String: String?] = [:]
            for (k, v) in c["want"] as? [String: Any] ?? [:] { want[k] = v as? String }
            return Case(name: c["name"] as? String ?? "?", zone: zone, from: c["from"] as? [String] ?? [], spf: id(c["spf"]),
                        dkim: (c["dkim"] as? [Any] ?? []).compactMap(id), vouches: vouches, want: want)
        }
    }()

    @Test func theTableIsLoaded() {
        #expect(Self.cases.count >= 30)
    }

    @Test(arguments: Self.cases)
    func evaluates(_ c: Case) async {
        let verifier = DMARCVerifier(dns: c.zone, sample: { 50 })
        let o = await verifier.evaluate(fromDomains: c.from, spf: c.spf, dkim: c.dkim, vouches: c.vouches)
        #expect(o.result.rawValue == c.want["result"] ?? nil, "\(o.reason)")
        #expect(o.policy?.rawValue == c.want["policy"] ?? nil, "\(o.reason)")
        #expect(o.disposition.rawValue == c.want["disposition"] ?? nil, "\(o.reason)")
        if let d = c.want["domain"] { #expect(o.domain == d) }
    }

    @Test func walkTargetsFollowTheTreeWalk() {
        #expect(DMARCVerifier.walkTargets("a.mail.example.com") == ["a.mail.example.com", "mail.example.com", "example.com", "com"])
        // From eight labels or more, the walk jumps to seven (RFC 9989 §4.10).
        let deep = DMARCVerifier.walkTargets("1.2.3.4.5.6.7.8.example")
        #expect(deep.count == 8 && deep[1] == "3.4.5.6.7.8.example" && deep.last == "example")
        // Names with empty labels take the label-by-label walk.
        #expect(DMARCVerifier.walkTargets("mail..example.com") == ["mail..example.com", "example.com", "com"])
        #expect(DMARCVerifier.walkTargets("example.com.") == ["example.com.", "com"])
        #expect(DMARCVerifier.walkTargets("com") == ["com"] && DMARCVerifier.walkTargets("").isEmpty)
    }

    @Test func parsedRecordsAreRememberedWithinABound() {
        let cache = RecordCache<DMARCRecord?>(limit: 3)
        var made = 0
        func parse(_ t: String) -> DMARCRecord? { made += 1; return DMARCRecord.parse(t) }
        let text = "v=DMARC1; p=reject"
        #expect(cache.value(for: text, parse)?.policy == .reject)
        #expect(cache.value(for: text, parse)?.policy == .reject && made == 1, "parsed once")
        #expect(cache.value(for: "v=spf1 -all", parse) == nil && cache.value(for: "v=spf1 -all", parse) == nil && made == 2, "a non-record is remembered too")
        for n in 0..<10 { _ = cache.value(for: "v=DMARC1; p=none; pct=\(n)", parse) }
        #expect(cache.count <= 3, "bounded")
        #expect(DMARCRecord.cachedParse(text) == DMARCRecord.parse(text))
    }

    @Test func recordsParseLikeTheRFC() {
        let r = DMARCRecord.parse("v=DMARC1;p=quarantine; sp=reject ; adkim=s; aspf=r; pct=20; np=reject; psd=n; rua=mailto:x@y")
        #expect(r == DMARCRecord(policy: .quarantine, subdomainPolicy: .reject, nonexistentPolicy: .reject, strictDKIM: true,
                                 strictSPF: false, percent: 20, testing: false, psd: "n"))
        #expect(DMARCRecord.parse("v=DMARC2; p=reject") == nil)
        #expect(DMARCRecord.parse("v=spf1 -all") == nil)
    }
}
