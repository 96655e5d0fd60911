import Policy
import SMTPProtocol
import Testing

@testable import Gateway

/// RFC 8601: the header we write, and the removal of incoming ones that
/// claim our authserv-id, wherever they stand and however they are folded.
struct AuthenticationResultsTests {
    static func strip(_ text: String, _ id: String = "mx.example.com") -> String? {
        AuthenticationResults.strippingForged(Array(text.utf8), authservID: id).map { String(decoding: $0.header, as: UTF8.self) }
    }

    @Test func removesOnlyOurs() throws {
        let text = "Received: x\r\nAuthentication-Results: MX.example.COM; spf=pass\r\nAuthentication-Results: other.example;\r\n"
            + "\tdkim=pass\r\nauthentication-results:(c) mx.example.com 1;\r\n dmarc=pass\r\nSubject: s\r\n\r\nbody\r\n"
        let r = try #require(AuthenticationResults.strippingForged(Array(text.utf8), authservID: "mx.example.com"))
        #expect(String(decoding: r.header, as: UTF8.self)
            == "Received: x\r\nAuthentication-Results: other.example;\r\n\tdkim=pass\r\nSubject: s\r\n")
        // What it replaces ends where the empty line begins, so the body keeps it.
        #expect(String(decoding: Array(text.utf8)[r.replaces...], as: UTF8.self) == "\r\nbody\r\n")
    }

    @Test func leavesOthersAlone() {
        #expect(Self.strip("Subject: s\r\nAuthentication-Results: mx.example.com.evil; spf=pass\r\n\r\nx\r\n") == nil)
        #expect(Self.strip("Subject: s\r\nX-Authentication-Results: mx.example.com; spf=pass\r\n\r\nx\r\n") == nil)
        // An Authentication-Results line in the body is not a header.
        #expect(Self.strip("Subject: s\r\n\r\nAuthentication-Results: mx.example.com; spf=pass\r\n") == nil)
        #expect(Self.strip("no header section at all") == nil)
    }

    @Test func headerListsWhatWasCheckedOrNone() {
        var f = SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1)
        #expect(AuthenticationResults.header(authservID: "mx.example.com", facts: f) == "Authentication-Results: mx.example.com; none")
        f.helo = "mail (evil) \"x\""
        f.mailFrom = .mailbox(try! AddressParser.parseMailbox("a@example.net"))
        f.spf = AuthCheck(result: "fail", domain: "example.net")
        f.spfHelo = AuthCheck(result: "none", domain: "mail")
        #expect(AuthenticationResults.header(authservID: "mx.example.com", facts: f)
            == "Authentication-Results: mx.example.com;\r\n\tspf=fail smtp.mailfrom=example.net;\r\n\tspf=none smtp.helo=\"mail (evil) \\\"x\\\"\"")
    }
}

/// DMARC and ARC in our header: the result, the policy as a comment, the From domain.
struct DMARCHeaderTests {
    @Test func dmarcAndARCResults() {
        var f = SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1)
        f.dmarc = DMARCCheck(result: "fail", domain: "bank.example", policy: "reject", disposition: "reject", reason: "")
        f.arc = ARCCheck(result: "pass", oldestPass: 2, hops: [.init(instance: 3, sealer: "lists.example.net", dmarc: "pass", headerFrom: nil)])
        #expect(AuthenticationResults.header(authservID: "mx.example.com", facts: f)
            == "Authentication-Results: mx.example.com;\r\n\tdmarc=fail (p=reject dis=reject) header.from=bank.example;\r\n"
            + "\tarc=pass (i=3 d=lists.example.net) header.oldest-pass=2")
        f.dmarc = DMARCCheck(result: "permerror", domain: "", policy: nil, disposition: "none", reason: "")
        f.arc = nil
        #expect(AuthenticationResults.header(authservID: "mx.example.com", facts: f) == "Authentication-Results: mx.example.com;\r\n\tdmarc=permerror")
    }
}
