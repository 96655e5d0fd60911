import NIOCore
import Testing

@testable import SMTPProtocol

/// Fixture table: command line → expected command, or expected reply code.
struct CommandParserTests {
    static let good: [(String, SMTPCommand)] = [
        ("HELO client.example", .helo("client.example")),
        ("ehlo client.example", .ehlo("client.example")),
        ("EHLO [192.0.2.1]", .ehlo("[192.0.2.1]")),
        ("DATA", .data),
        ("data", .data),
        ("RSET", .rset),
        ("NOOP", .noop),
        ("NOOP anything", .noop),
        ("QUIT", .quit),
        ("HELP", .help),
        ("HELP MAIL", .help),
        ("VRFY alice", .vrfy("alice")),
        ("STARTTLS", .startTLS),
        ("BDAT 100", .bdat(size: 100, last: false)),
        ("BDAT 0 LAST", .bdat(size: 0, last: true)),
        ("bdat 12 last", .bdat(size: 12, last: true)),
    ]

    @Test(arguments: good)
    func parsesValidCommands(_ line: String, _ expected: SMTPCommand) throws {
        #expect(try CommandParser.parse(line).get() == expected)
    }

    static let bad: [(String, Int)] = [
        ("", 500),
        ("FOO bar", 500),
        ("HELO", 501),
        ("EHLO", 501),
        ("MAIL", 501),
        ("MAIL TO:<a@b.c>", 501),
        ("MAIL FROM:a@b.c", 501),
        ("MAIL FROM:<a@b.c> SIZE=abc", 501),
        ("MAIL FROM:<a@b.c> FOO=1", 555),
        ("MAIL FROM:<a@b..c>", 501),
        ("MAIL FROM:<a@-b.c>", 501),
        ("MAIL FROM:<@>", 501),
        ("RCPT TO:<>", 501),
        ("RCPT TO:<a@b.c", 501),
        ("RCPT TO:<a@b.c.>", 501),
        ("RCPT TO:<a@b.c> NOTIFY=SOMETIMES", 501),
        ("DATA now", 501),
        ("QUIT now", 501),
        ("BDAT", 501),
        ("BDAT -1", 501),
        ("BDAT 10 FIRST", 501),
        ("STARTTLS please", 501),
    ]

    @Test(arguments: bad)
    func refusesInvalidCommands(_ line: String, _ code: Int) {
        guard case .failure(let reply) = CommandParser.parse(line) else {
            Issue.record("\(line) parsed but should not have")
            return
        }
        #expect(reply.code == code, "\(line)")
        #expect(reply.enhanced != nil)
    }

    @Test func nulByteIsRefused() {
        let bytes: [UInt8] = Array("NOOP".utf8) + [0] + Array("x".utf8)
        guard case .failure(let r) = CommandParser.parse(bytes) else { Issue.record("NUL accepted"); return }
        #expect(r == .nulByte)
    }

    @Test func invalidUTF8IsRefused() {
        guard case .failure(let r) = CommandParser.parse([0x4D, 0x41, 0x49, 0x4C, 0x20, 0xFF, 0xFE]) else { Issue.record("accepted"); return }
        #expect(r.code == 500)
    }

    @Test func mailWithParameters() throws {
        let cmd = try CommandParser.parse("MAIL FROM:<Bob@Example.COM> SIZE=1024 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc").get()
        guard case .mail(.mailbox(let m), let p) = cmd else { Issue.record("not MAIL"); return }
        #expect(m.localPart == "Bob")
        #expect(m.domain == "example.com")
        #expect(p.size == 1024)
        #expect(p.body == "8BITMIME")
        #expect(p.smtpUTF8)
        #expect(p.ret == "HDRS")
        #expect(p.envid == "abc")
    }

    @Test func nullSenderAndSpaceAfterColon() throws {
        #expect(try CommandParser.parse("MAIL FROM:<>").get() == .mail(.null, MailParameters()))
        #expect(try CommandParser.parse("MAIL FROM: <>").get() == .mail(.null, MailParameters()))
    }

