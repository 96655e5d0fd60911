import Foundation
import Policy
import SMTPProtocol
import State

/// Greylisting as postgrey does it, over any `StateStore`: the triplet is
/// the client's network, the sender normalised and the recipient; a first
/// attempt is refused and remembered, a retry after `delay` (and within
/// `retryWindow`) passes and is remembered as passed for `maxAge`. Two
/// ways past for large senders' pools, whose retries come from other
/// addresses: a sender whose SPF passes is keyed by its SPF domain instead
/// of the network, and at data the same message (its body's hash) retried
/// from anywhere passes, as rspamd's greylist does.
struct Greylist: Sendable {
    let settings: GreylistSettings

    /// "F<first seen>" pending, "P<first seen>:<last renewed>" passed (unix seconds).
    static func decode(_ v: String?) -> (passed: Bool, first: Double, renewed: Double)? {
        guard let v, let kind = v.first else { return nil }
        let parts = v.dropFirst().split(separator: ":")
        guard let first = parts.first.flatMap({ Double($0) }) else { return nil }
        return (kind == "P", first, parts.count > 1 ? Double(parts[1]) ?? first : first)
    }

    /// A passed triplet's expiry is renewed at most once a day: a known
    /// sender costs one read per message, not a read and a write.
    static let renewEvery: Double = 86400

    /// The client part of the triplet: the SPF-authenticated sender domain, else the network.
    func client(_ facts: SessionFacts) -> String {
        if let spf = facts.spf, spf.result == "pass", !spf.domain.isEmpty { return "spf:" + spf.domain.lowercased() }
        return network(facts.clientIP)
    }

    func network(_ ip: String) -> String {
        guard let a = IPAddress(ip) else { return ip }
        return CIDR("\(a)/\(a.isV4 ? settings.ipv4Prefix : settings.ipv6Prefix)")?.description ?? ip
    }

    /// The sender as postgrey normalises it: lower case, BATV (`prvs=TAG=user`,
    /// `btv1==TAG==user`) removed, `+extension` removed, digit runs (VERP
    /// bounce ids, per-message tags) as one `#`.
    static func normalise(_ path: ReversePath?) -> String {
        guard case .mailbox(let m)? = path else { return "<>" }
        var local = m.localPart.lowercased()
        for batv in ["prvs=", "msprvs1=", "btv1=="] where local.hasPrefix(batv) {
            let rest = local.dropFirst(batv.count)
            if let i = rest.lastIndex(of: "=") { local = String(rest[rest.index(after: i)...]) }
        }
        if let plus = local.firstIndex(of: "+"), plus != local.startIndex { local = String(local[..<plus]) }
        var out = ""
        var inDigits = false
        for c in local {
            if c.isASCII && c.isNumber {
                if !inDigits { out.append("#") }
                inDigits = true
            } else {
                out.append(c)
                inDigits = false
            }
        }
        return out + "@" + m.domain.lowercased()
    }

    static func recipient(_ box: Mailbox) -> String { box.description.lowercased() }

    func triplet(_ facts: SessionFacts, _ rcpt: Mailbox) -> String {
        "\(client(facts)) / \(Self.normalise(facts.mailFrom)) / \(Self.recipient(rcpt))"
    }

    static func tripletKey(_ t: String) -> String { "gl:t:" + t }
    static func clientKey(_ net: String) -> String { "gl:c:" + net }
    static func messageKey(_ hash: String) -> String { "gl:m:" + hash }

    /// What the store knows of this attempt: at rcpt `recipients` is the one
    /// asked about, at data every accepted one, with the body's hash.
    func check(_ facts: SessionFacts, recipients: [Mailbox], bodyHash: String?, store: any StateStore, now: Double) throws -> GreylistCheck {
        let triplets = recipients.map { triplet(facts, $0) }
        let net = network(facts.clientIP)
        var keys = triplets.map(Self.tripletKey)
        keys.append(Self.clientKey(net))
        if let bodyHash { keys.append(Self.messageKey(bodyHash)) }
        let values = try store.get(keys)
        let shown = triplets.first ?? ""
        if settings.autoAllowClients > 0, let n = values[triplets.count].flatMap({ Int($0) }), n >= settings.autoAllowClients {
            return GreylistCheck(outcome: .client, triplet: shown, detail: "the client network \(net) passed \(n) times")
        }
        if bodyHash != nil, let seen = Self.decode(values[triplets.count + 1]) {
            let age = now - seen.first
            if age >= settings.delay && age <= settings.retryWindow {
                return GreylistCheck(outcome: .sameMessage, triplet: shown, waited: age,
                                     detail: "the same message was refused \(Int(age))s ago")
            }
        }
        var worst: GreylistCheck?
        var retried: GreylistCheck?
        var renewal: Double?
        for (i, t) in triplets.enumerated() {
            guard let seen = Self.decode(values[i]) else {
                worst = GreylistCheck(outcome: .new, triplet: t, retryIn: settings.delay, detail: "\(t): a first attempt")
                continue
            }
            let age = now - seen.first
            if seen.passed {
                if now - seen.renewed > Self.renewEvery { renewal = min(renewal ?? seen.first, seen.first) }
                continue
            }
            if age < settings.delay {
                if worst?.outcome != .new {
                    worst = GreylistCheck(outcome: .early, triplet: t, waited: age, retryIn: settings.delay - age,
                                          detail: "\(t): retried after \(Int(age))s, before the \(Int(settings.delay))s delay")
                }
            } else if age > settings.retryWindow {
                worst = GreylistCheck(outcome: .new, triplet: t, retryIn: settings.delay, detail: "\(t): the last attempt was \(Int(age))s ago, past the retry window")
            } else if retried == nil {
                retried = GreylistCheck(outcome: .retried, triplet: t, waited: age, detail: "\(t): retried after \(Int(age))s")
            }
        }
        if let worst { return worst }
        if let retried { return retried }
        var known = GreylistCheck(outcome: .known, triplet: shown, detail: "\(shown): passed before")
        known.renewal = renewal
        return known
    }

    /// After a `greylist` rule fired: remembers a first attempt, or a pass.
    func record(_ check: GreylistCheck, _ facts: SessionFacts, recipients: [Mailbox], bodyHash: String?,
                store: any StateStore, now: Double) throws {
        let triplets = recipients.map { triplet(facts, $0) }
        switch check.outcome {
        case .new:
            for t in triplets { try store.set(Self.tripletKey(t), "F\(Int(now))", ttl: settings.retryWindow, ifAbsent: true) }
            if let bodyHash { try store.set(Self.messageKey(bodyHash), "F\(Int(now))", ttl: settings.retryWindow, ifAbsent: true) }
        case .early, .unavailable:
            break
        case .known:
            guard let first = check.renewal else { break }
            for t in triplets { try store.set(Self.tripletKey(t), "P\(Int(first)):\(Int(now))", ttl: settings.maxAge, ifAbsent: false) }
        case .retried, .sameMessage:
            let first = Int(now - check.waited)
            for t in triplets { try store.set(Self.tripletKey(t), "P\(first):\(Int(now))", ttl: settings.maxAge, ifAbsent: false) }
            if settings.autoAllowClients > 0 {
                _ = try store.increment(Self.clientKey(network(facts.clientIP)), ttl: settings.maxAge)
            }
        case .client:
            break
        }
    }
}
