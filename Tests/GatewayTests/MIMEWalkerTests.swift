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
}
