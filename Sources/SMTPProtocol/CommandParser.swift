/// Turns one command line (without its line ending) into an `SMTPCommand` or
/// the reply that explains why not. Pure: no state, no I/O.
public enum CommandParser {
    public static func parse(_ line: some Collection<UInt8>) -> Result<SMTPCommand, SMTPReply> {
        if line.contains(0) { return .failure(.nulByte) }
        // Commands are ASCII except for SMTPUTF8 addresses, which are UTF-8.
        guard let text = String(validating: line, as: UTF8.self) else {
            return .failure(SMTPReply(500, "5.5.2", "Error: invalid UTF-8 in command"))
        }
        return parse(text)
    }

    public static func parse(_ text: String) -> Result<SMTPCommand, SMTPReply> {
        let trimmed = text.drop { $0 == " " }
        let verbEnd = trimmed.firstIndex(of: " ") ?? trimmed.endIndex
        let verb = trimmed[..<verbEnd].uppercased()
        let arg = trimmed[verbEnd...].drop { $0 == " " }
        var argEnd = arg.endIndex
        while argEnd > arg.startIndex, arg[arg.index(before: argEnd)] == " " { argEnd = arg.index(before: argEnd) }
        let argText = String(arg[..<argEnd])

        switch verb {
        case "HELO", "EHLO":
            guard !argText.isEmpty else {
                return .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb) hostname"))
            }
            guard argText.allSatisfy({ $0.isASCII && !$0.isWhitespace || $0 == " " }) else {
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
        arg.allSatisfy({ $0 == " " }) ? .success(cmd) : .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb)"))
    }

    /// Strips "FROM:" / "TO:" case-insensitively and allows the space after the
    /// colon that many clients send (Postfix accepts it too).
    private static func afterKeyword(_ arg: Substring, _ keyword: String) -> Substring? {
        guard arg.count >= keyword.count, arg.prefix(keyword.count).uppercased() == keyword else { return nil }
        return arg.dropFirst(keyword.count).drop { $0 == " " }
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
