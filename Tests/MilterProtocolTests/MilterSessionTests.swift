import MilterProtocol
import Testing

/// The milter side's protocol rules: negotiation first, the no-reply steps
/// agreed, macros per stage, a message's macros forgotten at abort.
struct MilterSessionTests {
    static func session() -> MilterSession {
        MilterSession(wantedActions: [.addHeaders, .changeHeaders, .quarantine], wantedSteps: [.noReplyHeader, .noUnknown])
    }

    @Test func aPostfixConversation() throws {
        var s = Self.session()
        let (none, reply) = try s.receive(.negotiate(version: 6, actions: [.addHeaders, .changeHeaders, .addRecipients],
                                                     steps: Milter.Steps(rawValue: 0x1FFFFF)))
        #expect(none == nil)
        #expect(reply == .negotiate(version: 6, actions: [.addHeaders, .changeHeaders], steps: [.noReplyHeader, .noUnknown], symbols: [:]))
        _ = try s.receive(.macros(.connect, [("j", "mx.example.com"), ("{daemon_name}", "smtpd")]))
        let connect = try #require(try s.receive(.connect(hostname: "h.example", address: .inet("192.0.2.7", port: 4000))).step)
        #expect(connect.expectsReply && connect.macros["j"] == "mx.example.com")
        _ = try s.receive(.macros(.mail, [("{mail_addr}", "a@b.example"), ("i", "4Q1")]))
        let mail = try #require(try s.receive(.mail("<a@b.example>", arguments: [])).step)
        #expect(mail.macros == ["j": "mx.example.com", "{daemon_name}": "smtpd", "{mail_addr}": "a@b.example", "i": "4Q1"])
        #expect(try s.receive(.recipient("<c@d.example>", arguments: [])).step?.expectsReply == true)
        #expect(try s.receive(.header(name: "Subject", value: "x")).step?.expectsReply == false)  // SMFIP_NR_HDR agreed
        #expect(try s.receive(.endOfHeaders).step?.expectsReply == true)
        #expect(try s.receive(.body(Array("text".utf8))).step?.expectsReply == true)
        #expect(try s.receive(.endOfMessage([])).step?.expectsReply == true)
        #expect(s.phase == .idle)
        // The next message: the first one's MAIL macros are gone.
        let next = try #require(try s.receive(.mail("<e@f.example>", arguments: [])).step)
        #expect(next.macros["{mail_addr}"] == nil && next.macros["j"] == "mx.example.com")
        #expect(try s.receive(.abort).step?.expectsReply == false)
        #expect(throws: MilterProtocolError.self) { try s.receive(.body([])) }  // no MAIL after the abort
        _ = try s.receive(.quit)
        #expect(throws: MilterProtocolError.self) { try s.receive(.helo("again")) }
    }

    @Test func commandsBeforeNegotiationOrTwiceAreRefused() throws {
        var s = Self.session()
        #expect(throws: MilterProtocolError.self) { try s.receive(.helo("x")) }
        _ = try s.receive(.negotiate(version: 6, actions: [], steps: []))
        #expect(throws: MilterProtocolError.self) { try s.receive(.negotiate(version: 6, actions: [], steps: [])) }
    }

    @Test func fewerStepsNegotiatedMeansEveryStepAnswered() throws {
        var s = Self.session()
        _ = try s.receive(.negotiate(version: 2, actions: [.addHeaders], steps: []))  // an old MTA: no NR steps to offer
        #expect(s.negotiation?.version == 2)
        _ = try s.receive(.connect(hostname: "h", address: .unknown))
        _ = try s.receive(.mail("<a@b>", arguments: []))
        #expect(try s.receive(.header(name: "A", value: "b")).step?.expectsReply == true)
    }

    @Test func quitNewConnectionStartsAgainWithoutNegotiating() throws {
        var s = Self.session()
        _ = try s.receive(.negotiate(version: 6, actions: [], steps: []))
        _ = try s.receive(.macros(.connect, [("j", "a")]))
        _ = try s.receive(.quitNewConnection)
        let c = try #require(try s.receive(.connect(hostname: "next", address: .unknown)).step)
        #expect(c.macros.isEmpty)
    }
}
