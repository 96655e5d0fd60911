import Foundation
import NIOCore
import Relay
import Testing

/// The session decodes message text straight into the body while it fits
/// in memory, and parses only the header section; both must give the same
/// bytes as the copying paths, in memory and once spilled to a file.
struct MessageBodyTests {
    let text = Array("Subject: hi\r\nFrom: a@b.example\r\n\r\nline one\r\n\r\nline two\r\n".utf8)

    @Test func inPlaceAppendCountsAndKeepsTheBytes() throws {
        let body = MessageBody(memoryThreshold: 1 << 20, tempDirectory: NSTemporaryDirectory())
        #expect(body.fitsInMemory(text.count))
        let r = body.appendInPlace { buf -> Int in buf.writeBytes(text) }
        #expect(r == text.count)
        #expect(body.count == text.count)
        #expect(try body.prefix(1000) == text)
    }

    @Test func fitsInMemoryStopsAtTheThreshold() throws {
        let body = MessageBody(memoryThreshold: 100, tempDirectory: NSTemporaryDirectory())
        #expect(body.fitsInMemory(50))
        #expect(!body.fitsInMemory(51))  // decoded text may double (bare LF to CRLF)
        try body.append(ByteBuffer(bytes: [UInt8](repeating: 65, count: 200)))
        #expect(body.isSpilled)
        #expect(!body.fitsInMemory(1))
    }

    @Test(arguments: [1 << 20, 8])
    func headerSectionEndsAtTheBlankLine(threshold: Int) throws {
        let body = MessageBody(memoryThreshold: threshold, tempDirectory: NSTemporaryDirectory())
        try body.append(ByteBuffer(bytes: text))
        let header = try body.headerSection(limit: 64 * 1024)
        if body.isSpilled {
            #expect(header == text)  // from a file: the first bytes up to the limit
        } else {
            #expect(header == Array("Subject: hi\r\nFrom: a@b.example\r\n\r\n".utf8))
        }
    }

    @Test func headerSectionWithoutBlankLineIsCutAtTheLimit() throws {
        let body = MessageBody(memoryThreshold: 1 << 20, tempDirectory: NSTemporaryDirectory())
        let long = Array(String(repeating: "X-Long: yyyyyyyy\r\n", count: 100).utf8)
        try body.append(ByteBuffer(bytes: long))
        #expect(try body.headerSection(limit: 50) == Array(long[..<50]))
        #expect(try body.headerSection(limit: 1 << 20) == long)
    }
}
