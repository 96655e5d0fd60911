import NIOCore

/// An SMTP reply as sent on the wire: a three-digit code, an optional RFC 3463
/// enhanced status code, and one or more text lines.
///
/// Replies are values so the state machine and the policy engine can hand them
/// around without I/O; `encode` produces the RFC 5321 §4.2 multi-line form.
public struct SMTPReply: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    /// RFC 3463 enhanced status code such as "5.7.1"; nil for replies that must
    /// not carry one (the greeting and EHLO's first line, per RFC 2034 §3).
    public var enhanced: String?
    public var lines: [String]

    public init(_ code: Int, _ enhanced: String?, _ text: String) {
        self.code = code
        self.enhanced = enhanced
        // Most replies are one line: no split then (replies are built per command).
        self.lines = Self.hasLineBreak(text, lf: true) ? text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) : [text]
    }

    public init(code: Int, enhanced: String?, lines: [String]) {
        self.code = code
        self.enhanced = enhanced
        self.lines = lines.isEmpty ? [""] : lines
    }

    public var isPositive: Bool { code < 400 }
    public var isTransient: Bool { code >= 400 && code < 500 }
    public var isPermanent: Bool { code >= 500 }

    /// Whether `s` holds an LF (or, with `lf` false, a CR or an LF), in a
    /// plain byte loop where the string's storage allows (the generic
    /// `contains` costs several times more per byte).
    static func hasLineBreak(_ s: String, lf: Bool) -> Bool {
        let found = s.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b == 10 || (!lf && b == 13) { return true }
            return false
        }
        return found ?? s.utf8.contains { $0 == 10 || (!lf && $0 == 13) }
    }

    /// The reply as one line of text, for logs and audit records.
    public var description: String {
        if lines.count == 1 { return line(0) }
        return lines.indices.map(line).joined(separator: " / ")
    }

    private func line(_ i: Int) -> String {
        var s = String(code)
        if let e = enhanced, !(i == 0 && lines[i].isEmpty) {
            s += " "
            s += e
        }
        if !lines[i].isEmpty {
            s += " "
            s += lines[i]
        }
        return s
    }

    /// Writes the reply in wire form. Every line carries the enhanced code
    /// (RFC 2034 §3); text is stripped of CR and LF so a template can never
    /// inject a second reply. Byte by byte: a reply goes out per command.
    public func encode(into buffer: inout ByteBuffer) {
        let last = lines.count - 1
        for (index, line) in lines.enumerated() {
            if (100...999).contains(code) {
                buffer.writeInteger(UInt8(48 + code / 100))
                buffer.writeInteger(UInt8(48 + code / 10 % 10))
                buffer.writeInteger(UInt8(48 + code % 10))
            } else {
                buffer.writeString(String(code))
            }
            buffer.writeInteger(index == last ? UInt8(ascii: " ") : UInt8(ascii: "-"))
            let u = line.utf8
            let clean = !Self.hasLineBreak(line, lf: false)
            if let e = enhanced {
                buffer.writeString(e)
                if clean ? !u.isEmpty : u.contains(where: { $0 != 13 && $0 != 10 }) { buffer.writeInteger(UInt8(ascii: " ")) }
            }
            if clean {
                buffer.writeString(line)
            } else {
                for b in u where b != 13 && b != 10 { buffer.writeInteger(b) }
            }
            buffer.writeStaticString("\r\n")
        }
    }

    public var wireString: String {
        var b = ByteBuffer()
        encode(into: &b)
        return String(buffer: b)
    }
}

extension SMTPReply {
    // Replies used by the protocol core itself. Texts follow Postfix's wording
    // where admins already know it.
    public static let ok = SMTPReply(250, "2.0.0", "Ok")
    public static let badSequence = SMTPReply(503, "5.5.1", "Error: bad sequence of commands")
    public static let needHelo = SMTPReply(503, "5.5.1", "Error: send HELO/EHLO first")
    public static let nestedMail = SMTPReply(503, "5.5.1", "Error: nested MAIL command")
    public static let needMail = SMTPReply(503, "5.5.1", "Error: need MAIL command")
    public static let needRcpt = SMTPReply(503, "5.5.1", "Error: need RCPT command")
    public static let noValidRecipients = SMTPReply(554, "5.5.1", "Error: no valid recipients")
    public static let unknownCommand = SMTPReply(500, "5.5.2", "Error: command not recognized")
    public static let lineTooLong = SMTPReply(500, "5.5.2", "Error: line too long")
    public static let nulByte = SMTPReply(500, "5.5.2", "Error: NUL character in command")
    public static let tooManyErrors = SMTPReply(421, "4.7.0", "Error: too many errors, closing connection")
    public static let tooManyRecipients = SMTPReply(452, "4.5.3", "Error: too many recipients")
    public static let messageTooBig = SMTPReply(552, "5.3.4", "Error: message file too big")
    public static let timeout = SMTPReply(421, "4.4.2", "Error: timeout exceeded")
    public static let shuttingDown = SMTPReply(421, "4.3.2", "Service shutting down, closing connection")
    public static let tlsNotAvailable = SMTPReply(454, "4.7.0", "TLS not available due to temporary reason")
    public static let tlsAlreadyActive = SMTPReply(503, "5.5.1", "Error: TLS already active")
    public static let vrfy = SMTPReply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
    public static let help = SMTPReply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321 and the mxgate README")
    public static let bareNewline = SMTPReply(550, "5.6.2", "Error: bare <CR> or <LF> in message text (RFC 5321 §2.3.8)")
    public static let textLineTooLong = SMTPReply(550, "5.6.0", "Error: message text line too long (RFC 5321 §4.5.3.1.6)")
}
