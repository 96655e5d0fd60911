/// Every protocol limit in one place, each defaulting to the value its RFC
/// names (or the conservative choice Postfix makes where the RFC names none).
public struct SMTPLimits: Sendable, Hashable {
    /// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with CRLF.
    /// SMTP extensions (SIZE, SMTPUTF8 …) add parameters, so we allow more, as
    /// RFC 1869 §4.1.2 permits.
    public var commandLineLength = 2048
    /// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with CRLF.
    public var textLineLength = 1000
    /// RFC 5321 §4.5.3.1.8 requires at least 100 recipients per message.
    public var recipients = 100
    /// RFC 1870 SIZE, advertised in EHLO and enforced while streaming.
    public var messageSize = 26_214_400
    /// Errors before the session is closed with 421 (Postfix smtpd_hard_error_limit).
    public var errors = 20
    /// RFC 5321 §4.5.3.2 timeouts, in seconds.
    public var commandTimeout: Double = 300       // waiting for the next command
    public var dataBlockTimeout: Double = 180     // between blocks of DATA (§4.5.3.2.6 says 3 minutes)
    /// Bytes of a message's header section (Postfix header_size_limit).
    public var headerSize = 102_400
    /// Received lines before a message is taken for a loop (Postfix hopcount_limit).
    public var maxReceived = 50
    /// The whole message text (DATA, or one BDAT chunk) must arrive within this.
    public var dataDeadline: Double = 3600
    /// Postscreen-style greet wait: hold the 220 this long and refuse
    /// clients that talk first (0: off).
    public var greetWait: Double = 0
    /// Idle limit between commands while the gateway is near max_connections.
    public var stressTimeout: Double = 10

    public init() {}
}
