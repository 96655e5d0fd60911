import Foundation
import MailMessage

/// What ARC validation (RFC 8617 §5.2) concluded.
public struct ARCOutcome: Sendable, Equatable {
    public enum Result: String, Sendable, CaseIterable {
        case none, pass, fail
    }
    public var result: Result
    /// The lowest instance whose message signature still validates, with
    /// every newer one validating; 0 when all of them do (§5.2 step 5).
    public var oldestPass: Int = 0
    /// Every hop of a chain that passed, newest first.
    public var hops: [ARCHop] = []
    /// Why it is not pass.
    public var reason: String?
}

/// One ARC set of a valid chain: who sealed it and what it recorded.
public struct ARCHop: Sendable, Equatable {
    public var instance: Int
    /// The sealer's domain (ARC-Seal d=).
    public var sealer: String
    /// Method to result in its ARC-Authentication-Results ("dmarc": "pass").
    public var results: [String: String]
    /// header.from= of its dmarc= result, when given.
    public var headerFrom: String?
}

/// A message's ARC sets, from its raw header section; the body is fed as
/// it is read (one hasher per kind of message signature), then `verify`
/// validates the chain: structure, the newest ARC-Message-Signature, every
/// ARC-Seal from the newest down. At most 50 sets (§5.2).
public final class ARCChain: BodyHashing, @unchecked Sendable {
    // Fed by one read at a time, then verified: never used from two threads at once.
    struct SetFields {
        var aar: ArraySlice<UInt8>?
        var ams: ArraySlice<UInt8>?
        var seal: ArraySlice<UInt8>?
        var duplicate = false
    }

    let fields: [ArraySlice<UInt8>]
    /// Sets by instance, or why the structure is broken.
    let sets: Result<[SetFields], ARCFailure>
    private let pool = BodyHashes()
    private var amsHashers: [Int: (DKIMSignature, DKIMBodyHasher)] = [:]
    private var amsHashes: [Int: [UInt8]] = [:]
    public let bodyOffset: Int?
    static let maxSets = 50

    struct ARCFailure: Error, Equatable { var why: String }

    public init(header: [UInt8]) {
        fields = DKIMVerifier.fields(header)
        bodyOffset = HeaderSection.bounds(header)?.bodyStart
        sets = Self.collect(fields)
        guard case .success(let all) = sets else { return }
        for (index, set) in all.enumerated() {
            guard let ams = set.ams, case .success(let sig) = DKIMSignature.parse(ams, arc: true) else { continue }
            amsHashers[index + 1] = (sig, pool.hasher(sig.body, limit: sig.length))
        }
    }

    /// True when the message has no ARC header field at all.
    public var isEmpty: Bool {
        if case .success(let s) = sets { return s.isEmpty }
        return false
    }

    public var hashesBody: Bool { !isEmpty }

    public func feedBody(_ piece: UnsafeRawBufferPointer) { pool.feed(piece) }

    public func finishBody() {
        let done = pool.finish()
        for (i, (_, h)) in amsHashers { amsHashes[i] = done[ObjectIdentifier(h)] }
    }

    /// The ARC fields grouped by instance (§5.2 steps 1 and 3): one of each
    /// per set, instances 1…N with no gap.
    static func collect(_ fields: [ArraySlice<UInt8>]) -> Result<[SetFields], ARCFailure> {
        var byInstance: [Int: SetFields] = [:]
        for f in fields {
            let name = DKIMVerifier.name(f)
            guard name == "arc-seal" || name == "arc-message-signature" || name == "arc-authentication-results" else { continue }
            guard let i = instance(f, aar: name == "arc-authentication-results"), (1...maxSets).contains(i) else {
                return .failure(ARCFailure(why: "\(name) has no valid i= instance"))
            }
            var s = byInstance[i] ?? SetFields()
            switch name {
            case "arc-seal": if s.seal != nil { s.duplicate = true } else { s.seal = f }
            case "arc-message-signature": if s.ams != nil { s.duplicate = true } else { s.ams = f }
            default: if s.aar != nil { s.duplicate = true } else { s.aar = f }
            }
            byInstance[i] = s
        }
        let n = byInstance.keys.max() ?? 0
        var out: [SetFields] = []
        for i in stride(from: 1, through: n, by: 1) {
            guard let s = byInstance[i] else { return .failure(ARCFailure(why: "ARC set \(i) is missing")) }
            guard !s.duplicate, s.aar != nil, s.ams != nil, s.seal != nil else {
                return .failure(ARCFailure(why: "ARC set \(i) does not have exactly one of each field"))
            }
            out.append(s)
        }
        return .success(out)
    }

