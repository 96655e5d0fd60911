import Checks
import Foundation
import Logging
import MailMessage
import NIOCore
import Policy
import Relay
import Testing

@testable import Gateway

/// DKIM's body hash is computed while the text streams into the session's
/// MessageBody, not in a second pass: with the live hashes, the end of
/// data verifies a signature even when its own read has nothing to read.
struct LiveBodyHashTests {
    struct Signed: Decodable {
        let message: String
        let record: String
    }

    /// A message signed by dkimpy (a real signer), ed25519, relaxed/relaxed.
    static func signed() throws -> Signed {
        let script = """
            import base64, json, dkim, nacl.signing
            k = nacl.signing.SigningKey.generate()
            msg = (b"From: a@example.org\\r\\nSubject: live\\r\\n\\r\\n" + b"a line of the body, hashed as it comes\\r\\n" * 300)
            sig = dkim.sign(msg, b"sel", b"example.org", base64.b64encode(bytes(k)), canonicalize=(b"relaxed", b"relaxed"),
                            signature_algorithm=b"ed25519-sha256", include_headers=[b"from", b"subject"])
            print(json.dumps({"message": base64.b64encode(sig + msg).decode(),
                              "record": "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(k.verify_key)).decode()}))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return try JSONDecoder().decode(Signed.self, from: data)
    }

    static func dkimResult(_ inspector: Inspector, header: [UInt8], body: MessageBody, live: LiveBodyHashes?) async -> String? {
        var input = InspectionInput(facts: SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1), dnsBudget: 5,
                                    logger: Logger(label: "test"))
        input.headerBytes = header
        input.body = body
        input.liveText = live
        for case .dkim(let checks) in await inspector.inspect(.endOfData, input).facts { return checks.first?.result }
        return nil
    }

    @Test func theBodyIsHashedAsItArrives() async throws {
        let s = try Self.signed()
        let text = Array(try #require(Data(base64Encoded: s.message)))
        let zone = DNSZone()
        zone.add("sel._domainkey.example.org", type: DNSType.txt, rdata: DNSZone.text([Array(s.record.utf8)]))
        let inspector = Inspector([DKIMAnalyzer(dns: zone)])
        let header = Array(text[..<(try #require(HeaderSection.bounds(text)).bodyStart)])

        // The session's body, fed in small pieces, as DATA arrives.
        let body = MessageBody(memoryThreshold: 1 << 20, tempDirectory: "/tmp")
        let live = try #require(inspector.liveText(limit: 64 * 1024))
        body.observer = live
        var buffer = ByteBuffer()
        // Both ways the session stores text: decoded in place, and appended.
        for (n, start) in stride(from: 0, to: text.count, by: 7).enumerated() {
            let piece = text[start..<min(start + 7, text.count)]
            if n % 2 == 0 {
                _ = body.appendInPlace { $0.writeBytes(piece) }
            } else {
                buffer.clear()
                buffer.writeBytes(piece)
                try body.append(buffer)
            }
        }
        #expect(body.count == text.count)
        // The end of data's own read sees nothing: the pass can only come from the live hash.
        let empty = MessageBody(memoryThreshold: 1 << 20, tempDirectory: "/tmp")
        #expect(await Self.dkimResult(inspector, header: header, body: empty, live: live) == "pass")
        #expect(await Self.dkimResult(inspector, header: header, body: empty, live: nil) == "fail")
        // Without the live hashes, the one read over the stored text gives the same answer.
        #expect(await Self.dkimResult(inspector, header: header, body: body, live: nil) == "pass")
    }

    @Test func aHeaderSectionThatNeverEndsLeavesItToTheRead() throws {
        let live = try #require(Inspector([DKIMAnalyzer(dns: DNSZone())]).liveText(limit: 100))
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: 200)
        long.withUnsafeBytes { live.observe($0) }
        #expect(live.message(for: "dkim") == nil)
    }
}
