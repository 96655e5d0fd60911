/// Parses the replies an SMTP server sends (client side, RFC 5321 §4.2),
/// one line at a time, including multi-line replies and RFC 3463 codes.
public struct ReplyParser: Sendable {
    private var code: Int?
    private var enhanced: String?
    private var lines: [String] = []

    public init() {}

    public struct Malformed: Error, Sendable, CustomStringConvertible {
        public var line: String
        public var description: String { "malformed SMTP reply line: \(line.prefix(80))" }
    }

    /// Feeds one line without CRLF; returns a reply once its last line arrives.
    public mutating func feed(_ line: String) throws(Malformed) -> SMTPReply? {
        let u = Array(line.utf8)
        guard u.count >= 3, u[0] >= 50, u[0] <= 53, u[1] >= 48, u[1] <= 57, u[2] >= 48, u[2] <= 57,
              u.count == 3 || u[3] == 32 || u[3] == 45 else { throw Malformed(line: line) }
        let c = Int(u[0] - 48) * 100 + Int(u[1] - 48) * 10 + Int(u[2] - 48)
        if let code, code != c { throw Malformed(line: line) }
        code = c
        var text = u.count > 4 ? String(decoding: u[4...], as: UTF8.self) : ""
        if let (e, rest) = Self.splitEnhanced(text, classDigit: u[0]) {
            if enhanced == nil { enhanced = e }
            text = rest
        }
        lines.append(text)
        guard u.count == 3 || u[3] == 32 else { return nil }
        let reply = SMTPReply(code: c, enhanced: enhanced, lines: lines)
        self = ReplyParser()
        return reply
    }

    /// RFC 3463: class "." subject "." detail, class matching the reply's first digit.
    static func splitEnhanced(_ text: String, classDigit: UInt8) -> (String, String)? {
        let u = Array(text.utf8)
        guard u.count >= 5, u[0] == classDigit, u[1] == 46 else { return nil }
        var i = 2
        var digits = 0
        while i < u.count, u[i] >= 48, u[i] <= 57, digits < 3 { i += 1; digits += 1 }
        guard digits > 0, i < u.count, u[i] == 46 else { return nil }
        i += 1
        digits = 0
        while i < u.count, u[i] >= 48, u[i] <= 57, digits < 3 { i += 1; digits += 1 }
        guard digits > 0, i == u.count || u[i] == 32 else { return nil }
        let e = String(decoding: u[..<i], as: UTF8.self)
        let rest = i < u.count ? String(decoding: u[(i + 1)...], as: UTF8.self) : ""
        return (e, rest)
    }
}
