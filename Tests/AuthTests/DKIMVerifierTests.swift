import Foundation
import Testing

@testable import Auth
import Checks

/// DKIM verification against messages signed at test time by a real
/// signer, dkimpy (Signers/dkim_sign.py), with its key published in a zone:
/// rsa-2048 and ed25519, every canonicalization pair, l=, a changed body or
/// header, a revoked key, a 512-bit key. mxgate's result must agree with
/// dkimpy's own verification of the same message and key.
struct DKIMVerifierTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var alg = "rsa", bits = 2048, header = "relaxed", body = "relaxed", length = false, tamper = "none"
        var want: DKIMOutcome.Result
        var testDescription: String { "\(alg)-\(bits) \(header)/\(body)\(length ? " l=" : "") \(tamper) → \(want.rawValue)" }
    }

    static let cases: [Case] = {
        var out: [Case] = []
        for alg in ["rsa", "ed25519"] {
            for h in ["simple", "relaxed"] {
                for b in ["simple", "relaxed"] { out.append(Case(alg: alg, header: h, body: b, want: .pass)) }
            }
        }
        out.append(Case(length: true, tamper: "appended", want: .pass))
        out.append(Case(alg: "ed25519", body: "simple", length: true, tamper: "appended", want: .pass))
        out.append(Case(tamper: "appended", want: .fail))
        out.append(Case(tamper: "body", want: .fail))
        out.append(Case(header: "simple", tamper: "header", want: .fail))
        out.append(Case(alg: "ed25519", tamper: "header", want: .fail))
        out.append(Case(tamper: "revoke", want: .fail))
        out.append(Case(bits: 512, want: .permerror))
        return out
    }()

    struct Signed: Decodable {
        let message: String
        let record: String
        let dkimpy: Bool
    }

    static func sign(_ c: Case) throws -> Signed {
        try SignerScript.run("dkim_sign.py", [c.alg, String(c.bits), c.header, c.body, c.length ? "1" : "0", c.tamper], as: Signed.self)
    }

    @Test(arguments: Self.cases)
    func agreesWithDkimpy(_ c: Case) async throws {
        let signed = try Self.sign(c)
        let message = Array(try #require(Data(base64Encoded: signed.message)))
        let zone = DNSZone()
        zone.add("sel._domainkey.example.org", type: DNSType.txt, rdata: DNSZone.text([Array(signed.record.utf8)]))
        let m = DKIMMessage(header: message)
        #expect(m.signatureCount == 1)
        let offset = try #require(m.bodyOffset)
        message[offset...].withUnsafeBytes { m.feedBody($0) }
        m.finishBody()
        let results = await m.verify(with: DKIMVerifier(dns: zone))
        let r = try #require(results.first)
        #expect(r.result == c.want, "\(r.reason ?? "")")
        #expect(r.domain == "example.org" && r.selector == "sel")
        if c.bits >= 1024 { #expect((r.result == .pass) == signed.dkimpy, "dkimpy said \(signed.dkimpy)") }
    }

    @Test func rsaSha1AndMissingKeysAreNotPasses() async {
        let zone = DNSZone()
        let header = Array("DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.org\r\n\r\n".utf8)
        let m = DKIMMessage(header: header)
        m.finishBody()
        #expect(await m.verify(with: DKIMVerifier(dns: zone)).map(\.result) == [.fail])
        let noKey = DKIMMessage(header: Array("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=gone; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.org\r\n\r\n".utf8))
        noKey.finishBody()
        #expect(await noKey.verify(with: DKIMVerifier(dns: zone)).map(\.result) == [.permerror])
        let noFrom = DKIMMessage(header: Array("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=subject; bh=AAAA; b=AAAA\r\n\r\n".utf8))
        noFrom.finishBody()
        #expect(await noFrom.verify(with: DKIMVerifier(dns: zone)).map(\.result) == [.permerror])
    }

    /// Keys are kept by their record's text, never by their name: a
    /// selector whose record changes is verified with the new key at once.
    @Test func aChangedKeyRecordIsReadAgain() async throws {
        let a = try Self.sign(Case(want: .pass)), b = try Self.sign(Case(want: .pass))
        #expect(a.record != b.record, "the signer makes a key per message")
        func verify(_ s: Signed, with record: String) async throws -> DKIMOutcome {
            let message = Array(try #require(Data(base64Encoded: s.message)))
            let zone = DNSZone()
            zone.add("sel._domainkey.example.org", type: DNSType.txt, rdata: DNSZone.text([Array(record.utf8)]))
            let m = DKIMMessage(header: message)
            message[try #require(m.bodyOffset)...].withUnsafeBytes { m.feedBody($0) }
            m.finishBody()
            return try #require(await m.verify(with: DKIMVerifier(dns: zone)).first)
        }
        #expect(try await verify(a, with: a.record).result == .pass)
        #expect(try await verify(a, with: b.record).result == .fail, "the new key, not the one kept for the old text")
        #expect(try await verify(b, with: b.record).result == .pass)
        #expect(try await verify(a, with: a.record).result == .pass)
        let ed = try await verify(a, with: "v=DKIM1; k=ed25519; p=" + String(repeating: "A", count: 44))
        #expect(ed.result == .permerror && ed.reason == "key type ed25519 does not fit rsa-sha256")
        let junk = try await verify(a, with: "v=DKIM1; k=rsa; p=@@@")
        #expect(junk.result == .permerror && junk.reason == "key p= is not base64")
        let revoked = try await verify(a, with: "v=DKIM1; k=rsa; p=")
        #expect(revoked.result == .fail && revoked.reason == "key revoked")
    }
}
