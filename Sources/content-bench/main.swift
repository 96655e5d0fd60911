// content-bench: the cost of looking inside messages (issue 4).
//
//   swift run -c release content-bench
//
// 1. Scoring rate: 10 KB and 1 MB messages (multipart: text, HTML, a base64
//    attachment) walked by the MIME walker and run through the shipped
//    policies (header checks, spam rules, attachment rules; no virus scan,
//    no DNS), as a session's end of data does. Messages per second.
// 2. Memory: RSS growth while walking one 50 MB message fed in 64 KB chunks,
//    as a session feeds it from the spill file (goal: under 20 MB).
import Foundation
import Gateway
import MailMessage
import Policy
import SMTPProtocol

func rssKB() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

func message(size: Int) -> [UInt8] {
    var m = "From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: Quarterly report\r\n"
    m += "Date: Mon, 30 Nov 2026 03:00:00 +0000\r\nMessage-ID: <r1@sender.example>\r\nMIME-Version: 1.0\r\n"
    m += "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n"
    m += "--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + String(repeating: "The figures for the quarter are attached. See https://intranet.example/q3 for details.\r\n", count: 40)
    m += "--A\r\nContent-Type: text/html\r\n\r\n<html><body>" + String(repeating: "<p>The figures are attached.</p>\r\n", count: 40) + "</body></html>\r\n--A--\r\n"
    m += "--B\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    var bytes = Array(m.utf8)
    let line = Array("JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29kZT4+CnN0\r\n".utf8)
    while bytes.count + line.count < size - 10 { bytes += line }
    bytes += Array("--B--\r\n".utf8)
    return bytes
}

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let policy = try PolicyLoader.load(policies: root + "/policies", base: root,
                                   identity: GatewayIdentity(hostname: "mx.example.com", domains: ["example.com"]))
let gate = RelayGate(domains: ["example.com"])
let sender = ReversePath.mailbox(try AddressParser.parseMailbox("alice@sender.example"))
let rcpt = try AddressParser.parseMailbox("bob@example.com")

func score(_ msg: [UInt8]) -> PolicyDriver.DataVerdict {
    var driver = PolicyDriver(policy: policy, gate: gate, facts: SessionFacts(sessionID: "b", clientIP: "198.51.100.7", clientPort: 0))
    _ = driver.connect()
    _ = driver.helo("mail.sender.example")
    _ = driver.mail(sender, MailParameters())
    _ = driver.rcpt(rcpt, original: rcpt)
    driver.recipientAccepted(rcpt)
    var walker = MIMEWalker()
    var i = 0
    while i < msg.count {
        walker.feed(msg[i..<min(i + 65536, msg.count)])
        i += 65536
    }
    // No scanner in this benchmark; the MIME walk's summary as the inspection would hand it over.
    let found = Findings(facts: [.virusScan(virus: nil, failure: nil), .mime(walker.finish())])
    return driver.data(size: msg.count, headers: HeaderBlock(msg.prefix(65536)), inspected: found)
}

for (label, size, count) in [("10KB", 10 * 1024, 5000), ("1MB", 1024 * 1024, 60)] {
    let msg = message(size: size)
    precondition(score(msg) == .deliver, "the benchmark message must pass the shipped policy")
    var rates: [Double] = []
    for _ in 0..<3 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<count { _ = score(msg) }
        rates.append(Double(count) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
    }
    let r = rates.sorted()
    print("scoring size=\(label) messages=\(count)x3 msgs_per_sec=\(r.map { String(format: "%.0f", $0) }.joined(separator: ",")) median=\(String(format: "%.0f", r[1]))")
}

// 50 MB walked in 64 KB chunks, never held whole.
let chunk = Array(message(size: 64 * 1024).dropLast(7))
let before = rssKB()
var walker = MIMEWalker()
var fed = 0
var peak = before
while fed < 50 * 1024 * 1024 {
    walker.feed(fed == 0 ? chunk : Array(chunk.suffix(from: chunk.count / 2)))
    fed += fed == 0 ? chunk.count : chunk.count - chunk.count / 2
    peak = max(peak, rssKB())
}
walker.feed(Array("--B--\r\n".utf8))
let summary = walker.finish()
print("walk_50MB rss_before_kb=\(before) rss_peak_kb=\(peak) growth_kb=\(peak - before) parts=\(summary.parts.count)")
