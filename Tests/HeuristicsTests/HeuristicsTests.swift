import Foundation
import MailMessage
import Testing

@testable import Heuristics

/// Each signal on a message made to show it, and on a look-alike ordinary
/// message that must not show it.
enum Make {
    static let arrived = RFC5322Date.parse("Tue, 01 Dec 2026 10:00:00 +0000")!

    static func signals(_ headers: String, _ body: String = "hello there, the notes are attached.\n",
                        type: String = "text/plain", extraParts: String? = nil) -> Set<String> {
        var text = headers.replacingOccurrences(of: "\n", with: "\r\n")
        if let extraParts {
            text += "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: \(type)\r\n\r\n"
                + body + "\r\n" + extraParts + "\r\n--b1--\r\n"
        } else {
            text += "Content-Type: \(type); charset=utf-8\r\n\r\n" + body
        }
        let bytes = Array(text.utf8)
        var w = MIMEWalker()
        w.feed(bytes)
        let input = HeuristicInput(headers: HeaderBlock(bytes), mime: w.finish(), receivedAt: arrived, localDomains: ["example.com"])
        return Set(Heuristics.detect(input).map(\.name))
    }

    static let plain = """
        From: Alice Smith <alice@partner.example>
        To: bob@example.com
        Subject: Notes from Tuesday
        Date: Tue, 01 Dec 2026 09:58:00 +0000
        Message-ID: <abc.123@partner.example>

        """
}

struct HeuristicsTests {
    @Test func anOrdinaryMessageShowsNothing() {
        #expect(Make.signals(Make.plain) == [])
    }

    @Test func linkTextShowingAnotherHost() {
        let html = "<p>Sign in at <a href=\"https://login.evil.example/pp\">https://www.paypal.com/signin</a></p>"
        #expect(Make.signals(Make.plain, html, type: "text/html").contains("LINK_TEXT_HOST_MISMATCH"))
        let same = "<p>Sign in at <a href=\"https://www.paypal.com/x\">www.paypal.com</a> or <a href=\"https://a.example/\">here</a></p>"
        #expect(!Make.signals(Make.plain, same, type: "text/html").contains("LINK_TEXT_HOST_MISMATCH"))
    }

    @Test func linksToIPsShortenersScriptsAndPunycode() {
        let html = "<a href=\"http://192.0.2.7/login\">x</a> <a href=\"https://bit.ly/3abc\">y</a> <a href=\"javascript:alert(1)\">z</a> <a href=\"https://xn--pypal-4ve.com/\">w</a>"
        let s = Make.signals(Make.plain, html, type: "text/html")
        #expect(s.isSuperset(of: ["LINK_TO_IP", "LINK_SHORTENER", "LINK_DATA_OR_SCRIPT", "LINK_PUNYCODE", "HTML_ONLY"]))
        #expect(!Make.signals(Make.plain, "see https://www.example.org/docs for details\n").contains("LINK_TO_IP"))
    }

    @Test func brandsLookAlikesAndOurOwnName() {
        func from(_ f: String) -> Set<String> { Make.signals(Make.plain.replacingOccurrences(of: "From: Alice Smith <alice@partner.example>", with: "From: " + f)) }
        #expect(from("PayPal Security <service@secure-mail.example>").contains("BRAND_IMPERSONATION"))
        #expect(!from("PayPal <service@paypal.com>").contains("BRAND_IMPERSONATION"))
        #expect(!from("Chaser Jones <cj@partner.example>").contains("BRAND_IMPERSONATION"), "a brand must be a whole word")
        #expect(from("Service <service@paypa1.com>").contains("LOOKALIKE_DOMAIN"))
        #expect(from("IT <it@exarnple.com>").contains("LOOKALIKE_DOMAIN"), "rn for m, against our own domain")
        #expect(!from("Alice <alice@example.com>").contains("LOOKALIKE_DOMAIN"))
        #expect(from("example.com Mail Admin <x@other.example>").contains("DISPLAY_NAME_OWN_DOMAIN"))
        #expect(from("IT Support <x@other.example>").contains("ADMIN_IMPERSONATION"))
        #expect(from("Bank <x@xn--80ak6aa92e.com>").contains("FROM_PUNYCODE"))
        #expect(from("\"boss@example.com\" <x@other.example>").contains("FROM_NAME_HAS_OTHER_ADDRESS"))
    }

