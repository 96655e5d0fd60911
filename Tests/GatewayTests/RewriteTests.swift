import Foundation
import Relay
import Testing

struct RewriteTests {
    func table(_ text: String) throws -> RewriteTable {
        let path = NSTemporaryDirectory() + "/mxgate-rewrite-\(UUID().uuidString)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try RewriteTable(path: path)
    }

    @Test func addressBeatsDomain() throws {
        let t = try table("@old.example @new.example\ninfo@old.example sales@new.example\n")
        #expect(t.rewrite("info@old.example") == "sales@new.example")
        #expect(t.rewrite("Bob@OLD.example") == "Bob@new.example")
        #expect(t.rewrite("bob@other.example") == nil)
    }

    @Test func headerAddressesOnlyInAddressFields() throws {
        let sender = try table("alice@a.example alice@b.example\n")
        let rcpt = try table("@old.example @new.example\n")
        let text = Array("From: \"Alice\" <alice@a.example>\r\nTo: x@old.example,\r\n y@old.example\r\nSubject: alice@a.example\r\n\r\nbody x@old.example\r\n".utf8)
        let (header, replaces) = try #require(HeaderRewriter.rewrite(text, sender: sender, recipient: rcpt))
        #expect(String(decoding: header, as: UTF8.self) ==
                "From: \"Alice\" <alice@b.example>\r\nTo: x@new.example,\r\n y@new.example\r\nSubject: alice@a.example\r\n")
        #expect(Array(text[replaces...]) == Array("\r\nbody x@old.example\r\n".utf8))
    }

    @Test func nothingToRewrite() throws {
        let t = try table("a@b.example c@d.example\n")
        #expect(HeaderRewriter.rewrite(Array("To: z@z.example\r\n\r\nx\r\n".utf8), sender: nil, recipient: t) == nil)
    }

    @Test func badLinesAreReportedWithTheirPlace() {
        #expect(throws: (any Error).self) { try table("ok@a.example ok@b.example\nlonely\n") }
    }
}
