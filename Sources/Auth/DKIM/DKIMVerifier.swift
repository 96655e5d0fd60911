import Checks
import Crypto
import CryptoExtras
import Foundation

/// One DKIM signature's result (RFC 6376 §6, RFC 8601 §2.7.1 names).
public struct DKIMOutcome: Sendable, Equatable {
    public enum Result: String, Sendable {
        case pass, fail, neutral, policy, temperror, permerror
    }
    public var result: Result
    public var domain: String
    public var selector: String
    public var algorithm: String
    /// Why, when it did not pass.
    public var reason: String?
}

/// A parsed DKIM-Signature field and what its verification needs.
struct DKIMSignature {
    var algorithm: String
    var signature: [UInt8]
    var bodyHash: [UInt8]
    var header: DKIMCanonical
    var body: DKIMCanonical
    var domain: String
    var selector: String
    var signedHeaders: [String]
    var length: Int?
    var expires: Int?
    var timestamp: Int?
    /// The field as received, for the signed data with b= emptied.
    var field: ArraySlice<UInt8>

    /// Parses and checks the required tags (§3.5, §6.1.1); a reason when invalid.
    /// With `arc`, an ARC-Message-Signature (RFC 8617 §4.1.2): the same
    /// tags, but no v=, i= is the instance, and h= need not sign From.
    static func parse(_ field: ArraySlice<UInt8>, arc: Bool = false) -> Result<DKIMSignature, DKIMError> {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return .failure(.permerror("no colon")) }
        guard let tags = DKIMTags(String(decoding: field[(colon + 1)...], as: UTF8.self)) else {
            return .failure(.permerror("bad tag list"))
        }
        guard arc || tags["v"] == "1" else { return .failure(.permerror("v= is not 1")) }
        guard let a = tags["a"]?.lowercased(), let b = tags.compact("b"), let bh = tags.compact("bh"),
              let d = tags["d"]?.lowercased(), let h = tags["h"], let s = tags["s"]?.lowercased() else {
            return .failure(.permerror("a required tag is missing"))
        }
        guard let sig = Data(base64Encoded: b), let bodyHash = Data(base64Encoded: bh) else { return .failure(.permerror("bad base64")) }
        let c = (tags["c"] ?? "simple/simple").lowercased().split(separator: "/", omittingEmptySubsequences: false)
        guard c.count <= 2, let hc = DKIMCanonical(rawValue: String(c[0])),
              let bc = DKIMCanonical(rawValue: c.count == 2 ? String(c[1]) : "simple") else {
            return .failure(.permerror("unknown canonicalization"))
        }
        let names = DKIMTags.list(h)
        guard arc || names.contains("from") else { return .failure(.permerror("h= does not sign From")) }
        if arc && names.contains("arc-seal") { return .failure(.permerror("h= signs ARC-Seal")) }
        if !arc, let i = tags["i"], let at = i.lastIndex(of: "@") {
            let idom = i[i.index(after: at)...].lowercased()
            guard idom == d || idom.hasSuffix("." + d) else { return .failure(.permerror("i= is not within d=")) }
        }
        var length: Int?
        if let l = tags["l"] {
            guard let n = Int(l), n >= 0 else { return .failure(.permerror("bad l=")) }
            length = n
        }
        let t = tags["t"].flatMap { Int($0) }, x = tags["x"].flatMap { Int($0) }
        if let t, let x, x < t { return .failure(.permerror("x= is before t=")) }
        return .success(DKIMSignature(algorithm: a, signature: Array(sig), bodyHash: Array(bodyHash), header: hc, body: bc,
                                      domain: d, selector: s, signedHeaders: names, length: length, expires: x, timestamp: t,
                                      field: field))
    }
}

enum DKIMError: Error, Equatable {
    case permerror(String)
    case temperror(String)
    case fail(String)
    case policy(String)
}

/// Verifies DKIM signatures (RFC 6376, RFC 8301, RFC 8463): rsa-sha256 and
/// ed25519-sha256; rsa-sha1 and RSA keys under 1024 bits fail (RFC 8301).
/// The header fields come raw; the body hashes come from `DKIMBodyHasher`s
/// the caller fed while reading the text once.
public struct DKIMVerifier: Sendable {
    let dns: any DNSLookup
    let queryTimeout: Double?
    /// At most this many signatures are verified; the rest are ignored.
    public static let maxSignatures = 5

    public init(dns: any DNSLookup, queryTimeout: Double? = nil) {
        self.dns = dns
        self.queryTimeout = queryTimeout
    }

    /// The header section split into whole fields (each with its CRLF).
    static func fields(_ header: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = 0, i = 0
        while i < header.count {
            var end = i
            while end < header.count && header[end] != 10 { end += 1 }
            let lineEnd = min(end + 1, header.count)
            if end == i || (end == i + 1 && header[i] == 13) {  // the empty line
                if start < i { out.append(header[start..<i]) }
                return out
            }
            if i > start && header[i] != 32 && header[i] != 9 {
                out.append(header[start..<i])
                start = i
            }
            i = lineEnd
        }
        if start < header.count { out.append(header[start..<header.count]) }
        return out
    }

    static func name(_ field: ArraySlice<UInt8>) -> String {
        let n = field.prefix { $0 != UInt8(ascii: ":") }
        return String(decoding: DKIMTags.trimmed(n), as: UTF8.self).lowercased()
    }

    /// The signatures in the header, parsed (or why not), in order, at most `maxSignatures`.
    static func signatures(_ fields: [ArraySlice<UInt8>]) -> [Result<DKIMSignature, DKIMError>] {
        Array(fields.filter { name($0) == "dkim-signature" }.prefix(maxSignatures).map { DKIMSignature.parse($0) })
    }

