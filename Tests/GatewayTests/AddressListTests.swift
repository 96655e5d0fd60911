import MailMessage
import Testing

/// The From domain DMARC checks comes from the address, never from a
/// display name or a comment that looks like one.
struct AddressListTests {
    @Test(arguments: [
        ("Alice <alice@Example.ORG>", ["example.org"]),
        ("\"paypal.com\" <x@evil.example>", ["evil.example"]),
        ("x@evil.example (paypal.com)", ["evil.example"]),
        ("\"a@b.example, c\" <d@e.example>, f@g.example.", ["e.example", "g.example"]),
        ("undisclosed-recipients:;", []),
        ("team: a@one.example, b@two.example;, c@three.example", ["one.example", "two.example", "three.example"]),
        ("<@relay.example:user@route.example>", ["route.example"]),
        ("Alice\r\n <alice@folded.example>", ["folded.example"]),
        ("no address here", []),
    ])
    func domains(_ value: String, _ want: [String]) {
        #expect(AddressList.domains(in: value) == want)
    }
}

/// The boundary every header rewriter and body hash agrees on.
struct HeaderSectionTests {
    @Test func bounds() {
        func b(_ s: String) -> [Int]? { HeaderSection.bounds(Array(s.utf8)).map { [$0.fieldsEnd, $0.bodyStart] } }
        #expect(b("A: 1\r\nB: 2\r\n\r\nbody") == [12, 14])
        #expect(b("A: 1\nB: 2\n\nbody") == [10, 11])
        #expect(b("A: 1\r\n folded\r\n\r\n") == [15, 17])
        #expect(b("\r\nbody only\r\n\r\nmore") == [0, 2])
        #expect(b("\nbody") == [0, 1])
        #expect(b("A: 1\r\nno end") == nil)
        #expect(b("") == nil)
    }
}
