import Checks
import Testing

/// Which messages libclamav may scan on an event loop: only small text
/// with nothing it would decode and unpack. Everything else (what could
/// be an archive bomb) goes to a worker thread.
struct BoundedScanTests {
    static func bounded(_ s: String) -> Bool { Array(s.utf8).withUnsafeBytes { EmbeddedScanner.isBounded($0) } }
    static func bounded(_ b: [UInt8]) -> Bool { b.withUnsafeBytes { EmbeddedScanner.isBounded($0) } }

    static let head = "From: a@example.org\r\nTo: b@example.com\r\nSubject: minutes\r\n\r\n"

    @Test func plainTextIsBounded() {
        #expect(Self.bounded(Self.head + "The meeting begins at ten.\r\nWe begin with the agenda, then \u{E9}t\u{E9} notes.\r\n"))
        #expect(Self.bounded(Self.head + "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>a=3Db</p>\r\n"))
        #expect(Self.bounded(""))
        #expect(Self.bounded("\u{0C}form feed\ttab\r\n"))
    }

    @Test func whatLibclamavUnpacksIsNot() {
        #expect(!Self.bounded(Self.head + "Content-Transfer-Encoding: BASE64\r\n\r\nUEsDBA==\r\n"))
        #expect(!Self.bounded(Self.head + "begin 644 eicar.com\r\nM6#5/(5`E0$%0\r\nend\r\n"), "uuencode")
        #expect(!Self.bounded("Begin 644 x\r\n"), "a begin line at the very start")
        #expect(!Self.bounded(Self.head + "=ybegin line=128 size=68 name=x.com\r\n"), "yEnc")
        #expect(!Self.bounded(Self.head + "(This file must be converted with BinHex 4.0)\r\n"))
        #expect(!Self.bounded(Self.head + "%PDF-1.4\r\n1 0 obj\r\n"))
        #expect(!Self.bounded(Array(Self.head.utf8) + [0x50, 0x4B, 0x03, 0x04, 0x14, 0x00, 0x00]), "a zip sent raw has control bytes")
        #expect(!Self.bounded(Array(Self.head.utf8) + [0x00]))
        #expect(!Self.bounded(Self.head + String(repeating: "a line of text\r\n", count: 3000)), "larger than the limit")
    }
}
