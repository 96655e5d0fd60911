/// An SMTP command as understood by the server (RFC 5321 §4.1.1 plus the
/// extensions mxgate advertises).
public enum SMTPCommand: Sendable, Hashable {
    case helo(String)
    case ehlo(String)
    case mail(ReversePath, MailParameters)
    case rcpt(Mailbox, RcptParameters)
    case data
    /// RFC 3030: the size of the chunk that follows and whether it is the last.
    case bdat(size: Int, last: Bool)
    case rset
    case noop
    case quit
    case vrfy(String)
    case expn(String)
    case help
    case startTLS
}

/// ESMTP parameters of MAIL FROM that mxgate understands.
public struct MailParameters: Sendable, Hashable {
    /// RFC 1870 SIZE=: the client's estimate, checked against the limit at MAIL.
    public var size: Int?
    /// RFC 6152 BODY=7BIT/8BITMIME, RFC 3030 BODY=BINARYMIME.
    public var body: String?
    /// RFC 6531 SMTPUTF8.
    public var smtpUTF8 = false
    /// RFC 3461 RET= and ENVID=, kept verbatim so a downstream gets them too.
    public var ret: String?
    public var envid: String?
    public init() {}
}

/// ESMTP parameters of RCPT TO that mxgate understands (RFC 3461 DSN).
public struct RcptParameters: Sendable, Hashable {
    public var notify: String?
    public var orcpt: String?
    public init() {}
}
