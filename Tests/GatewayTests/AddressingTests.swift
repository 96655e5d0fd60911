import Policy
import Testing

/// IP address and CIDR parsing: the forms admins write in tables and the
/// forms clients arrive from.
struct IPAddressTests {
    static let valid: [(String, String)] = [
        ("192.0.2.1", "192.0.2.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("::1", "::1"),
        ("::", "::"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ("1::", "1::"),
    ]

    @Test(arguments: valid)
    func parses(_ text: String, _ canonical: String) throws {
        let ip = try #require(IPAddress(text))
        #expect(ip.description == canonical)
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", ":::", "1:2:3:4:5:6:7:8:9",
                      "1::2::3", "12345::", "2001:db8:g::1", "1:", "1.2.3.4/24", "::1 "])
    func refuses(_ text: String) {
        #expect(IPAddress(text) == nil, "\(text)")
    }

    @Test func reverseNames() throws {
        #expect(try #require(IPAddress("192.0.2.10")).reverseName == "10.2.0.192.in-addr.arpa")
        #expect(try #require(IPAddress("2001:db8::1")).reverseName.hasPrefix("1.0.0.0.0.0.0.0"))
        #expect(try #require(IPAddress("2001:db8::1")).reverseName.hasSuffix("8.b.d.0.1.0.0.2.ip6.arpa"))
    }

    @Test func cidrContainment() throws {
        let net = try #require(CIDR("192.0.2.0/25"))
        #expect(net.contains(try #require(IPAddress("192.0.2.127"))))
        #expect(!net.contains(try #require(IPAddress("192.0.2.128"))))
        let v6 = try #require(CIDR("2001:db8::/32"))
        #expect(v6.contains(try #require(IPAddress("2001:db8:ffff::1"))))
        #expect(!v6.contains(try #require(IPAddress("192.0.2.1"))))
        #expect(CIDR("192.0.2.0/33") == nil)
        #expect(CIDR("192.0.2.0/") == nil)
        #expect(CIDR("2001:db8::/129") == nil)
        #expect(try #require(CIDR("192.0.2.77/24")).description == "192.0.2.0/24")
    }
}
