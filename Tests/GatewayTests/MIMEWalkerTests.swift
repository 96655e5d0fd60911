import Foundation
import MailMessage
import Testing

struct MIMEWalkerTests {
    func walk(_ text: String, chunk: Int = 7, limits: MIMELimits = MIMELimits()) -> MIMESummary {
        var w = MIMEWalker(limits: limits)
        let bytes = Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8)
        var i = 0
        while i < bytes.count {
            w.feed(bytes[i..<min(i + chunk, bytes.count)])
            i += chunk
        }
        return w.finish()
    }

    let mixed = """
        From: a@b.example
        Subject: s
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="OUTER"

        preamble
        --OUTER
        Content-Type: multipart/alternative; boundary=INNER

        --INNER
        Content-Type: text/plain; charset=utf-8
        Content-Transfer-Encoding: quoted-printable

        Hello =C3=A9t=C3=A9, soft=
        break.
        --INNER
        Content-Type: text/html

        <p>html part</p>
        --INNER--
        --OUTER
        Content-Type: application/pdf; name="invoice.pdf.exe"
        Content-Disposition: attachment
        Content-Transfer-Encoding: base64

        TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAA
        --OUTER
        Content-Type: application/octet-stream
        Content-Disposition: attachment; filename*0*=UTF-8''r%C3%A9sum; filename*1=".doc"

        plain bytes
        --OUTER--
        epilogue
        """

    @Test(arguments: [1, 7, 64, 100_000])
    func walksNestedMultiparts(chunk: Int) {
        let s = walk(mixed, chunk: chunk)
        #expect(s.problems.isEmpty, "\(s.problems)")
        #expect(s.parts.map(\.contentType) == ["text/plain", "text/html", "application/pdf", "application/octet-stream"])
        #expect(s.text.contains("Hello été, softbreak."))
        #expect(s.text.contains("html part") && !s.text.contains("<p>"))
        let att = s.attachments
        #expect(att.map(\.filename) == ["invoice.pdf.exe", "résum.doc"])
        #expect(att[0].sniffedType == "application/x-dosexec")
        #expect(att[0].size == 36)
        #expect(att[0].depth == 1)
    }

    @Test func missingFinalBoundaryStillReportsParts() {
        let s = walk("Content-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: text/plain\n\nfirst\n--X\nContent-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\nUEsDBAo=\n")
        #expect(s.problems.contains("multipart not closed (missing final boundary)"))
        #expect(s.parts.count == 2)
        #expect(s.attachments.first?.sniffedType == "application/zip")
    }

    @Test func multipartWithoutBoundaryIsNotHidden() {
        let s = walk("Content-Type: multipart/mixed\n\nbody text with MZ\n")
        #expect(s.problems.contains("multipart without a boundary"))
        #expect(s.parts.count == 1)
    }

    @Test func brokenBase64IsReported() {
        let s = walk("Content-Type: application/octet-stream; name=x.bin\nContent-Transfer-Encoding: base64\n\n!!!notbase64***\n")
        #expect(s.problems.contains("bad base64"))
        #expect(s.attachments.count == 1)
    }

    @Test func absurdNestingIsBounded() {
        var text = ""
        for i in 0..<50 { text += "Content-Type: multipart/mixed; boundary=B\(i)\n\n--B\(i)\n" }
        text += "Content-Type: text/plain\n\ndeep\n"
        var limits = MIMELimits()
        limits.depth = 10
        let s = walk(text, limits: limits)
        #expect(s.problems.contains { $0.hasPrefix("multipart nesting deeper than 10") })
    }

    @Test func urlsFromTextAndHTML() {
        let s = walk("Content-Type: multipart/alternative; boundary=A\n\n--A\nContent-Type: text/plain\n\nSee https://Example.COM/path?x=1. or www.test.example!\n--A\nContent-Type: text/html\n\n<a href=\"http://evil.example:8080/login\">here</a>\n--A--\n")
        #expect(s.urls == ["https://Example.COM/path?x=1", "www.test.example", "http://evil.example:8080/login"])
        #expect(s.urls.compactMap(URLExtractor.host) == ["example.com", "www.test.example", "evil.example"])
        #expect(URLExtractor.host("javascript:alert('http://x.example/')") == "x.example", "the first :// wherever it is")
        #expect(URLExtractor.host("HTTPS://User:pw@Host.Example:8443/a?b") == "host.example")
        #expect(URLExtractor.host("mailto:someone@example.org") == "example.org")
    }

    @Test func latin1TextIsConverted() {
        var w = MIMEWalker()
        w.feed(Array("Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf".utf8) + [0xE9] + Array("\r\n".utf8))
        #expect(w.finish().text == "café\r\n")
    }

    @Test func plainMessageIsOneTextPart() {
        let s = walk("Subject: hi\n\njust text\n")
        #expect(s.parts.count == 1 && s.parts[0].contentType == "text/plain")
        #expect(s.text == "just text\r\n")
    }

    /// A forwarded message carries its own multipart: its attachment, text
    /// and URLs are reported one level below the message/rfc822 part.
    static let forwarded = """
        Subject: fwd
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary=OUT

        --OUT
        Content-Type: text/plain

        see attached
        --OUT
        Content-Type: message/rfc822
        Content-Disposition: attachment; filename="original.eml"

        From: x@y.example
        Subject: inner
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary=IN

        --IN
        Content-Type: text/plain

        inner text http://inner.example/x
        --IN
        Content-Type: application/octet-stream; name="payload.exe"
        Content-Transfer-Encoding: base64

        TVqQAAMAAAAEAAAA
        --IN--
        --OUT--
        """

    @Test(arguments: [1, 7, 4096])
    func attachedMessageIsWalked(chunk: Int) {
        let s = walk(Self.forwarded, chunk: chunk)
        let names = s.attachments.map { $0.filename ?? "" }
        #expect(names == ["original.eml", "payload.exe"])
        let exe = s.parts.first { $0.filename == "payload.exe" }
        #expect(exe?.sniffedType == "application/x-dosexec")
        #expect(exe?.depth == 3)
        #expect(s.text.contains("see attached") && s.text.contains("inner text"))
        #expect(s.urls == ["http://inner.example/x"])
        #expect(s.problems.isEmpty)
    }

    @Test func base64AttachedMessageIsWalked() {
        let inner = "Subject: inner\r\nContent-Type: text/plain\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"
        let b64 = Data(inner.utf8).base64EncodedString(options: .lineLength76Characters)
        let s = walk("Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n\(b64)\n--B--\n")
        #expect(s.text.contains("GTUBE-STANDARD"))
        #expect(s.parts.map(\.contentType) == ["message/rfc822", "text/plain"])
    }

    @Test func attachedMessagesCountTowardDepth() {
        var text = ""
        for _ in 0..<30 { text += "Content-Type: message/rfc822\n\n" }
        text += "Content-Type: text/plain\n\ndeep\n"
        var limits = MIMELimits()
        limits.depth = 5
        let s = walk(text, limits: limits)
        #expect(s.problems.contains { $0.contains("attached message nested deeper than") })
        #expect(s.parts.count <= 6)
    }
}
