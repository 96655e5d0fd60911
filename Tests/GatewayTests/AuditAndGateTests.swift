@testable import Audit
import Foundation
import MailMessage
import Policy
import SMTPProtocol
import Testing

struct AuditRecordTests {
    /// The hand-written JSON line says exactly what JSONEncoder with sorted keys would.
    @Test(arguments: [0.0, 3.0, 7.25])
    func jsonLineMatchesTheEncoder(score: Double) throws {
        var r = AuditRecord(time: Date(timeIntervalSince1970: 1_796_000_000.123), event: .delivery, session: "S1",
                            clientIP: "192.0.2.1", clientPort: 25, helo: "h\"e\\l\u{1}o", mailFrom: "a@b.example",
                            rcptTo: ["x@y.example", "é@ü.example"], messageID: nil, size: 12, verdict: .tempfailed,
                            reply: "451 4.4.1 tab\there\r\nnext", rules: ["p:1", "relay-gate"], spamScore: score,
                            virus: nil, relay: "queue 1/2", reason: "deferred")
        r.warnings = ["w1"]
        r.symbols = ["b": 1.5, "a": -2]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = try JSONSerialization.jsonObject(with: encoder.encode(r)) as! NSDictionary
        let line = r.jsonLine()
        let got = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! NSDictionary
        #expect(got == expected)
        #expect(line.hasPrefix("{\"client_ip\":\"192.0.2.1\",\"client_port\":25,\"event\":\"delivery\""))
        #expect(line.contains("\"time\":\"2026-11-30T") || line.contains("\"time\":\"2026-"))
        #expect(try JSONDecoder().decode(AuditRecord.self, from: Data(line.utf8)).reply == r.reply)
    }

    /// The `auth` object: written sorted like the rest, read back, and left out when nothing was checked.
    @Test func authResultsAreWrittenAndReadBack() throws {
        var r = AuditRecord(event: .transaction, session: "S1", clientIP: "192.0.2.1", verdict: .rejected, reply: "550 5.7.23 x")
        #expect(!r.jsonLine().contains("\"auth\""))
        r.auth = AuditAuth(spf: .init(result: "fail", domain: "fail.example"), spfHelo: .init(result: "pass", domain: "h\"x.example"),
                           dkim: [.init(result: "pass", domain: "example.org", selector: "s1"), .init(result: "fail", domain: "b.example", selector: "s2")])
        let line = r.jsonLine()
        #expect(line.hasPrefix("{\"auth\":{\"dkim\":[{\"domain\":\"example.org\",\"result\":\"pass\",\"selector\":\"s1\"},{"))
        #expect(line.contains("}],\"spf\":{\"domain\":\"fail.example\",\"result\":\"fail\"},\"spf_helo\":{"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = try JSONSerialization.jsonObject(with: encoder.encode(r)) as! NSDictionary
        #expect(try JSONSerialization.jsonObject(with: Data(line.utf8)) as! NSDictionary == expected)
        #expect(try JSONDecoder().decode(AuditRecord.self, from: Data(line.utf8)).auth == r.auth)
        // With DMARC and ARC: arc first, dmarc between dkim and spf, as sorted keys put them.
        r.auth?.dmarc = .init(result: "fail", domain: "bank.example", policy: "reject", disposition: "reject")
        r.auth?.arc = .init(result: "none")
        let full = r.jsonLine()
        #expect(full.hasPrefix("{\"auth\":{\"arc\":{\"result\":\"none\"},\"dkim\":["))
        #expect(full.contains("}],\"dmarc\":{\"disposition\":\"reject\",\"domain\":\"bank.example\",\"policy\":\"reject\",\"result\":\"fail\"},\"spf\":{"))
        #expect(try JSONSerialization.jsonObject(with: Data(full.utf8)) as! NSDictionary
            == JSONSerialization.jsonObject(with: encoder.encode(r)) as! NSDictionary)
    }

    @Test func timesAreRFC3339AndRFC5322() {
        let d = Date(timeIntervalSince1970: 1_796_010_099.5)
        #expect(AuditRecord.formatTime(d) == d.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true,
                                                                                   timeZone: TimeZone(identifier: "UTC")!)))
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        // Both keep the last second's text: the same second, the next, and back again.
        for t in [0.0, 1_796_010_099.5, 1_796_010_099.25, 1_796_010_100.001, 1_796_010_099.75, 951_782_400, 951_782_400.999] {
            let date = Date(timeIntervalSince1970: t)
            #expect(MailDate.rfc5322(secondsSince1970: t) == f.string(from: date))
            #expect(AuditRecord.formatTime(date) == date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true,
                                                                                            timeZone: TimeZone(identifier: "UTC")!)))
        }
    }

    @Test func jsonHasEveryContractField() throws {
        let r = AuditRecord(event: .transaction, session: "S1", clientIP: "192.0.2.1", helo: "c.example",
                            mailFrom: "a@b.example", rcptTo: ["c@example.com"], messageID: "<m@x>", size: 10,
                            verdict: .accepted, reply: "250 2.0.0 Ok", rules: ["r1"], relay: "maildir x")
        let obj = try JSONSerialization.jsonObject(with: Data(r.jsonLine().utf8)) as! [String: Any]
        for key in ["time", "session", "client_ip", "helo", "mail_from", "rcpt_to", "message_id", "size", "verdict",
                    "reply", "rules", "spam_score", "virus", "relay"] {
            #expect(obj.keys.contains(key), "missing \(key)")
        }
        #expect(obj["verdict"] as? String == "accepted")
        let time = obj["time"] as! String
        #expect(time.hasSuffix("Z") && time.contains("T"))
        let back = try JSONDecoder().decode(AuditRecord.self, from: Data(r.jsonLine().utf8))
        #expect(back.rcptTo == ["c@example.com"])
        #expect(abs(back.time.timeIntervalSince(r.time)) < 0.001)
    }

    @Test func writerFlushesAndRotates() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mxgate-audit-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/audit.log"
        let w = try AuditWriter(options: .init(path: path, maxBytes: 2000, keep: 2))
        for i in 0..<40 {
            w.record(AuditRecord(event: .transaction, session: "S\(i)", clientIP: "192.0.2.\(i)", verdict: .accepted, reply: "250"))
        }
        w.close()
        let reader = AuditReader(path: path)
        let files = reader.files()
        #expect(files.count == 3)  // audit.log.2, audit.log.1, audit.log
        #expect(files.last == path)
        let records = reader.records(matching: AuditFilter())
        #expect(records.count < 40)  // the oldest rotated away
        #expect(records.last?.session == "S39")
        let sessions = records.map { Int($0.session.dropFirst())! }
        #expect(sessions == sessions.sorted())
    }

    /// A flush leaves an empty buffer behind. It used to keep a buffer of
    /// the last batch's size and, since the batch still shared it, allocate
    /// a new one a page larger on every wake, even with nothing to write.
    @Test func writerLeavesNoBufferBehindAFlush() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mxgate-audit-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/audit.log"
        let w = try AuditWriter(options: .init(path: path), flushInterval: .milliseconds(5))
        defer { w.close() }
        for i in 0..<2000 {
            w.record(AuditRecord(event: .transaction, session: "S\(i)", clientIP: "192.0.2.1", verdict: .accepted, reply: "250"))
        }
        var lines = 0
        for _ in 0..<500 where lines < 2000 {
            try await Task.sleep(for: .milliseconds(10))
            lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
        }
        #expect(lines == 2000)
        try await Task.sleep(for: .milliseconds(50))  // ten idle wakes
        #expect(w.pendingCapacity == 0)
    }

    @Test func filters() {
        let now = Date()
        let r = AuditRecord(time: now.addingTimeInterval(-600), event: .recipient, session: "S", clientIP: "192.0.2.9",
                            mailFrom: "Alice@Sender.example", rcptTo: ["bob@example.com"], verdict: .rejected, reply: "554")
        #expect(AuditFilter(verdict: .rejected).matches(r))
        #expect(!AuditFilter(verdict: .accepted).matches(r))
        #expect(AuditFilter(since: now.addingTimeInterval(-3600)).matches(r))
        #expect(!AuditFilter(since: now.addingTimeInterval(-60)).matches(r))
        #expect(AuditFilter(clientIP: "192.0.2.9").matches(r))
        #expect(AuditFilter(from: "alice@sender.example").matches(r))
        #expect(AuditFilter(from: "@sender.example").matches(r))
        #expect(!AuditFilter(from: "@other.example").matches(r))
        #expect(AuditFilter(to: "example.com").matches(r))
        #expect(AuditFilter.parseDuration("1h") == 3600)
        #expect(AuditFilter.parseDuration("2d") == 172800)
        #expect(AuditFilter.parseDuration("x") == nil)
    }
}

