import Testing

@testable import SMTPProtocol

struct StateMachineTests {
    func machine(tls: Bool = false, recipients: Int = 100, errors: Int = 20) -> SessionStateMachine {
        var limits = SMTPLimits()
        limits.recipients = recipients
        limits.errors = errors
        limits.messageSize = 1000
        return SessionStateMachine(configuration: .init(hostname: "mx.test", limits: limits, tlsAvailable: tls))
    }

    /// Drives the machine with command lines, accepting whatever the policy
    /// would be asked about, and returns the code of each immediate reply.
    func run(_ m: inout SessionStateMachine, _ lines: [String]) -> [String] {
        lines.map { line -> String in
            let action = m.receive(CommandParser.parse(line))
            switch action {
            case .reply(let r): return "\(r.code)"
            case .replyAndClose(let r): return "\(r.code) close"
            case .checkHelo(let name, let ext): return "\(m.heloAccepted(name, extended: ext).code)"
            case .checkMail(let p, let params): m.mailAccepted(p, params); return "250"
            case .checkRecipient(let b, let p): m.recipientAccepted(b, p); return "250"
            case .startData: m.transactionEnded(); return "354"
            case .receiveChunk(_, let last): if last { m.transactionEnded() }; return "chunk"
            case .discardChunk(_, let r): return "discard \(r.code)"
            case .reset(let r): return "\(r.code) reset"
            case .startTLS: m.tlsStarted(); return "220 tls"
            }
        }
    }

    /// RFC 5321 §4.1.4 sequencing as a table: commands → replies.
    static let sequences: [([String], [String])] = [
        (["MAIL FROM:<a@b.c>"], ["503"]),
        (["EHLO x", "RCPT TO:<a@b.c>"], ["250", "503"]),
        (["EHLO x", "DATA"], ["250", "503"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "DATA"], ["250", "250", "554"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "MAIL FROM:<a@b.c>"], ["250", "250", "503"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "RCPT TO:<d@e.f>", "DATA"], ["250", "250", "250", "354"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "RSET", "RCPT TO:<d@e.f>"], ["250", "250", "250 reset", "503"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "EHLO y", "RCPT TO:<d@e.f>"], ["250", "250", "250", "503"]),
        (["HELO x", "MAIL FROM:<a@b.c> SIZE=5000"], ["250", "552"]),
        (["EHLO x", "MAIL FROM:<josé@b.c>"], ["250", "553"]),
        (["EHLO x", "MAIL FROM:<josé@b.c> SMTPUTF8", "RCPT TO:<ü@e.f>"], ["250", "250", "250"]),
        (["EHLO x", "BDAT 10 LAST"], ["250", "discard 503"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "BDAT 10"], ["250", "250", "discard 554"]),
        (["EHLO x", "MAIL FROM:<a@b.c>", "RCPT TO:<d@e.f>", "BDAT 3", "BDAT 2 LAST"], ["250", "250", "250", "chunk", "chunk"]),
        (["NOOP", "VRFY x", "EXPN x", "HELP", "QUIT"], ["250", "252", "502", "214", "221 close"]),
        (["EHLO x", "STARTTLS"], ["250", "502"]),
    ]

    @Test(arguments: sequences)
    func sequencing(_ lines: [String], _ expected: [String]) {
        var m = machine()
        #expect(run(&m, lines) == expected)
    }

    @Test func startTLSForgetsHelo() {
        var m = machine(tls: true)
        #expect(run(&m, ["EHLO x", "STARTTLS", "MAIL FROM:<a@b.c>", "EHLO x", "STARTTLS"]) == ["250", "220 tls", "503", "250", "503"])
        #expect(m.tlsActive)
    }

    @Test func ehloAdvertisesExtensions() {
        var m = machine(tls: true)
        let r = m.heloAccepted("x", extended: true)
        for ext in ["PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS", "SMTPUTF8", "CHUNKING"] {
            #expect(r.lines.contains(ext), "missing \(ext)")
        }
        m.tlsStarted()
        #expect(!m.heloAccepted("x", extended: true).lines.contains("STARTTLS"))
    }

    @Test func recipientLimitAnswers452() {
        var m = machine(recipients: 2)
        #expect(run(&m, ["EHLO x", "MAIL FROM:<a@b.c>", "RCPT TO:<1@e.f>", "RCPT TO:<2@e.f>", "RCPT TO:<3@e.f>"])
                == ["250", "250", "250", "250", "452"])
    }

    @Test func tooManyErrorsCloses() {
        var m = machine(errors: 3)
        #expect(run(&m, ["FOO", "BAR", "BAZ", "NOOP"]) == ["500", "500", "421 close", "421 close"])
    }
}

struct AddressTests {
    @Test(arguments: ["a@b.c", "first.last@sub.example.com", "x+tag@example.com", "\"quoted local\"@example.com", "u@[IPv6:::1]"])
    func parses(_ s: String) throws {
        _ = try AddressParser.parseMailbox(s)
    }

    @Test(arguments: ["", "@b.c", "a@", "a@b..c", "a..b@c.d", ".a@b.c", "a@b.c.", "a b@c.d", "a@b_c.d", "a@[1.2.3.4"])
    func refuses(_ s: String) {
        #expect(throws: AddressError.self) { _ = try AddressParser.parseMailbox(s) }
    }

    @Test func localPartLimit() {
        #expect(throws: AddressError.self) { _ = try AddressParser.parseMailbox(String(repeating: "a", count: 65) + "@b.c") }
    }

    @Test func descriptionRequotes() throws {
        let m = try AddressParser.parseMailbox(#""a\"b c"@Example.com"#)
        #expect(m.description == #""a\"b c"@example.com"#)
    }
}
