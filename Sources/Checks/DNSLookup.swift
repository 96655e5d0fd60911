import Policy

/// Where DNS answers come from: the live resolver (libunbound), or a zone
/// held in memory (`mxgate test --dns-zone`, the SPF conformance suite).
/// Answers are raw rdata, as on the wire; `DNSRecord` decodes the types
/// the checks use.
public protocol DNSLookup: Sendable {
    func query(_ name: String, type: Int32, timeout: Double?) async -> Result<[[UInt8]], DNSError>
    /// The longest one lookup may take.
    var timeout: Double { get }
}

extension DNSResolver: DNSLookup {}

extension DNSLookup {
    /// PTR names for an address, then forward-confirmed (FCrDNS, RFC 8601 §2.7.3
    /// "iprev"): a name counts as verified if one of its A/AAAA records is the address.
    public func reverse(_ ip: IPAddress) async -> Result<(names: [String], verified: String?), DNSError> {
        let ptr = await query(ip.reverseName, type: DNSType.ptr, timeout: nil)
        let names: [String]
        switch ptr {
        case .success(let records):
            names = records.compactMap(DNSResolver.decodeName)
        case .failure(let e) where e.isDefinite:
            return .success(([], nil))
        case .failure(let e):
            return .failure(e)
        }
        var firstFailure: DNSError?
        for name in names.prefix(5) {
            switch await query(name, type: ip.isV4 ? DNSType.a : DNSType.aaaa, timeout: nil) {
            case .success(let addrs):
                if addrs.contains(where: { DNSResolver.address($0) == ip }) { return .success((names, name)) }
            case .failure(let e) where !e.isDefinite:
                firstFailure = firstFailure ?? e
            case .failure:
                break
            }
        }
        if let f = firstFailure { return .failure(f) }
        return .success((names, nil))
    }
}

extension Duration {
    /// The duration in seconds, for budgets kept as Double.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Record types by number (RFC 1035, RFC 3596).
public enum DNSType {
    public static let a: Int32 = 1
    public static let cname: Int32 = 5
    public static let ptr: Int32 = 12
    public static let mx: Int32 = 15
    public static let txt: Int32 = 16
    public static let aaaa: Int32 = 28
}

/// Decoders for rdata.
public enum DNSRecord {
    /// A TXT record's character-strings, joined with nothing between them
    /// (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
    public static func text(_ rdata: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < rdata.count {
            let n = Int(rdata[i])
            let end = min(rdata.count, i + 1 + n)
            out += rdata[(i + 1)..<end]
            i = end
        }
        return out
    }

    /// An MX record: preference and exchange name.
    public static func mx(_ rdata: [UInt8]) -> (preference: Int, host: String)? {
        guard rdata.count >= 3, let name = DNSResolver.decodeName(Array(rdata[2...])) else { return nil }
        return (Int(rdata[0]) << 8 | Int(rdata[1]), name)
    }

    public static func name(_ rdata: [UInt8]) -> String? { DNSResolver.decodeName(rdata) }

    public static func address(_ rdata: [UInt8]) -> IPAddress? { DNSResolver.address(rdata) }
}
