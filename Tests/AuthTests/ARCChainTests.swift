import Foundation
import Testing

@testable import Auth
import Checks

/// ARC validation against chains sealed at test time by a real sealer,
/// dkimpy (Signers/arc_seal.py): one and several hops, a list's footer
/// added before sealing, a body changed after, an altered
/// ARC-Authentication-Results, a missing seal. mxgate's chain status must
/// agree with dkimpy's own validation of the same message.
struct ARCChainTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var hops: Int
        var tamper: String
        var want: ARCOutcome.Result
        var testDescription: String { "\(hops) hop(s), \(tamper) → \(want.rawValue)" }
    }

    static let cases = [
        Case(hops: 1, tamper: "none", want: .pass), Case(hops: 3, tamper: "none", want: .pass),
        Case(hops: 2, tamper: "footer", want: .pass), Case(hops: 1, tamper: "body", want: .fail),
        Case(hops: 2, tamper: "body", want: .fail), Case(hops: 2, tamper: "aar", want: .fail),
        Case(hops: 2, tamper: "gap", want: .fail),
    ]

    struct Sealed: Decodable {
        let message: String
        let records: [String: String]
        let dkimpy: String
    }

    static func seal(_ c: Case) throws -> Sealed {
        try SignerScript.run("arc_seal.py", [String(c.hops), c.tamper], as: Sealed.self)
    }

    static func verify(_ message: [UInt8], _ zone: DNSZone) async -> ARCOutcome {
        let chain = ARCChain(header: message)
        if let offset = chain.bodyOffset { message[offset...].withUnsafeBytes { chain.feedBody($0) } }
        chain.finishBody()
        return await chain.verify(with: DKIMVerifier(dns: zone))
    }

    @Test(arguments: Self.cases)
    func agreesWithDkimpy(_ c: Case) async throws {
        let sealed = try Self.seal(c)
        let message = Array(try #require(Data(base64Encoded: sealed.message)))
        let zone = DNSZone()
        for (name, record) in sealed.records {
            zone.add(name, type: DNSType.txt, rdata: DNSZone.text(stride(from: 0, to: record.utf8.count, by: 200).map {
                Array(Array(record.utf8)[$0..<min($0 + 200, record.utf8.count)])
            }))
        }
        let o = await Self.verify(message, zone)
        #expect(o.result == c.want, "\(o.reason ?? "")")
        #expect(o.result.rawValue == sealed.dkimpy, "dkimpy said \(sealed.dkimpy)")
        if o.result == .pass {
            #expect(o.hops.map(\.instance) == Array((1...c.hops).reversed()))
            #expect(o.hops.first?.sealer == "hop\(c.hops).example")
            #expect(o.hops.allSatisfy { $0.results["dmarc"] == "pass" && $0.headerFrom == "example.org" })
            #expect(o.oldestPass == 0)
        }
    }

    @Test func noARCFieldsIsNone() async {
        let o = await Self.verify(Array("From: a@example.org\r\n\r\nhi\r\n".utf8), DNSZone())
        #expect(o.result == .none)
    }

    @Test func aFirstSealThatClaimsPassIsAFailure() async {
        // cv= of instance 1 must be none (RFC 8617 §5.2 step 3).
        let header = "ARC-Seal: i=1; cv=pass; a=rsa-sha256; d=x.example; s=s; b=AAAA\r\n" +
            "ARC-Message-Signature: i=1; a=rsa-sha256; d=x.example; s=s; h=from; bh=AAAA; b=AAAA\r\n" +
            "ARC-Authentication-Results: i=1; x.example; none\r\nFrom: a@example.org\r\n\r\nhi\r\n"
        let o = await Self.verify(Array(header.utf8), DNSZone())
        #expect(o.result == .fail && o.reason?.contains("cv=pass") == true)
    }
}