    /// The data a signature signs: the h= fields (each the last unused
    /// instance, bottom up; a missing one adds nothing), then the signature
    /// field with b= emptied and no final CRLF (§3.7, §5.4.2).
    static func signedData(_ sig: DKIMSignature, _ fields: [ArraySlice<UInt8>]) -> [UInt8] {
        var used = Set<Int>()
        var out: [UInt8] = []
        for name in sig.signedHeaders {
            if let i = fields.indices.reversed().first(where: { !used.contains($0) && Self.name(fields[$0]) == name }) {
                used.insert(i)
                out += sig.header.header(fields[i])
            }
        }
        var own = sig.header.header(emptyB(sig.field))
        while own.last == 10 || own.last == 13 { own.removeLast() }
        return out + own
    }

    /// The field with the value of its b= tag removed (the tag itself stays).
    static func emptyB(_ field: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let bytes = Array(field)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return field }
        var out = Array(bytes[...colon])
        var i = colon + 1
        while i < bytes.count {
            // Each tag: from here to the next ';' (or the end).
            var j = i
            while j < bytes.count && bytes[j] != UInt8(ascii: ";") { j += 1 }
            let tag = bytes[i..<j]
            let trimmed = tag.drop { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 }
            if trimmed.first == UInt8(ascii: "b"), let eq = trimmed.dropFirst().drop(while: { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 }).first,
               eq == UInt8(ascii: "=") {
                let eqIndex = trimmed.dropFirst().firstIndex(of: UInt8(ascii: "="))!
                out += bytes[i...eqIndex]
            } else {
                out += tag
            }
            if j < bytes.count { out.append(UInt8(ascii: ";")) }
            i = j + 1
        }
        // With b= last, its value took the field's line end along: put it back for canonicalization.
        if out.last != 10, let end = bytes.lastIndex(where: { $0 != 10 && $0 != 13 }), end + 1 < bytes.count {
            out += bytes[(end + 1)...]
        }
        return out[...]
    }

    /// Verifies one signature given its body hash.
    func verify(_ parsed: Result<DKIMSignature, DKIMError>, fields: [ArraySlice<UInt8>], bodyHash: [UInt8]?,
                       now: Int = Int(Date().timeIntervalSince1970)) async -> DKIMOutcome {
        let sig: DKIMSignature
        switch parsed {
        case .success(let s): sig = s
        case .failure(let e): return DKIMOutcome(result: .permerror, domain: "", selector: "", algorithm: "", reason: "\(e)")
        }
        func out(_ r: DKIMOutcome.Result, _ why: String?) -> DKIMOutcome {
            DKIMOutcome(result: r, domain: sig.domain, selector: sig.selector, algorithm: sig.algorithm, reason: why)
        }
        if let x = sig.expires, x < now { return out(.fail, "signature expired") }
        guard sig.algorithm == "rsa-sha256" || sig.algorithm == "ed25519-sha256" else {
            return out(sig.algorithm == "rsa-sha1" ? .fail : .permerror, "algorithm \(sig.algorithm) not accepted (RFC 8301)")
        }
        guard let bodyHash, bodyHash == sig.bodyHash else {
            // The key is still looked up first: a missing or revoked key says more than the body.
            let (r, why) = await checkSignature(algorithm: sig.algorithm, domain: sig.domain, selector: sig.selector,
                                                data: nil, signature: sig.signature)
            return r == .pass ? out(.fail, "body hash did not verify") : out(r, why)
        }
        let (r, why) = await checkSignature(algorithm: sig.algorithm, domain: sig.domain, selector: sig.selector,
                                            data: Self.signedData(sig, fields), signature: sig.signature)
        return out(r, why)
    }

    /// Looks up the key at SELECTOR._domainkey.DOMAIN (§3.6.2) and checks
    /// `signature` over SHA-256 of `data`; with no data, only the key (pass:
    /// the key is usable). Shared by DKIM-Signature, ARC-Message-Signature and ARC-Seal.
    func checkSignature(algorithm: String, domain: String, selector: String, data: [UInt8]?,
                        signature: [UInt8]) async -> (DKIMOutcome.Result, String?) {
        let name = "\(selector)._domainkey.\(domain)"
        let texts: [String]
        switch await dns.query(name, type: DNSType.txt, timeout: queryTimeout) {
        case .success(let r): texts = r.map { String(decoding: DNSRecord.text($0), as: UTF8.self) }
        case .failure(.nxdomain), .failure(.noData): return (.permerror, "no key at \(name)")
        case .failure(let e): return (.temperror, "key lookup of \(name) failed: \(e)")
        }
        guard texts.count == 1 else { return (.permerror, "no single key record at \(name)") }
        let (k, key) = DKIMKey.cached(texts[0])
        // In RFC 6376's order: an unreadable record, then a key type that does not fit, then what is wrong with the key.
        if k.isEmpty, case .invalid(let why) = key { return (.permerror, why == DKIMKey.unreadable ? "\(why) at \(name)" : why) }
        guard (k == "rsa" && algorithm == "rsa-sha256") || (k == "ed25519" && algorithm == "ed25519-sha256") else {
            return (.permerror, "key type \(k) does not fit \(algorithm)")
        }
        if case .invalid(let why) = key { return (.permerror, why) }
        let ok: Bool
        switch key {
        case .revoked, .invalid:
            return (.fail, "key revoked")
        case .ed25519(let pub):
            guard let data else { return (.pass, nil) }
            ok = pub.isValidSignature(signature, for: Data(SHA256.hash(data: data)))
        case .rsa(let pub):
            guard let data else { return (.pass, nil) }
            ok = pub.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: data),
                                      padding: .insecurePKCS1v1_5)
        }
        return ok ? (.pass, nil) : (.fail, "signature did not verify")
    }
}