    @Test func freeMailReplyTo() {
        let h = Make.plain + "Reply-To: claims@gmail.com\n"
        #expect(Make.signals(h).contains("FREEMAIL_REPLY_TO"))
        let own = Make.plain.replacingOccurrences(of: "alice@partner.example", with: "alice@gmail.com") + "Reply-To: alice@gmail.com\n"
        #expect(!Make.signals(own).contains("FREEMAIL_REPLY_TO"))
    }

    @Test func dateIsJudgedAgainstArrivalNotAFixedYear() {
        func dated(_ d: String) -> Set<String> { Make.signals(Make.plain.replacingOccurrences(of: "Tue, 01 Dec 2026 09:58:00 +0000", with: d)) }
        #expect(dated("Fri, 04 Dec 2026 10:00:00 +0000").contains("DATE_IN_FUTURE"))
        #expect(dated("Mon, 01 Jun 2026 10:00:00 +0000").contains("DATE_IN_PAST"))
        #expect(dated("yesterday-ish").contains("DATE_MALFORMED"))
        #expect(dated("Tue, 1 Dec 2026 05:30:00 -0500") == [], "a zone offset is applied")
        #expect(dated("1 Dec 26 10:01 GMT") == [], "obsolete two-digit year and named zone")
        let old = RFC5322Date.parse("Mon, 02 Sep 2002 12:00:00 -0700")!
        #expect(RFC5322Date.newestReceived(["from a by b; Mon, 02 Sep 2002 12:00:00 -0700"]) == old)
    }

    @Test func messageIDAndReplies() {
        #expect(Make.signals(Make.plain.replacingOccurrences(of: "Message-ID: <abc.123@partner.example>\n", with: "")).contains("MSGID_MISSING"))
        #expect(Make.signals(Make.plain.replacingOccurrences(of: "<abc.123@partner.example>", with: "abc123")).contains("MSGID_MALFORMED"))
        let reply = Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: Re: your invoice")
        #expect(Make.signals(reply).contains("FAKE_REPLY"))
        #expect(!Make.signals(reply + "In-Reply-To: <x@y.example>\n").contains("FAKE_REPLY"))
    }

    @Test func styledAndShoutingText() {
        func subject(_ s: String) -> Set<String> { Make.signals(Make.plain.replacingOccurrences(of: "Subject: Notes from Tuesday", with: "Subject: " + s)) }
        #expect(subject("YOUR ACCOUNT NEEDS ATTENTION NOW").contains("SUBJECT_ALL_CAPS"))
        #expect(subject("all your 𝐩𝐡𝐨𝐭𝐨𝐬 will be deleted").contains("UNICODE_STYLED_TEXT"))
        #expect(subject("We C.a.l.l.e.d You").contains("SUBJECT_SPACED_LETTERS"))
        #expect(subject("Get out of debt fast          29521").contains("SUBJECT_TRAILING_ID"))
        #expect(subject("🚨 Action required").contains("EMOJI_IN_SUBJECT"))
        #expect(subject("Budget 2027 draft") == [], "a year is not a tracking number")
        #expect(Make.signals(Make.plain, "p\u{430}yp\u{430}l account update\n").contains("MIXED_SCRIPT_WORDS"))
        #expect(!Make.signals(Make.plain, "привет, как дела\n").contains("MIXED_SCRIPT_WORDS"))
    }

    @Test func hiddenTextImagesAndForms() {
        let html = "<div style=\"display: none\">lorem ipsum filler</div><img src=\"cid:1\"><form action=\"https://x.example\"><input type=\"password\"></form>"
        let s = Make.signals(Make.plain, html, type: "text/html")
        #expect(s.isSuperset(of: ["HTML_HIDDEN_TEXT", "HTML_IMAGE_ONLY", "HTML_FORM_IN_BODY"]))
    }

