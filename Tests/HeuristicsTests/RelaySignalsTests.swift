import Foundation
import MailMessage
import Testing

@testable import Heuristics

/// The traces a message's transport leaves: the hop that handed it in, the
/// Received fields' dates, a free-mail From with none of the provider's
/// hops, Microsoft's fields copied without the rest, a made-up time zone.
/// Each fires on what bulk-mailing programs write and stays quiet on what
/// MTAs, mail programs and list managers write.
struct RelaySignalsTests {
    func with(_ extra: String, client: ClientHop? = nil) -> Set<String> {
        let text = (Make.plain + extra + "Content-Type: text/plain\n\nhello there, the notes are attached.\n").replacingOccurrences(of: "\n", with: "\r\n")
        let bytes = Array(text.utf8)
        var w = MIMEWalker()
        w.feed(bytes)
        let input = HeuristicInput(headers: HeaderBlock(bytes), mime: w.finish(), receivedAt: Make.arrived, localDomains: ["example.com"],
                                   client: client)
        return Set(Heuristics.detect(input).map(\.name))
    }

    @Test func bareWordHELOAtTheHopThatHandedItIn() {
        // Received fields newest first: the relays on private addresses are ours, the first public client handed it in.
        let bot = """
            Received: from gw1.example.com (gw1.example.com [192.168.18.250])
            \tby mail.example.com with ESMTP id 1; Tue, 1 Dec 2026 09:59:00 +0000
            Received: from wergvan (p4FEFFFC9.dip.example.net [79.239.255.201])
            \tby gw1.example.com with SMTP id 2; Tue, 1 Dec 2026 09:58:30 +0000

            """
        #expect(with(bot).contains("HELO_BARE_WORD"))
        let exim = "Received: from [198.51.7.9] (helo=desktop)\n\tby mx.example.com with esmtp id 3; Tue, 1 Dec 2026 09:58:30 +0000\n"
        #expect(RelaySignals.parse(exim.replacingOccurrences(of: "Received: ", with: "")) == .init(helo: "desktop", ip: "198.51.7.9", authenticated: false))
        // A server with a name, qmail's "unknown", an older hop (the sender's own submission) and a login: quiet.
        let server = "Received: from mail.partner.example (mail.partner.example [79.239.255.201])\n\tby mx.example.com; Tue, 1 Dec 2026 09:58:30 +0000\n"
        #expect(!with(server).contains("HELO_BARE_WORD"))
        #expect(!with("Received: from unknown (66.218.66.218) by m13.grp.example.net with QMQP; 1 Dec 2026 09:58:30 -0000\n").contains("HELO_BARE_WORD"))
        let submission = server + "Received: from JOHNPC (dsl-1-2-3-4.isp.example [1.2.3.4])\n\tby mail.partner.example; Tue, 1 Dec 2026 09:58:00 +0000\n"
        #expect(!with(submission).contains("HELO_BARE_WORD"), "the user's PC named itself to its own ISP, not to us")
        #expect(!with("Received: from laptop ([1.2.3.4]) by smtp.partner.example with ESMTPSA id 9; Tue, 1 Dec 2026 09:58:00 +0000\n")
            .contains("HELO_BARE_WORD"))
        // Live, the session's client is the hop, when it is on the internet.
        #expect(with("", client: ClientHop(helo: "wergvan", ip: "79.239.255.201")).contains("HELO_BARE_WORD"))
        #expect(!with("", client: ClientHop(helo: "mx.partner.example", ip: "79.239.255.201")).contains("HELO_BARE_WORD"))
        #expect(!with(server, client: ClientHop(helo: "frontmx", ip: "10.0.0.5")).contains("HELO_BARE_WORD"),
                "a front MX on the LAN: the Received field it wrote says who handed the message in")
        #expect(with(bot, client: ClientHop(helo: "frontmx", ip: "10.0.0.5")).contains("HELO_BARE_WORD"))
    }

    @Test func publicAddresses() {
        for ip in ["10.1.2.3", "127.0.0.1", "172.20.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1", "192.0.2.10", "::1", "fd00::1", "fe80::1", "2001:db8::1"] {
            #expect(!RelaySignals.isPublic(ip), "\(ip)")
        }
        for ip in ["79.239.255.201", "172.32.0.1", "2a01:4f8::1", "8.8.8.8"] { #expect(RelaySignals.isPublic(ip), "\(ip)") }
    }

    @Test func ratwareDateInReceived() {
        #expect(with("Received: from unknown (74.38.244.167) by asy100.example.net with SMTP; Sep, 02 2002 4:11:57 PM +0400\n")
            .contains("RCVD_RATWARE_DATE"))
        #expect(with("Received: from x by y with SMTP; Mon, 2 Sep 2002 4:11:57 PM +0400\n").contains("RCVD_RATWARE_DATE"), "a twelve-hour clock")
        #expect(!with("Received: from x (x [1.2.3.4]) by y with ESMTP id 1; Mon, 2 Sep 2002 16:11:57 +0400 (MSD)\n").contains("RCVD_RATWARE_DATE"))
        #expect(!with("Received: by 2002:a05:6402:2d0:b0:462:2410:9720 with SMTP id x; Mon, 26 Dec 2022 12:43:05 -0800 (PST)\n")
            .contains("RCVD_RATWARE_DATE"))
    }

    @Test func freemailFromWithoutTheProvidersHops() {
        let direct = "Received: from www ([202.103.108.81]) by mx.example.com; Tue, 1 Dec 2026 09:58:30 +0000\n"
        #expect(signalsFrom("bobba@yahoo.com", direct).contains("FREEMAIL_NOT_RELAYED"))
        #expect(signalsFrom("bobba@yahoo.com.hk", direct).contains("FREEMAIL_NOT_RELAYED"))
        let yahoo = "Received: from sonic301-2.consmr.mail.ne1.yahoo.com (sonic301-2.consmr.mail.ne1.yahoo.com [66.163.184.1]) by mx.example.com; Tue, 1 Dec 2026 09:58:30 +0000\n"
        #expect(!signalsFrom("bobba@yahoo.com", yahoo).contains("FREEMAIL_NOT_RELAYED"))
        #expect(!signalsFrom("deloptes@yahoo.com", direct + "Newsgroups: gmane.linux.debian.user\n").contains("FREEMAIL_NOT_RELAYED"),
                "a news gateway or a list passes the author's From on")
        #expect(!signalsFrom("a.person@gmail.com", "DKIM-Signature: v=1; a=rsa-sha256; d=gmail.com; s=20230601; b=x\n").contains("FREEMAIL_NOT_RELAYED"))
        #expect(!signalsFrom("alice@partner.example", direct).contains("FREEMAIL_NOT_RELAYED"))
        // Live: the provider's last hop is the session.
        let live = signalsFrom("a.person@gmail.com", "", client: ClientHop(helo: "mail-ed1-f52.google.com", ip: "209.85.208.52"))
        #expect(!live.contains("FREEMAIL_NOT_RELAYED"))
        // A brand's own domain in From, sent from elsewhere; and the brand's own mail, relayed or signed by it.
        #expect(signalsFrom("notification+x@facebookmail.com", direct).contains("BRAND_NOT_RELAYED"))
        #expect(!signalsFrom("notification+x@facebookmail.com", "Received: from mx-out.facebook.com (mx-out.facebook.com [66.220.144.1]) by mx.example.com; Tue, 1 Dec 2026 09:58:30 +0000\n")
            .contains("BRAND_NOT_RELAYED"))
        #expect(!signalsFrom("service@paypal.com", direct + "DKIM-Signature: v=1; a=rsa-sha256; d=paypal.com; s=pp; b=x\n").contains("BRAND_NOT_RELAYED"))
    }

    func signalsFrom(_ address: String, _ extra: String, client: ClientHop? = nil) -> Set<String> {
        let headers = Make.plain.replacingOccurrences(of: "alice@partner.example", with: address)
        let text = (headers + extra + "Content-Type: text/plain\n\nhello there, the notes are attached.\n").replacingOccurrences(of: "\n", with: "\r\n")
        let bytes = Array(text.utf8)
        var w = MIMEWalker()
        w.feed(bytes)
        return Set(Heuristics.detect(HeuristicInput(headers: HeaderBlock(bytes), mime: w.finish(), receivedAt: Make.arrived,
                                                    localDomains: ["example.com"], client: client)).map(\.name))
    }

    @Test func outlookFieldsWithoutOutlook() {
        let id = "Message-ID: <0000722d055e$00005d6d$0000121f@mx1.mail.example.net>\n"
        let forged = Make.signals(Make.plain.replacingOccurrences(of: "Message-ID: <abc.123@partner.example>\n", with: id))
        #expect(forged.contains("MSGID_OUTLOOK_FORGED"))
        let real = Make.signals(Make.plain.replacingOccurrences(of: "Message-ID: <abc.123@partner.example>\n",
                                                                with: "Message-ID: <000001c259c0$a8559890$0200a8c0@JMHALL>\nX-Mailer: Microsoft Outlook, Build 10.0.2627\n"))
        #expect(!real.contains("MSGID_OUTLOOK_FORGED"))
        #expect(!with("Thread-Index: AcJZwKhVmJDEZQ\n").contains("MSGID_OUTLOOK_FORGED"))
        #expect(with("X-MSMail-Priority: Normal\nX-Priority: 3\n").contains("MSMAIL_PRIORITY_FORGED"))
        #expect(with("X-MSMail-Priority: Normal\nX-Mailer: Microsoft Outlook Express 6.00.2600.0000\n").contains("MSMAIL_PRIORITY_FORGED"))
        #expect(!with("X-MSMail-Priority: Normal\nX-Mailer: Microsoft Outlook Express 6.00.2600.0000\nX-MimeOLE: Produced By Microsoft MimeOLE V6.00.2600.0000\n")
            .contains("MSMAIL_PRIORITY_FORGED"))
        #expect(!with("X-MSMail-Priority: Normal\nX-Mailer: SquirrelMail (version 1.2.5)\n").contains("MSMAIL_PRIORITY_FORGED"))
    }

    @Test func madeUpTimeZone() {
        func dated(_ d: String) -> Set<String> {
            Make.signals(Make.plain.replacingOccurrences(of: "Date: Tue, 01 Dec 2026 09:58:00 +0000", with: "Date: " + d))
        }
        #expect(dated("Tue, 01 Dec 2026 09:58:00 -1900").contains("DATE_BAD_ZONE"))
        #expect(dated("Tue, 01 Dec 2026 09:58:00 +0317").contains("DATE_BAD_ZONE"))
        for ok in ["Tue, 01 Dec 2026 15:43:00 +0545", "Tue, 01 Dec 2026 22:43:00 +1245 (CHAST)", "Tue, 01 Dec 2026 05:58:00 -0400", "Tue, 01 Dec 2026 09:58:00 GMT"] {
            #expect(!dated(ok).contains("DATE_BAD_ZONE"), "\(ok)")
        }
    }
}
