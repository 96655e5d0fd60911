import Foundation
import MilterProtocol
import Policy
import SMTPProtocol
import Testing

@testable import Gateway

/// The milter both ways, without sockets: the sockets admins write, the
/// config sections, the header changes milters ask for, their replies, and
/// the policy's `milter` condition.
struct MilterGatewayTests {
    let minimal = """
        [relay]
        domains = ["example.com"]

        """

    func parse(_ text: String) throws -> GatewayConfig {
        try GatewayConfig.parse(minimal + text, file: "t.toml", absolutePath: "/etc/mxgate/t.toml")
    }

    func errors(_ text: String) -> [String] {
        do {
            _ = try parse(text)
            return []
        } catch let e as ConfigErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    @Test(arguments: [
        ("inet:127.0.0.1:8891", MilterSocket.inet(host: "127.0.0.1", port: 8891)),
        ("inet:8891@127.0.0.1", .inet(host: "127.0.0.1", port: 8891)),
        ("inet6:8891@::1", .inet(host: "::1", port: 8891)),
        ("inet:[::1]:8891", .inet(host: "::1", port: 8891)),
        ("unix:/run/opendkim/opendkim.sock", .unix("/run/opendkim/opendkim.sock")),
        ("local:/run/milter.sock", .unix("/run/milter.sock")),
    ])
    func socketsAsPostfixAndSendmailWriteThem(text: String, expected: MilterSocket) {
        #expect(MilterSocket.parse(text) == expected)
    }

    @Test func badSocketsAreRefused() {
        for bad in ["tcp:8891", "inet:", "inet:host", "inet:99999@127.0.0.1", "unix:", "8891"] {
            #expect(MilterSocket.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func milterSectionsParse() throws {
        let c = try parse("""
            [milter]
            listen = "unix:run/milter.sock"
            timeout = "5m"
            socket_mode = "0666"
            [[milters]]
            name = "opendkim"
            socket = "inet:8891@127.0.0.1"
            [[milters]]
            name = "clamav"
            socket = "unix:/run/clamav/clamav-milter.ctl"
            stages = ["data"]
            content_timeout = "2m"
            default_action = "accept"
            """)
        #expect(c.milter?.listen == .unix("/etc/mxgate/run/milter.sock"))
        #expect(c.milter?.timeout == 300 && c.milter?.socketMode == 0o666)
        #expect(c.milters.map(\.name) == ["opendkim", "clamav"])
        #expect(c.milters[0].stages == Set(InspectionStage.allCases) && !c.milters[0].failOpen)
        #expect(c.milters[1].stages == [.endOfData] && c.milters[1].contentTimeout == 120 && c.milters[1].failOpen)
    }

    @Test func milterSectionMistakesAreNamed() {
        #expect(errors("[milter]\ntimeout = \"1m\"\n").contains { $0.contains("[milter] needs listen") })
        #expect(errors("[milter]\nlisten = \"tcp:1\"\n").contains { $0.contains("inet:HOST:PORT or unix:PATH") })
        #expect(errors("[milter]\nlisten = \"inet:127.0.0.1:1\"\nsocket_mode = \"rw\"\n").contains { $0.contains("socket_mode") })
        #expect(errors("[[milters]]\nname = \"x\"\n").contains { $0.contains("[[milters]] needs socket") })
        #expect(errors("[[milters]]\nsocket = \"inet:1@h\"\nstages = [\"eom\"]\n").contains { $0.contains("\"eom\" is not one of") })
        #expect(errors("[[milters]]\nsocket = \"inet:1@h\"\ndefault_action = \"reject\"\n").contains { $0.contains("default_action") })
        #expect(errors("[[milters]]\nname = \"a\"\nsocket = \"inet:1@h\"\n[[milters]]\nname = \"a\"\nsocket = \"inet:2@h\"\n")
            .contains { $0.contains("used twice") })
        #expect(errors("[milters]\nsocket = \"inet:1@h\"\n").contains { $0.contains("[[milters]] tables") })
    }

    static let header = Array("Received: from a\r\n\tby b\r\nSubject: hi\r\nX-Spam: old\r\nX-Spam: older\r\n\r\nbody\r\n".utf8)

    @Test func headerChangesApplyAsLibmilterDefinesThem() {
        let edits = [
            MilterHeaderEdit(kind: .add, name: "X-Virus-Status", value: "Clean"),
            MilterHeaderEdit(kind: .insert(0), name: "Authentication-Results", value: " odk.example; dkim=pass"),
            MilterHeaderEdit(kind: .change(2), name: "x-spam", value: ""),
            MilterHeaderEdit(kind: .change(1), name: "Subject", value: "[SPAM] hi\n\tfolded"),
            MilterHeaderEdit(kind: .change(3), name: "X-Missing", value: "added"),
        ]
        let out = MilterHeaderEdit.apply(edits, to: Self.header)!
        #expect(String(decoding: out.fields, as: UTF8.self) == """
            Authentication-Results: odk.example; dkim=pass\r
            Received: from a\r
            \tby b\r
            Subject: [SPAM] hi\r
            \tfolded\r
            X-Spam: old\r
            X-Virus-Status: Clean\r
            X-Missing: added\r

            """)
        #expect(out.replaces == Self.header.count - "\r\nbody\r\n".utf8.count)
    }

    @Test func headerFieldsAreSentAsPostfixSendsThem() {
        let plain = MilterChain.fields(Self.header[...], leadingSpace: false)
        #expect(plain.map(\.0) == ["Received", "Subject", "X-Spam", "X-Spam"])
        #expect(plain[0].1 == "from a\n\tby b" && plain[1].1 == "hi")
        #expect(MilterChain.fields(Self.header[...], leadingSpace: true)[1].1 == " hi")
    }

    @Test func milterRepliesParse() throws {
        let one = try #require(MilterChain.reply("554 5.7.1 Virus Eicar found"))
        #expect(one.code == 554 && one.enhanced == "5.7.1" && one.lines == ["Virus Eicar found"])
        let two = try #require(MilterChain.reply("451-4.7.1 first\r\n451 4.7.1 second"))
        #expect(two.code == 451 && two.lines == ["first", "second"])
        #expect(MilterChain.reply("250 ok") == nil && MilterChain.reply("hello") == nil)
    }

    /// A policy from one file's text, loaded as the gateway loads policies/.
    func policy(_ text: String) throws -> PolicySet {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("milter-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let policies = dir.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: policies, withIntermediateDirectories: true)
        try text.write(to: policies.appendingPathComponent("t.policy"), atomically: true, encoding: .utf8)
        return try PolicyLoader.load(policies: policies.path, base: dir.path,
                                     identity: GatewayIdentity(hostname: "mx.example.com", domains: ["example.com"], addresses: []))
    }

    @Test func theMilterConditionReadsWhatEachMilterAnswered() throws {
        let policy = try policy("at data match milter clamav failed, tempfail tag\n")
        var f = SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1)
        f.apply(.milter(MilterVerdict(milter: "clamav", verdict: "failed", reason: "down")))
        #expect(policy.evaluate(.data, f).tag)
        f.apply(.milter(MilterVerdict(milter: "clamav", verdict: "continue")))
        #expect(!policy.evaluate(.data, f).tag)
        #expect(throws: (any Error).self) { try self.policy("at data match milter clamav refused tag\n") }
    }

    @Test func aMilterRefusalIsTheStageAnswerNamingTheMilter() throws {
        var d = PolicyDriver(policy: try policy("at rcpt match all accept\n"), gate: RelayGate(domains: ["example.com"]),
                             facts: SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1))
        _ = d.mail(.null, MailParameters())
        var found = Findings()
        found.facts = [.milter(MilterVerdict(milter: "spamass", verdict: "reject", reply: SMTPReply(550, "5.7.1", "no")))]
        let box = try! AddressParser.parseMailbox("bob@example.com")
        #expect(d.rcpt(box, original: box, inspected: found)
            == .refuse(SMTPReply(550, "5.7.1", "no"), rules: ["milter spamass"], closes: false, reason: nil))
        // The next recipient is judged afresh.
        #expect(d.rcpt(box, original: box) == .proceed)
    }
}
