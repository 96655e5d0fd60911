import MailMessage

/// Traces of a mail program that a bulk mailer copies without the rest:
/// Microsoft's Message-ID form without Microsoft's program named, and
/// Outlook Express's priority field without the MIME library it comes with.
/// A real program writes all of its fields; a forger writes the ones it saw.
struct MailerSignals: SignalDetector {
    static let names = ["MSGID_OUTLOOK_FORGED", "MSMAIL_PRIORITY_FORGED"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let h = input.headers
        let mailer = h.first("X-Mailer")
        let lowerMailer = mailer?.lowercased()
        let microsoft = lowerMailer?.containsBytes("microsoft") ?? false
        let mimeOLE = h.first("X-MimeOLE") != nil
        if let id = h.first("Message-ID"), isOutlookForm(id.trimmed), !microsoft, !mimeOLE,
           h.first("Thread-Index") == nil, h.first("X-MS-Has-Attach") == nil {
            out.append(Signal("MSGID_OUTLOOK_FORGED", "Message-ID \(id.trimmed.prefix(50)) is in Outlook's form, but no Microsoft program wrote the message"))
        }
        if h.first("X-MSMail-Priority") != nil, !mimeOLE {
            // Outlook Express and Outlook of that age write both; webmail (SquirrelMail) writes the priority alone and names itself.
            if lowerMailer?.containsBytes("outlook") ?? true {
                out.append(Signal("MSMAIL_PRIORITY_FORGED", "X-MSMail-Priority without the X-MimeOLE that Outlook writes with it (X-Mailer: \((mailer ?? "none").prefix(40)))"))
            }
        }
    }

    /// `<000001c259c0$a8559890$0200a8c0@HOST>`: three hexadecimal groups joined by dollar signs.
    static func isOutlookForm(_ id: String) -> Bool {
        let u = Array(id.utf8)
        guard u.count > 8, u.first == UInt8(ascii: "<"), let at = u.firstIndex(of: UInt8(ascii: "@")) else { return false }
        let groups = u[1..<at].split(separator: UInt8(ascii: "$"), omittingEmptySubsequences: false)
        func isHex(_ b: UInt8) -> Bool { (b >= 48 && b <= 57) || (b | 0x20 >= 97 && b | 0x20 <= 102) }
        return groups.count == 3 && groups.allSatisfy { !$0.isEmpty && $0.count <= 16 && $0.allSatisfy(isHex) }
    }
}
