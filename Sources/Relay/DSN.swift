import Foundation
import SMTPProtocol

/// Delivery status notifications (RFC 3464 multipart/report, RFC 3461
/// parameters, RFC 3834 Auto-Submitted), as a message text ready to queue
/// with the null sender.
public enum DSN {
    public enum Kind: String, Sendable {
        case failed, delayed, relayed

        var subject: String {
            switch self {
            case .failed: return "Undelivered Mail Returned to Sender"
            case .delayed: return "Delayed Mail (still being retried)"
            case .relayed: return "Successful Mail Delivery Report"
            }
        }
    }

    /// The message returned in full up to this size; beyond it (or with
    /// RET=HDRS) only its header section, as Postfix's bounce_size_limit does.
    public static let returnLimit = 50_000

    /// Builds the report for `recipients` of `env`. `original` is the stored
    /// text (the full message, or at least its first `returnLimit` bytes).
    public static func build(kind: Kind, env: QueuedEnvelope, recipients: [QueuedRecipient], original: [UInt8],
                             originalSize: Int, reportingMTA: String, now: Date = Date(),
                             retryUntil: Date? = nil) -> [UInt8] {
        let boundary = "\(env.id)/\(reportingMTA)"
        var t = ""
        t += "From: MAILER-DAEMON@\(reportingMTA) (Mail Delivery System)\r\n"
        t += "To: <\(env.sender)>\r\n"
        t += "Subject: \(kind.subject)\r\n"
        t += "Date: \(rfc5322(now))\r\n"
        t += "Message-ID: <\(env.id).\(kind.rawValue).\(Int(now.timeIntervalSince1970))@\(reportingMTA)>\r\n"
        t += "Auto-Submitted: auto-replied\r\n"
        t += "MIME-Version: 1.0\r\n"
        t += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"\(boundary)\"\r\n"
        t += "\r\nThis is a MIME-encapsulated message.\r\n\r\n"

        t += "--\(boundary)\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        t += "This is the mail system at host \(reportingMTA).\r\n\r\n"
        switch kind {
        case .failed:
            t += "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. It's attached below.\r\n"
        case .delayed:
            t += "Your message could not be delivered yet to one or more recipients.\r\nIt will be retried"
            if let retryUntil { t += " until \(rfc5322(retryUntil))" }
            t += "; you do not need to send it again.\r\n"
        case .relayed:
            t += "Your message was successfully relayed to the next mail system,\r\nwhich did not offer delivery notifications.\r\n"
        }
        t += "\r\n"
        for r in recipients {
            t += "<\(r.address)>: \(r.lastReply ?? kind.rawValue)\r\n"
        }
        t += "\r\n"

        t += "--\(boundary)\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        t += "Reporting-MTA: dns; \(reportingMTA)\r\n"
        t += "X-Mxgate-Queue-ID: \(env.id)\r\n"
        if let envid = env.envid { t += "Original-Envelope-Id: \(xtextDecode(envid))\r\n" }
        t += "Arrival-Date: \(rfc5322(env.arrival))\r\n"
        for r in recipients {
            t += "\r\nFinal-Recipient: rfc822; \(r.address)\r\n"
            if let o = r.orcpt, let semi = o.firstIndex(of: ";") {
                t += "Original-Recipient: \(o[..<semi]); \(xtextDecode(String(o[o.index(after: semi)...])))\r\n"
            }
            t += "Action: \(kind.rawValue)\r\n"
            t += "Status: \(status(of: r, kind: kind))\r\n"
            if let host = r.remoteHost { t += "Remote-MTA: dns; \(host)\r\n" }
            if let reply = r.lastReply, isSMTPReply(reply) {
                t += "Diagnostic-Code: smtp; \(reply)\r\n"
            } else if let reply = r.lastReply {
                t += "Diagnostic-Code: X-mxgate; \(reply)\r\n"
            }
            if let at = r.lastAttempt { t += "Last-Attempt-Date: \(rfc5322(at))\r\n" }
            if kind == .delayed, let retryUntil { t += "Will-Retry-Until: \(rfc5322(retryUntil))\r\n" }
        }
        t += "\r\n"

        var out = Array(t.utf8)
        let headersOnly = env.ret?.uppercased() == "HDRS" || originalSize > returnLimit || kind != .failed
        if headersOnly {
            out += Array("--\(boundary)\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n".utf8)
            out += headerSection(original)
        } else {
            out += Array("--\(boundary)\r\nContent-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\n".utf8)
            out += original
            if original.suffix(2) != [13, 10] { out += [13, 10] }
        }
        out += Array("\r\n--\(boundary)--\r\n".utf8)
        return out
    }

    /// The enhanced status code of a recipient's last reply, or a fitting default.
    static func status(of r: QueuedRecipient, kind: Kind) -> String {
        func enhanced(_ w: Substring) -> Bool {
            let p = w.split(separator: ".")
            return p.count == 3 && p.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) } && "245".contains(w.first!)
        }
        if let reply = r.lastReply {
            let words = reply.split(separator: " ")
            if let w = words.first, enhanced(w) { return String(w) }
            if words.count > 1, enhanced(words[1]) { return String(words[1]) }
            if let code = words.first.flatMap({ Int($0) }), (200..<600).contains(code) { return "\(code / 100).0.0" }
        }
        switch kind {
        case .failed: return "5.0.0"
        case .delayed: return "4.0.0"
        case .relayed: return "2.0.0"
        }
    }

    /// A reply that came from a remote SMTP server ("550 5.1.1 …"), not one mxgate wrote.
    static func isSMTPReply(_ s: String) -> Bool {
        let b = Array(s.utf8.prefix(4))
        return b.count == 4 && b[0...2].allSatisfy { $0 >= 48 && $0 <= 57 } && (b[3] == 32 || b[3] == 45)
    }

    /// The header section of a stored message (ends at the first empty line).
    public static func headerSection(_ text: [UInt8]) -> [UInt8] {
        var i = 0
        while i + 1 < text.count {
            if text[i] == 13 && text[i + 1] == 10 && (i + 3 < text.count) && text[i + 2] == 13 && text[i + 3] == 10 {
                return Array(text[..<(i + 2)])
            }
            i += 1
        }
        return text
    }

    /// RFC 3461 §4: xtext "+XX" escapes.
    static func xtextDecode(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 43, i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func rfc5322(_ date: Date) -> String {
        MailDate.rfc5322(secondsSince1970: date.timeIntervalSince1970)
    }
}