    @Test func riskyAttachments() {
        func attach(_ name: String, _ type: String, _ content: String) -> Set<String> {
            let part = "--b1\r\nContent-Type: \(type); name=\"\(name)\"\r\nContent-Disposition: attachment; filename=\"\(name)\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                + Data(content.utf8).base64EncodedString() + "\r\n"
            return Make.signals(Make.plain, "see attached\r\n", extraParts: part)
        }
        #expect(attach("invoice.docm", "application/octet-stream", "x").contains("OFFICE_MACRO"))
        #expect(attach("invoice.iso", "application/octet-stream", "x").contains("DISK_IMAGE"))
        #expect(attach("notes.one", "application/octet-stream", "x").contains("ONENOTE"))
        let page = attach("login.html", "text/html", "<html><form action=x><input type=password></form><script>var b = new Blob([atob('QQ==')]);</script></html>")
        #expect(page.isSuperset(of: ["HTML_ATTACHMENT", "HTML_ATTACHMENT_FORM", "HTML_ATTACHMENT_BUILDS_FILE"]))
        #expect(attach("report.pdf", "application/pdf", "%PDF-1.4 x") == [])
    }

    @Test func encryptedZipIsSeen() {
        // A local file header with the encryption flag (bit 0) set, then one without.
        func header(flags: UInt8) -> [UInt8] {
            [0x50, 0x4B, 3, 4, 20, 0, flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0] + [0x61, 0x62]
        }
        #expect(AttachmentSignals.encryptedZip(header(flags: 1)))
        #expect(!AttachmentSignals.encryptedZip(header(flags: 0)))
        #expect(!AttachmentSignals.encryptedZip([0x50, 0x4B, 3]), "a truncated archive is not read past its end")
    }

    @Test func everySignalHasAUniqueNameAndIsScoredInTheShippedPolicy() throws {
        let names = Heuristics.detectors.flatMap { $0.names }
        #expect(names.count == Set(names).count)
        let policy = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/HeuristicsTests/HeuristicsTests.swift", with: "policies/heuristics.policy"), encoding: .utf8)
        for n in names { #expect(policy.contains("signal \(n) "), "\(n) is in policies/heuristics.policy") }
    }

    @Test func hostileInputDoesNotCrash() {
        var junk = Make.plain
        junk += "Reply-To: <<<@@@>>>\n"
        let html = "<a href=\"\u{FFFD}\u{1}\"><a href='javascript:'>" + String(repeating: "<b", count: 5000) + "&#99999999;&#x110000;<a href=>"
        _ = Make.signals(junk, html, type: "text/html")
        var bytes = Array("Content-Type: text/html\r\n\r\n<a href=\"x\u{1}".utf8)
        bytes += [0xFF, 0xFE, 0xC3] + Array("\">t</a>\r\n".utf8)
        var w = MIMEWalker()
        w.feed(bytes)
        #expect(w.finish().links.count == 1)
    }
}

struct DomainSignalTests {
    func from(_ f: String, body: String = "hello\n") -> Set<String> {
        Make.signals(Make.plain.replacingOccurrences(of: "From: Alice Smith <alice@partner.example>", with: "From: " + f), body)
    }

    @Test func abusedTopLevelDomainsFreeHostingAndOddDomains() {
        #expect(from("Deals <d@offers.shop>").contains("FROM_TLD_ABUSED"))
        #expect(!from("Shop <d@shop.example.com>").contains("FROM_TLD_ABUSED"), "the last label, not a word in the name")
        #expect(from("Casino <no-reply@julia15-a29bb.firebaseapp.com>").contains("FROM_FREE_HOSTING"))
        #expect(from("X <t@r.a.g.n.a.r.k56.ilayykom.example>").contains("FROM_DOMAIN_ODD"))
        #expect(!from("X <t@mail.eu.corp.example>").contains("FROM_DOMAIN_ODD"))
        let links = from("A <a@partner.example>", body: "see https://login-verify.pages.dev/x and https://promo.top/y\n")
        #expect(links.isSuperset(of: ["LINK_FREE_HOSTING", "LINK_TLD_ABUSED"]))
    }
}
