import Checks
import Policy
import Testing

/// The master-file reader behind `mxgate test --dns-zone`: origins, blank
/// owners, parentheses, comments, TXT strings and escapes, and errors that
/// name the line.
struct DNSZoneTests {
    static let zone = """
        $ORIGIN example.
        $TTL 300
        @        IN SOA ns1 hostmaster ( 1 ; serial
                                         3600 600 86400 300 )
        @        IN TXT "v=spf1 mx" " -all"  ; two strings, joined by SPF
                 IN MX  10 mx1
        mx1      300 IN A 192.0.2.10
                 IN AAAA 2001:db8::10
        quoted   IN TXT "say \\"hi\\"\\059 ok" bare
        alias    IN CNAME mx1
        abs.other. IN PTR mx1.example.
        """

    @Test func readsRecordsRelativeToTheOrigin() throws {
        let z = try DNSZone.load(masterFile: Self.zone)
        let txt = try z.answer("example", type: DNSType.txt).get()
        #expect(txt.map { String(decoding: DNSRecord.text($0), as: UTF8.self) } == ["v=spf1 mx -all"])
        #expect(try z.answer("example.", type: DNSType.mx).get().compactMap(DNSRecord.mx).map(\.host) == ["mx1.example"])
        #expect(try z.answer("MX1.example", type: DNSType.a).get().compactMap(DNSRecord.address) == [IPAddress("192.0.2.10")!])
        #expect(try z.answer("mx1.example", type: DNSType.aaaa).get().count == 1)
        #expect(try z.answer("alias.example", type: DNSType.a).get().compactMap(DNSRecord.address) == [IPAddress("192.0.2.10")!])
        let quoted = try z.answer("quoted.example", type: DNSType.txt).get()[0]
        #expect(String(decoding: DNSRecord.text(quoted), as: UTF8.self) == "say \"hi\"; okbare")
        #expect(try z.answer("abs.other", type: DNSType.ptr).get().compactMap(DNSRecord.name) == ["mx1.example"])
    }

    @Test func missingNamesAndTypesAreAnswersNotFailures() throws {
        let z = try DNSZone.load(masterFile: Self.zone)
        #expect(throws: DNSError.nxdomain) { try z.answer("nowhere.example", type: DNSType.a).get() }
        #expect(throws: DNSError.noData) { try z.answer("mx1.example", type: DNSType.txt).get() }
    }

    @Test(arguments: [
        ("a.example. IN A 192.0.2.1\nb.example. IN A not-an-ip\n", 2, "'not-an-ip' is not an IPv4 address"),
        ("a.example. IN TXT \"open\n", 1, "unclosed quote"),
        ("a.example. IN WHAT x\n", 1, "unknown record type WHAT"),
        ("  IN A 192.0.2.1\n", 1, "a record with no owner name"),
        ("a.example. IN SOA ( ns1 h 1 2 3 4 5\n", 1, "unclosed parenthesis"),
    ])
    func errorsNameTheLine(text: String, line: Int, message: String) {
        do {
            _ = try DNSZone.load(masterFile: text)
            Issue.record("loaded: \(text)")
        } catch {
            #expect(error.line == line)
            #expect(error.message == message)
        }
    }
}
