import NIOCore

/// Turns one command line (without its line ending) into an `SMTPCommand` or
/// the reply that explains why not. Pure: no state, no I/O.
public enum CommandParser {
    public static func parse(_ line: some Collection<UInt8>) -> Result<SMTPCommand, SMTPReply> {
        if let result = line.withContiguousStorageIfAvailable({ parse(bytes: $0) }) { return result }
        return Array(line).withUnsafeBufferPointer { parse(bytes: $0) }
    }

    /// A session's command line is parsed once per command; this path
    /// checks and converts the bytes in one go, without generic iteration.
    public static func parse(_ line: ByteBuffer) -> Result<SMTPCommand, SMTPReply> {
        line.withUnsafeReadableBytes { parse(bytes: $0.assumingMemoryBound(to: UInt8.self)) }
    }

    private static func parse(bytes: UnsafeBufferPointer<UInt8>) -> Result<SMTPCommand, SMTPReply> {
        if bytes.contains(0) { return .failure(.nulByte) }
        // Commands are ASCII except for SMTPUTF8 addresses, which are UTF-8.
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(SMTPReply(500, "5.5.2", "Error: invalid UTF-8 in command"))
        }
        return parse(text)
    }

    public static func parse(_ text: String) -> Result<SMTPCommand, SMTPReply> {
        // Spaces are ASCII, so UTF-8 positions next to them are valid String indices.
        let u = text.utf8
        var start = u.startIndex
        while start < u.endIndex && u[start] == 32 { start = u.index(after: start) }
        var verbEnd = start
        while verbEnd < u.endIndex && u[verbEnd] != 32 { verbEnd = u.index(after: verbEnd) }
        let verb = asciiUppercased(text[start..<verbEnd])
        var argStart = verbEnd
        while argStart < u.endIndex && u[argStart] == 32 { argStart = u.index(after: argStart) }
        let arg = text[argStart...]
        var argEnd = u.endIndex
        while argEnd > argStart && u[u.index(before: argEnd)] == 32 { argEnd = u.index(before: argEnd) }
        let argText = String(text[argStart..<argEnd])

        switch verb {
        case "HELO", "EHLO":
            guard !argText.isEmpty else {
                return .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb) hostname"))
            }
            // ASCII, no whitespace but spaces (bytes: a Character walk costs grapheme breaking).
            guard argText.utf8.allSatisfy({ $0 == 32 || $0 < 0x80 && !(9...13).contains($0) }) else {
                return .failure(SMTPReply(501, "5.5.4", "Error: invalid characters in \(verb) argument"))
            }
            return .success(verb == "HELO" ? .helo(argText) : .ehlo(argText))
        case "MAIL":
            return parseMail(arg)
        case "RCPT":
            return parseRcpt(arg)
        case "DATA":
            return noArgument(arg, .data, "DATA")
        case "BDAT":
            return parseBDAT(argText)
        case "RSET":
            return noArgument(arg, .rset, "RSET")
        case "NOOP":
            return .success(.noop)  // RFC 5321 §4.1.1.9: an argument is allowed and ignored
        case "QUIT":
            return noArgument(arg, .quit, "QUIT")
        case "VRFY":
            guard !argText.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: VRFY address")) }
            return .success(.vrfy(argText))
        case "EXPN":
            guard !argText.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: EXPN list")) }
            return .success(.expn(argText))
        case "HELP":
            return .success(.help)
        case "STARTTLS":
            return noArgument(arg, .startTLS, "STARTTLS")
        default:
            return .failure(.unknownCommand)
        }
    }

    private static func noArgument(_ arg: Substring, _ cmd: SMTPCommand, _ verb: String) -> Result<SMTPCommand, SMTPReply> {
        arg.utf8.allSatisfy({ $0 == 32 }) ? .success(cmd) : .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb)"))
    }

    /// Strips "FROM:" / "TO:" case-insensitively and allows the space after the
    /// colon that many clients send (Postfix accepts it too).
    private static func afterKeyword(_ arg: Substring, _ keyword: StaticString) -> Substring? {
        let u = arg.utf8
        var i = u.startIndex
        for k in UnsafeBufferPointer(start: keyword.utf8Start, count: keyword.utf8CodeUnitCount) {
            guard i < u.endIndex, asciiUpper(u[i]) == k else { return nil }
            i = u.index(after: i)
        }
        while i < u.endIndex && u[i] == 32 { i = u.index(after: i) }
        return arg[i...]
    }

    private static func asciiUpper(_ b: UInt8) -> UInt8 { b >= 0x61 && b <= 0x7A ? b - 0x20 : b }

    /// Upper-cases ASCII letters only (a verb or keyword; anything else stays).
    static func asciiUppercased(_ s: Substring) -> String {
        if !s.utf8.contains(where: { $0 >= 0x61 && $0 <= 0x7A }) { return String(s) }
        return String(decoding: s.utf8.map(asciiUpper), as: UTF8.self)
    }

    // mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
    private static func parseMail(_ arg: Substring) -> Result<SMTPCommand, SMTPReply> {
        guard let rest = afterKeyword(arg, "FROM:") else {
            return .failure(SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        }
        let path: ReversePath
        let tail: Substring
        do {
            (path, tail) = try AddressParser.parseReversePath(rest)
        } catch {
            return .failure(SMTPReply(501, "5.1.7", "Bad sender address syntax: \(error.message)"))
        }
        var params = MailParameters()
        for (key, value) in parameters(tail) {
            switch key {
            case "SIZE":
                guard let v = value, let n = Int(v), n >= 0 else {
                    return .failure(SMTPReply(501, "5.5.4", "Bad SIZE parameter"))
                }
                params.size = n
            case "BODY":
                guard let v = value?.uppercased(), ["7BIT", "8BITMIME", "BINARYMIME"].contains(v) else {
                    return .failure(SMTPReply(501, "5.5.4", "Bad BODY parameter"))
                }
                params.body = v
            case "SMTPUTF8":
                guard value == nil else { return .failure(SMTPReply(501, "5.5.4", "Bad SMTPUTF8 parameter")) }
                params.smtpUTF8 = true
            case "RET":
                guard let v = value?.uppercased(), v == "FULL" || v == "HDRS" else {
                    return .failure(SMTPReply(501, "5.5.4", "Bad RET parameter"))
                }
                params.ret = v
            case "ENVID":
                guard let v = value, !v.isEmpty, v.utf8.count <= 100 else {
                    return .failure(SMTPReply(501, "5.5.4", "Bad ENVID parameter"))
                }
                params.envid = v
            case "AUTH":
                break  // RFC 4954 §5: a server that does not trust the client ignores AUTH=
            case "":
                return .failure(SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]"))
            default:
                return .failure(SMTPReply(555, "5.5.4", "Unsupported MAIL parameter \(key)"))
            }
        }
        return .success(.mail(path, params))
    }

    // rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
    //        Forward-path ) [SP Rcpt-parameters] CRLF
    private static func parseRcpt(_ arg: Substring) -> Result<SMTPCommand, SMTPReply> {
        guard let rest = afterKeyword(arg, "TO:") else {
            return .failure(SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
        }
        let box: Mailbox
        let tail: Substring
        do {
            (box, tail) = try AddressParser.parseForwardPath(rest)
        } catch {
            return .failure(SMTPReply(501, "5.1.3", "Bad recipient address syntax: \(error.message)"))
        }
        var params = RcptParameters()
        for (key, value) in parameters(tail) {
            switch key {
            case "NOTIFY":
                guard let v = value?.uppercased(), validNotify(v) else {
                    return .failure(SMTPReply(501, "5.5.4", "Bad NOTIFY parameter"))
                }
                params.notify = v
            case "ORCPT":
                guard let v = value, v.contains(";") else { return .failure(SMTPReply(501, "5.5.4", "Bad ORCPT parameter")) }
                params.orcpt = v
            case "":
                return .failure(SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]"))
            default:
                return .failure(SMTPReply(555, "5.5.4", "Unsupported RCPT parameter \(key)"))
            }
        }
        return .success(.rcpt(box, params))
    }

    private static func validNotify(_ v: String) -> Bool {
        let items = v.split(separator: ",").map(String.init)
        if items == ["NEVER"] { return true }
        return !items.isEmpty && items.allSatisfy { ["SUCCESS", "FAILURE", "DELAY"].contains($0) }
    }

    // bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF
    private static func parseBDAT(_ arg: String) -> Result<SMTPCommand, SMTPReply> {
        let parts = arg.split(separator: " ")
        guard (1...2).contains(parts.count), parts[0].allSatisfy(\.isASCII), let size = Int(parts[0]), size >= 0 else {
            return .failure(SMTPReply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
        }
        if parts.count == 2 {
            guard parts[1].uppercased() == "LAST" else { return .failure(SMTPReply(501, "5.5.4", "Syntax: BDAT size [LAST]")) }
            return .success(.bdat(size: size, last: true))
        }
        return .success(.bdat(size: size, last: false))
    }

    /// Splits `KEY=value KEY2` into upper-cased keys and raw values; an empty
    /// key (a stray "=") is reported as "".
    private static func parameters(_ text: Substring) -> [(String, String?)] {
        text.split(separator: " ").map { item in
            if let eq = item.firstIndex(of: "=") {
                return (item[..<eq].uppercased(), String(item[item.index(after: eq)...]))
            }
            return (item.uppercased(), nil)
        }
    }
}
