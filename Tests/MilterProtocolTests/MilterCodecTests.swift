import MilterProtocol
import Testing

/// The milter codec against packets written out by hand from libmilter's
/// mfdef.h layouts, and every command and response round-tripped.
struct MilterCodecTests {
    static func packet(_ code: Character, _ data: [UInt8]) -> [UInt8] {
        let n = UInt32(data.count + 1)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), code.asciiValue!] + data
    }

    static func z(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    @Test func aConnectAsPostfixSendsIt() throws {
        // SMFIC_CONNECT: hostname NUL, family '4', port (big-endian), address NUL.
        let bytes = Self.packet("C", Self.z("mail.example.org") + [UInt8(ascii: "4"), 0x30, 0x39] + Self.z("192.0.2.7"))
        var d = MilterFrameDecoder()
        d.feed(bytes.prefix(3))
        #expect(try d.next() == nil)  // not whole yet
        d.feed(bytes.dropFirst(3))
        let (code, data) = try #require(try d.next())
        #expect(try MilterCommand.parse(code: code, data: data) == .connect(hostname: "mail.example.org", address: .inet("192.0.2.7", port: 12345)))
        #expect(try d.next() == nil)
    }

    @Test func optionNegotiationAndMacros() throws {
        let neg = Self.packet("O", [0, 0, 0, 6, 0, 0, 0x01, 0xFF, 0, 0x1F, 0xFF, 0xFF])
        var d = MilterFrameDecoder()
        d.feed(neg + Self.packet("D", [UInt8(ascii: "C")] + Self.z("j") + Self.z("mx.example.com") + Self.z("{daemon_name}") + Self.z("smtpd")))
        let (c1, d1) = try #require(try d.next())
        guard case .negotiate(let v, let actions, let steps) = try MilterCommand.parse(code: c1, data: d1) else { Issue.record("not OPTNEG"); return }
        #expect(v == 6 && actions.contains(.addHeaders) && actions.contains(.setSymbolList) && steps.contains(.noReplyBody))
        let (c2, d2) = try #require(try d.next())
        #expect(try MilterCommand.parse(code: c2, data: d2) == .macros(.connect, [("j", "mx.example.com"), ("{daemon_name}", "smtpd")]))
    }

    @Test func negotiationTakesOnlyWhatIsOffered() throws {
        let agreed = try MilterNegotiation.agree(offeredVersion: 6, offeredActions: [.addHeaders, .changeHeaders],
                                                 offeredSteps: [.noUnknown, .noReplyHeader, .skip],
                                                 wantedActions: [.addHeaders, .changeHeaders, .addRecipients, .quarantine],
                                                 wantedSteps: [.noUnknown, .noReplyHeader, .noData])
        #expect(agreed.actions == [.addHeaders, .changeHeaders])
        #expect(agreed.steps == [.noUnknown, .noReplyHeader])
        #expect(agreed.sends(.noData) && !agreed.sends(.noUnknown) && !agreed.answers(.noReplyHeader))
        #expect(throws: MilterProtocolError.self) {
            try MilterNegotiation.agree(offeredVersion: 1, offeredActions: [], offeredSteps: [], wantedActions: [], wantedSteps: [])
        }
    }

    @Test func everyCommandRoundTrips() throws {
        let all: [MilterCommand] = [
            .negotiate(version: 6, actions: [.addHeaders, .quarantine], steps: [.noHelo, .noReplyRecipient]),
            .macros(.mail, [("{mail_addr}", "a@b.example"), ("i", "4AbC")]),
            .connect(hostname: "h.example", address: .inet6("2001:db8::1", port: 25)),
            .connect(hostname: "localhost", address: .unix("/run/x.sock")),
            .connect(hostname: "unknown", address: .unknown),
            .helo("client.example"), .mail("<a@b.example>", arguments: ["SIZE=100", "BODY=8BITMIME"]),
            .recipient("<c@d.example>", arguments: []), .data, .header(name: "Subject", value: " hi"), .endOfHeaders,
            .body(Array(repeating: 65, count: 70_000)), .endOfMessage([]), .abort, .quit, .quitNewConnection, .unknown("XYZZY"),
        ]
        for c in all {
            var d = MilterFrameDecoder()
            d.feed(c.encoded())
            let (code, data) = try #require(try d.next())
            #expect(try MilterCommand.parse(code: code, data: data) == c)
        }
    }

    @Test func everyResponseRoundTrips() throws {
        let all: [MilterResponse] = [
            .negotiate(version: 6, actions: [.addHeaders, .setSymbolList], steps: [.noReplyHeader], symbols: [.connect: ["j", "{daemon_name}"], .mail: ["{mail_addr}"]]),
            .continue, .accept, .reject, .tempfail, .discard, .replyCode("550 5.7.1 No thanks"), .quarantine("looks bad"),
            .skip, .progress, .connectionFailure, .shutdown, .addHeader(name: "X-Spam-Flag", value: "YES"),
            .insertHeader(index: 0, name: "Authentication-Results", value: "mx; spf=pass"),
            .changeHeader(index: 1, name: "Subject", value: ""), .addRecipient("<x@y.example>"),
            .addRecipientWithArgs("<x@y.example>", "NOTIFY=NEVER"), .deleteRecipient("<c@d.example>"),
            .changeFrom("<bounce@example.com>", nil), .changeFrom("<b@example.com>", "SIZE=10"), .replaceBody(Array("new".utf8)),
        ]
        for r in all {
            var d = MilterFrameDecoder()
            d.feed(r.encoded())
            let (code, data) = try #require(try d.next())
            #expect(try MilterResponse.parse(code: code, data: data) == r)
        }
        #expect(MilterResponse.addHeader(name: "a", value: "b").isFinal == false)
        #expect(MilterResponse.tempfail.isFinal)
    }

    @Test(arguments: [
        [0, 0, 0, 0],  // length 0
        [0x7F, 0xFF, 0xFF, 0xFF, 0x42],  // 2 GB
    ] as [[UInt8]])
    func hostileLengthsAreRefusedBeforeBuffering(_ bytes: [UInt8]) {
        var d = MilterFrameDecoder()
        d.feed(bytes)
        #expect(throws: MilterProtocolError.self) { try d.next() }
    }

    @Test func malformedPacketsSayWhy() {
        #expect(throws: MilterProtocolError.self) { try MilterCommand.parse(code: UInt8(ascii: "C"), data: Self.z("h") + [UInt8(ascii: "9")]) }
        #expect(throws: MilterProtocolError.self) { try MilterCommand.parse(code: UInt8(ascii: "H"), data: Array("no nul".utf8)) }
        #expect(throws: MilterProtocolError.self) { try MilterCommand.parse(code: UInt8(ascii: "O"), data: [0, 0, 6]) }
        #expect(throws: MilterProtocolError.self) { try MilterCommand.parse(code: UInt8(ascii: "Z"), data: []) }
        #expect(throws: MilterProtocolError.self) { try MilterCommand.parse(code: UInt8(ascii: "M"), data: []) }
        #expect(throws: MilterProtocolError.self) { try MilterResponse.parse(code: UInt8(ascii: "y"), data: Self.z("250 ok")) }
    }

    @Test func manyPacketsInOneRead() throws {
        var d = MilterFrameDecoder()
        var stream: [UInt8] = []
        for i in 0..<1000 { stream += MilterCommand.header(name: "X-\(i)", value: "v").encoded() }
        d.feed(stream)
        var n = 0
        while let (code, data) = try d.next() {
            #expect(try MilterCommand.parse(code: code, data: data) == .header(name: "X-\(n)", value: "v"))
            n += 1
        }
        #expect(n == 1000)
    }
}
