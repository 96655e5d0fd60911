import MailMessage

/// Body hashers for one message, one per body canonicalization and l=:
/// the DKIM signatures and ARC message signatures that agree on both
/// share one, so the body is canonicalized and hashed once for them.
final class BodyHashes {
    private var byKey: [String: DKIMBodyHasher] = [:]
    private var order: [DKIMBodyHasher] = []

    func hasher(_ canonical: DKIMCanonical, limit: Int?) -> DKIMBodyHasher {
        let key = "\(canonical.rawValue)/\(limit.map(String.init) ?? "")"
        if let h = byKey[key] { return h }
        let h = DKIMBodyHasher(canonical, limit: limit)
        byKey[key] = h
        order.append(h)
        return h
    }

    func feed(_ piece: UnsafeRawBufferPointer) {
        for h in order { h.feed(piece) }
    }

    /// Each hasher's digest, by identity.
    func finish() -> [ObjectIdentifier: [UInt8]] {
        var done: [ObjectIdentifier: [UInt8]] = [:]
        for h in order { done[ObjectIdentifier(h)] = h.finish() }
        return done
    }
}

/// A message whose body is hashed as one read streams past (DKIM
/// signatures, ARC message signatures), then verified.
public protocol BodyHashing: AnyObject, Sendable {
    /// Bytes of the text before the body; nil when the header section never ends.
    var bodyOffset: Int? { get }
    /// False when there is nothing to hash for (no signature, no ARC set).
    var hashesBody: Bool { get }
    func feedBody(_ piece: UnsafeRawBufferPointer)
    func finishBody()
}

/// One message's DKIM signatures, from its raw header section; the body is
/// fed as it is read (one hasher per kind of signature), then `verify`
/// checks each.
public final class DKIMMessage: BodyHashing, @unchecked Sendable {
    // Fed by one read at a time, then verified: never used from two threads at once.
    let fields: [ArraySlice<UInt8>]
    let signatures: [Result<DKIMSignature, DKIMError>]
    let hashers: [DKIMBodyHasher?]
    let pool = BodyHashes()
    /// Bytes of the text before the body; nil: no complete header.
    public let bodyOffset: Int?
    private var hashes: [[UInt8]?] = []

    public init(header: [UInt8]) {
        fields = DKIMVerifier.fields(header)
        signatures = DKIMVerifier.signatures(fields)
        let pool = self.pool
        hashers = signatures.map { s in
            guard case .success(let sig) = s else { return nil }
            return pool.hasher(sig.body, limit: sig.length)
        }
        bodyOffset = HeaderSection.bounds(header)?.bodyStart
    }

    public var signatureCount: Int { signatures.count }
    public var hashesBody: Bool { !signatures.isEmpty }

    public func feedBody(_ piece: UnsafeRawBufferPointer) { pool.feed(piece) }

    public func finishBody() {
        let done = pool.finish()
        hashes = hashers.map { $0.flatMap { done[ObjectIdentifier($0)] } }
    }

    public func verify(with verifier: DKIMVerifier) async -> [DKIMOutcome] {
        var out: [DKIMOutcome] = []
        for (i, s) in signatures.enumerated() {
            out.append(await verifier.verify(s, fields: fields, bodyHash: i < hashes.count ? hashes[i] : nil))
        }
        return out
    }
}
