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

    /// DMARC's result for the From domain, the policy it publishes ("none"
    /// when it publishes none) and the disposition DMARC asks for.
    public struct DMARC: Codable, Sendable, Equatable {
        public var result: String
        public var domain: String
        public var policy: String
        public var disposition: String
        public init(result: String, domain: String, policy: String, disposition: String) {
            self.result = result
            self.domain = domain
            self.policy = policy
            self.disposition = disposition
        }
    }

    /// The ARC chain's validity.
    public struct ARC: Codable, Sendable, Equatable {
        public var result: String
        public init(result: String) { self.result = result }
    }

    public var spf: Check?
    public var spfHelo: Check?
    /// Every DKIM signature, in header order (empty: the message had none); nil: not checked.
    public var dkim: [Signature]?
    public var dmarc: DMARC?
    public var arc: ARC?

    public init(spf: Check? = nil, spfHelo: Check? = nil, dkim: [Signature]? = nil, dmarc: DMARC? = nil, arc: ARC? = nil) {
        self.spf = spf
        self.spfHelo = spfHelo
        self.dkim = dkim
        self.dmarc = dmarc
        self.arc = arc
    }

    enum CodingKeys: String, CodingKey {
        case spf, dkim, dmarc, arc
        case spfHelo = "spf_helo"
    }

    public var isEmpty: Bool { spf == nil && spfHelo == nil && dkim == nil && dmarc == nil && arc == nil }

    /// Each result in words, a line each: ("dmarc", "fail (example.org): policy reject, disposition reject").
    public var summary: [(String, String)] {
        var lines: [(String, String)] = []
        if let s = spf { lines.append(("spf", "\(s.result) (\(s.domain))")) }
        if let s = spfHelo { lines.append(("spf helo", "\(s.result) (\(s.domain))")) }
        if let d = dkim {
            if d.isEmpty { lines.append(("dkim", "none (no signature)")) }
            for s in d { lines.append(("dkim", "\(s.result) d=\(s.domain) s=\(s.selector)")) }
        }
        if let d = dmarc {
            lines.append(("dmarc", "\(d.result) (\(d.domain.isEmpty ? "no From domain" : d.domain)): policy \(d.policy), disposition \(d.disposition)"))
        }
        if let c = arc { lines.append(("arc", c.result)) }
        return lines
    }

    /// The object as JSON, keys sorted (as `AuditRecord.jsonLine` writes every record).
    func json() -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        /// A string member of the object being written; keys are written in sorted order by the caller.
        func field(_ key: String, _ value: String, first: Bool = false) {
            if !first { out.append(UInt8(ascii: ",")) }
            out += Array("\"\(key)\":".utf8)
            JSONText.appendQuoted(value, to: &out)
        }
        func object(_ members: () -> Void) {
            out.append(UInt8(ascii: "{"))
            members()
            out.append(UInt8(ascii: "}"))
        }
        if let arc {
            JSONText.appendKey("arc", to: &out)
            object { field("result", arc.result, first: true) }
        }
        if let dkim {
            JSONText.appendKey("dkim", to: &out)
            out.append(UInt8(ascii: "["))
            for (i, s) in dkim.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                object {
                    field("domain", s.domain, first: true)
                    field("result", s.result)
                    field("selector", s.selector)
                }
            }
            out.append(UInt8(ascii: "]"))
        }
        if let dmarc {
            JSONText.appendKey("dmarc", to: &out)
            object {
                field("disposition", dmarc.disposition, first: true)
                field("domain", dmarc.domain)
                field("policy", dmarc.policy)
                field("result", dmarc.result)
            }
        }
        for (key, c) in [("spf" as StaticString, spf), ("spf_helo", spfHelo)] {
            guard let c else { continue }
            JSONText.appendKey(key, to: &out)
            object {
                field("domain", c.domain, first: true)
                field("result", c.result)
            }
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