    /// The i= of a field: a tag of ARC-Seal and ARC-Message-Signature, the
    /// first thing in ARC-Authentication-Results ("i=1; authserv-id; …").
    static func instance(_ field: ArraySlice<UInt8>, aar: Bool) -> Int? {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let value = String(decoding: field[(colon + 1)...], as: UTF8.self)
        if aar {
            let first = value.split(separator: ";", maxSplits: 1).first.map { String($0) } ?? ""
            let parts = first.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespacesAndNewlines).lowercased() == "i" else { return nil }
            return Int(parts[1].trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return DKIMTags(value)?["i"].flatMap { Int($0) }
    }

    public func verify(with verifier: DKIMVerifier) async -> ARCOutcome {
        let all: [SetFields]
        switch sets {
        case .failure(let f): return ARCOutcome(result: .fail, reason: f.why)
        case .success(let s): all = s
        }
        guard !all.isEmpty else { return ARCOutcome(result: .none) }
        let n = all.count
        func fail(_ why: String) -> ARCOutcome { ARCOutcome(result: .fail, reason: why) }
        // Step 2 and 3.3: the cv= of every seal.
        var seals: [DKIMTags] = []
        for (index, s) in all.enumerated() {
            let field = s.seal!
            guard let colon = field.firstIndex(of: UInt8(ascii: ":")),
                  let tags = DKIMTags(String(decoding: field[(colon + 1)...], as: UTF8.self)) else {
                return fail("ARC-Seal \(index + 1) has a bad tag list")
            }
            let cv = tags["cv"]?.lowercased() ?? ""
            if cv == "fail" { return fail("ARC-Seal \(index + 1) says the chain had already failed (cv=fail)") }
            guard cv == (index == 0 ? "none" : "pass") else { return fail("ARC-Seal \(index + 1) has cv=\(cv)") }
            guard tags["h"] == nil else { return fail("ARC-Seal \(index + 1) has h=, which seals may not have") }
            seals.append(tags)
        }
        // Step 4: the newest message signature; step 5: how far back they hold.
        let newest = await verifyAMS(n, verifier)
        guard newest == nil else { return fail("ARC-Message-Signature \(n): \(newest!)") }
        var oldest = n
        while oldest > 1, await verifyAMS(oldest - 1, verifier) == nil { oldest -= 1 }
        // Step 6: every seal, newest first.
        for i in stride(from: n, through: 1, by: -1) {
            let tags = seals[i - 1]
            guard let a = tags["a"]?.lowercased(), let d = tags["d"]?.lowercased(), let s = tags["s"]?.lowercased(),
                  let b = tags.compact("b"), let sig = Data(base64Encoded: b) else {
                return fail("ARC-Seal \(i) lacks a required tag")
            }
            guard a == "rsa-sha256" || a == "ed25519-sha256" else { return fail("ARC-Seal \(i) uses \(a)") }
            let (r, why) = await verifier.checkSignature(algorithm: a, domain: d, selector: s,
                                                         data: sealedData(i, all), signature: Array(sig))
            guard r == .pass else { return fail("ARC-Seal \(i) by \(d): \(why ?? r.rawValue)") }
        }
        let hops = all.enumerated().reversed().map { index, set in
            let (results, from) = Self.results(set.aar!)
            return ARCHop(instance: index + 1, sealer: seals[index]["d"]?.lowercased() ?? "", results: results, headerFrom: from)
        }
        return ARCOutcome(result: .pass, oldestPass: oldest == 1 ? 0 : oldest, hops: hops)
    }

    /// Nil when the message signature of instance `i` validates, else why not.
    private func verifyAMS(_ i: Int, _ verifier: DKIMVerifier) async -> String? {
        guard let (sig, _) = amsHashers[i] else { return "not a valid signature field" }
        let o = await verifier.verify(.success(sig), fields: fields, bodyHash: amsHashes[i])
        return o.result == .pass ? nil : (o.reason ?? o.result.rawValue)
    }

    /// What ARC-Seal `i` signs (§5.1.1): the sets 1…i in order, each AAR,
    /// AMS and seal, relaxed; the last seal with b= emptied and no line end.
    func sealedData(_ i: Int, _ all: [SetFields]) -> [UInt8] {
        var out: [UInt8] = []
        for j in 0..<i {
            out += DKIMCanonical.relaxed.header(all[j].aar!)
            out += DKIMCanonical.relaxed.header(all[j].ams!)
            if j < i - 1 { out += DKIMCanonical.relaxed.header(all[j].seal!) }
        }
        var own = DKIMCanonical.relaxed.header(DKIMVerifier.emptyB(all[i - 1].seal!))
        while own.last == 10 || own.last == 13 { own.removeLast() }
        return out + own
    }

    /// The results of an ARC-Authentication-Results field: "method=result"
    /// of each resinfo (comments dropped), and header.from of dmarc=.
    public static func results(_ field: ArraySlice<UInt8>) -> ([String: String], String?) {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return ([:], nil) }
        var text = ""
        var depth = 0
        for c in String(decoding: field[(colon + 1)...], as: UTF8.self) {
            if c == "(" { depth += 1; continue }
            if c == ")" { depth = max(0, depth - 1); continue }
            if depth == 0 { text.append(c) }
        }
        var results: [String: String] = [:]
        var from: String?
        // i=N; authserv-id; resinfo; resinfo …
        for info in text.split(separator: ";").dropFirst(2) {
            let words = info.split(whereSeparator: \.isWhitespace)
            guard let first = words.first, let eq = first.firstIndex(of: "=") else { continue }
            let method = first[..<eq].lowercased(), result = first[first.index(after: eq)...].lowercased()
            if results[method] == nil { results[method] = result }
            if method == "dmarc" {
                for w in words.dropFirst() where w.lowercased().hasPrefix("header.from=") {
                    from = String(w.dropFirst("header.from=".count)).lowercased()
                }
            }
        }
        return (results, from)
    }
}