struct RelayGateTests {
    let gate = RelayGate(domains: ["example.com", ".corp.example"])

    func check(_ rcpt: String) -> SMTPReply? {
        guard case .success(.rcpt(let box, _)) = CommandParser.parse("RCPT TO:\(rcpt)") else { return SMTPReply(501, nil, "syntax") }
        return gate.check(box)
    }

    @Test(arguments: ["<user@example.com>", "<User@EXAMPLE.COM>", "<a.b+c@example.com>", "<x@mail.corp.example>", "<Postmaster>"])
    func accepts(_ rcpt: String) {
        #expect(check(rcpt) == nil)
    }

    /// Open-relay probes in the spirit of nmap's smtp-open-relay: all refused.
    @Test(arguments: [
        "<user@other.example>", "<user%other.example@example.com>", "<other.example!user@example.com>",
        "<@example.com:user@other.example>", "<\"user@other.example\"@example.com>", "<\"user%other.example\"@example.com>",
        "<user@[127.0.0.1]>", "<user@example.com.other.example>", "<user@corp.example>", "<user@notexample.com>",
        "<\"user\\@other\"@example.com>",
    ])
    func refuses(_ rcpt: String) {
        let r = check(rcpt)
        #expect(r != nil)
        #expect(r?.code == 554 || r?.code == 501)
        if r?.code == 554 { #expect(r?.enhanced == "5.7.1") }
    }
}

struct HeaderBlockTests {
    @Test func unfoldsAndStopsAtBody() {
        let h = HeaderBlock(Array("Subject: hello\r\n world\r\nMessage-ID:\r\n <id@x>\r\n\r\nMessage-ID: <body@x>\r\n".utf8))
        #expect(h.complete)
        #expect(h.first("subject") == "hello world")
        #expect(h.first("Message-Id") == "<id@x>")
    }
}
