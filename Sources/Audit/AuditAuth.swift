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

    /// One DKIM signature's result.
    public struct Signature: Codable, Sendable, Equatable {
        public var result: String
        public var domain: String
        public var selector: String
        public init(result: String, domain: String, selector: String) {
            self.result = result
            self.domain = domain
            self.selector = selector
        }
    }

    public var spf: Check?
    public var spfHelo: Check?
    /// Every DKIM signature, in header order (empty: the message had none); nil: not checked.
    public var dkim: [Signature]?

    public init(spf: Check? = nil, spfHelo: Check? = nil, dkim: [Signature]? = nil) {
        self.spf = spf
        self.spfHelo = spfHelo
        self.dkim = dkim
    }

    enum CodingKeys: String, CodingKey {
        case spf, dkim
        case spfHelo = "spf_helo"
    }

    public var isEmpty: Bool { spf == nil && spfHelo == nil && dkim == nil }

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
        if let dkim {
            JSONText.appendKey("dkim", to: &out)
            out.append(UInt8(ascii: "["))
            for (i, s) in dkim.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out += Array("{\"domain\":".utf8)
                JSONText.appendQuoted(s.domain, to: &out)
                out += Array(",\"result\":".utf8)
                JSONText.appendQuoted(s.result, to: &out)
                out += Array(",\"selector\":".utf8)
                JSONText.appendQuoted(s.selector, to: &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        if let spf { check("spf", spf) }
        if let spfHelo { check("spf_helo", spfHelo) }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
