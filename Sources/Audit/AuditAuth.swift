/// The sender-authentication results of a transaction, as the audit record
/// carries them (`auth`): for SPF the result and the domain checked, for the
/// MAIL FROM identity and the HELO identity.
public struct AuditAuth: Codable, Sendable, Equatable {
    public struct Check: Codable, Sendable, Equatable {
        public var result: String
        public var domain: String
        public init(result: String, domain: String) {
            self.result = result
            self.domain = domain
        }
    }

    public var spf: Check?
    public var spfHelo: Check?

    public init(spf: Check? = nil, spfHelo: Check? = nil) {
        self.spf = spf
        self.spfHelo = spfHelo
    }

    enum CodingKeys: String, CodingKey {
        case spf
        case spfHelo = "spf_helo"
    }

    public var isEmpty: Bool { spf == nil && spfHelo == nil }

    /// The object as JSON, keys sorted (as `AuditRecord.jsonLine` writes every record).
    func json() -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        func check(_ key: StaticString, _ c: Check) {
            JSONText.appendKey(key, to: &out)
            out += Array("{\"domain\":".utf8)
            JSONText.appendQuoted(c.domain, to: &out)
            out += Array(",\"result\":".utf8)
            JSONText.appendQuoted(c.result, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        if let spf { check("spf", spf) }
        if let spfHelo { check("spf_helo", spfHelo) }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
