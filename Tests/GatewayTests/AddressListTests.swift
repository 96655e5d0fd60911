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