    @Test func rcptForms() throws {
        guard case .rcpt(let pm, _) = try CommandParser.parse("RCPT TO:<Postmaster>").get() else { Issue.record(); return }
        #expect(pm.domain.isEmpty && pm.localPart == "Postmaster")
        guard case .rcpt(let routed, _) = try CommandParser.parse("RCPT TO:<@relay.example,@other.example:user@example.com>").get() else {
            Issue.record(); return
        }
        #expect(routed.sourceRoute == ["relay.example", "other.example"])
        guard case .rcpt(let quoted, _) = try CommandParser.parse(#"RCPT TO:<"user@evil.example"@example.com>"#).get() else {
            Issue.record(); return
        }
        #expect(quoted.wasQuoted && quoted.localPart == "user@evil.example")
        guard case .rcpt(let lit, let p) = try CommandParser.parse("RCPT TO:<u@[192.0.2.1]> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@x.example").get() else {
            Issue.record(); return
        }
        #expect(lit.isAddressLiteral)
        #expect(p.notify == "SUCCESS,FAILURE")
        #expect(p.orcpt == "rfc822;u@x.example")
    }

    @Test func utf8Address() throws {
        guard case .rcpt(let m, _) = try CommandParser.parse("RCPT TO:<josé@exämple.com>").get() else { Issue.record(); return }
        #expect(m.needsSMTPUTF8)
    }
}

struct ReplyTests {
    @Test func singleLine() {
        #expect(SMTPReply(250, "2.1.0", "Ok").wireString == "250 2.1.0 Ok\r\n")
        #expect(SMTPReply(220, nil, "mx ESMTP").wireString == "220 mx ESMTP\r\n")
    }

    @Test func multiLine() {
        let r = SMTPReply(code: 250, enhanced: nil, lines: ["mx", "PIPELINING", "SIZE 10"])
        #expect(r.wireString == "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n")
        let e = SMTPReply(code: 550, enhanced: "5.7.1", lines: ["one", "two"])
        #expect(e.wireString == "550-5.7.1 one\r\n550 5.7.1 two\r\n")
    }

    @Test func textCannotInjectALine() {
        let r = SMTPReply(code: 550, enhanced: "5.7.1", lines: ["bad\r\n250 ok"])
        #expect(r.wireString == "550 5.7.1 bad250 ok\r\n")
        // A line that is nothing but line breaks is an empty line: no space after the code.
        #expect(SMTPReply(code: 451, enhanced: "4.3.0", lines: ["\r\n"]).wireString == "451 4.3.0\r\n")
        #expect(SMTPReply(451, "4.3.0", "a\rb\nc").wireString == "451-4.3.0 ab\r\n451 4.3.0 c\r\n")
    }

    @Test func descriptionIsOneLine() {
        #expect(SMTPReply(250, "2.0.0", "Ok: queued as 1").description == "250 2.0.0 Ok: queued as 1")
        #expect(SMTPReply(220, nil, "mx ESMTP").description == "220 mx ESMTP")
        #expect(SMTPReply(code: 250, enhanced: "2.0.0", lines: ["", "b"]).description == "250 / 250 2.0.0 b")
    }

    @Test func heloArgumentCharacters() {
        #expect((try? CommandParser.parse("EHLO mx.example").get()) == .ehlo("mx.example"))
        #expect((try? CommandParser.parse("EHLO [192.0.2.1]").get()) == .ehlo("[192.0.2.1]"))
        for bad in ["EHLO mx\texample", "EHLO mx\u{0B}x", "EHLO mxé.example", "HELO a\u{85}b"] {
            guard case .failure(let r) = CommandParser.parse(bad) else { Issue.record("accepted \(bad)"); continue }
            #expect(r.code == 501)
        }
        #expect((try? CommandParser.parse("QUIT   ").get()) == .quit)
        #expect((try? CommandParser.parse("QUIT now").get()) == nil)
    }

    @Test func parserRoundTrip() throws {
        var p = ReplyParser()
        #expect(try p.feed("250-mx.example") == nil)
        #expect(try p.feed("250-PIPELINING") == nil)
        let r = try p.feed("250 SIZE 100")
        #expect(r?.lines == ["mx.example", "PIPELINING", "SIZE 100"])
        let e = try p.feed("550 5.1.1 <x@y>: Recipient address rejected")
        #expect(e?.enhanced == "5.1.1")
        #expect(e?.lines == ["<x@y>: Recipient address rejected"])
        #expect(throws: ReplyParser.Malformed.self) { _ = try p.feed("hello") }
    }
}
