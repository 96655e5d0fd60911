import Classifier
import Foundation
import State

/// `[state]`: the state several gateways share. Embedded (the node's own
/// memory, persisted to `file`) unless `redis` names a server.
public struct StateSettings: Sendable, Equatable {
    public enum Fallback: String, Sendable { case local, accept }
    /// The embedded backend's file (also the fallback's, when Redis is down).
    public var file = "var/state"
    public var redis: RedisStore.Endpoint?
    public var timeout: Double = 0.25
    /// After a failure, calls fail at once for this long, then try again.
    public var retryInterval: Double = 1
    public var prefix = "mxgate:"
    /// Redis down or slow: greylisting and limits use the node's own state (`local`) or are skipped (`accept`).
    public var greylistFallback: Fallback = .local
    public var limitsFallback: Fallback = .local
    /// Keep the classifier's model in Redis, so every gateway classifies with what any of them learnt.
    public var shareClassifier = false
    /// `rediss://`: the CA file that signs the server's certificate, and a client certificate and key if it asks for one.
    public var tlsCA: String?
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// This gateway's name among those sharing the Redis (quarantine release requests are addressed by it); default `[server] hostname`.
    public var node: String?
    public init() {}
}

/// `[greylist]`: postgrey's defaults.
public struct GreylistSettings: Sendable, Equatable {
    public var delay: Double = 300
    /// A first retry later than this counts as a new attempt.
    public var retryWindow: Double = 2 * 86400
    /// Passed triplets (and client counts) are forgotten after this long unused.
    public var maxAge: Double = 35 * 86400
    /// A client network that passed this many times is let through (0: never).
    public var autoAllowClients = 5
    public var ipv4Prefix = 24
    public var ipv6Prefix = 64
    public init() {}
}

extension ConfigReader {
    static let stateKeys: Set<String> = [
        "file", "redis", "password", "timeout", "retry_interval", "prefix",
        "greylist_fallback", "limits_fallback", "share_classifier", "node", "tls_ca", "tls_certificate", "tls_key",
    ]
    static let greylistKeys: Set<String> = ["delay", "retry_window", "max_age", "auto_allow_clients", "ipv4_prefix", "ipv6_prefix"]

    mutating func readState(_ s: inout Section, _ c: inout GatewayConfig) {
        var st = StateSettings()
        if let f = string(&s, "file") { st.file = f }
        func endpoint(_ key: String) -> RedisStore.Endpoint? {
            guard let url = string(&s, key) else { return nil }
            do { return try RedisStore.Endpoint(url) } catch {
                self.error(s.table[key]!.position, "[state] \(key): \((error as? StateError)?.message ?? "\(error)")")
                return nil
            }
        }
        st.redis = endpoint("redis")
        if let p = string(&s, "password") {
            st.redis?.password = p
        }
        if let d = duration(&s, "timeout") { st.timeout = d }
        if let d = duration(&s, "retry_interval") { st.retryInterval = d }
        if let p = string(&s, "prefix") { st.prefix = p }
        if let v = choice(&s, "greylist_fallback", ["local", "accept"]) { st.greylistFallback = StateSettings.Fallback(rawValue: v)! }
        if let v = choice(&s, "limits_fallback", ["local", "accept"]) { st.limitsFallback = StateSettings.Fallback(rawValue: v)! }
        if let b = bool(&s, "share_classifier") { st.shareClassifier = b }
        st.tlsCA = string(&s, "tls_ca").map(c.resolve)
        st.tlsCertificate = string(&s, "tls_certificate").map(c.resolve)
        st.tlsKey = string(&s, "tls_key").map(c.resolve)
        if (st.tlsCertificate == nil) != (st.tlsKey == nil), let p = s.table["tls_certificate"]?.position ?? s.table["tls_key"]?.position {
            error(p, "[state] tls_certificate and tls_key go together")
        }
        if let n = string(&s, "node") {
            if n.isEmpty || n.contains(where: { $0.isWhitespace || $0 == ":" }), let p = s.table["node"]?.position {
                error(p, "[state] node must be a name without spaces or colons")
            } else {
                st.node = n
            }
        }
        if st.shareClassifier && st.redis == nil, let p = s.table["share_classifier"]?.position { error(p, "[state] share_classifier needs redis") }
        c.state = st
    }

    mutating func readGreylist(_ s: inout Section, _ c: inout GatewayConfig) {
        var g = GreylistSettings()
        if let d = duration(&s, "delay", zero: true) { g.delay = d }
        if let d = duration(&s, "retry_window") { g.retryWindow = d }
        if let d = duration(&s, "max_age") { g.maxAge = d }
        if let n = integer(&s, "auto_allow_clients", min: 0) { g.autoAllowClients = n }
        if let n = integer(&s, "ipv4_prefix", min: 8) { g.ipv4Prefix = min(n, 32) }
        if let n = integer(&s, "ipv6_prefix", min: 16) { g.ipv6Prefix = min(n, 128) }
        if g.retryWindow <= g.delay, let p = s.table["retry_window"]?.position ?? s.table["delay"]?.position {
            error(p, "[greylist] retry_window must be longer than delay")
        }
        c.greylist = g
    }
}

extension StateSettings {
    /// A client for `redis` with these settings (nil: embedded); `timeout` at least `minTimeout`.
    public func redisStore(minTimeout: Double = 0) -> RedisStore? {
        redis.map {
            RedisStore($0, timeout: max(timeout, minTimeout), retryInterval: retryInterval, prefix: prefix,
                       tls: RedisTLS(caFile: tlsCA, certificate: tlsCertificate, key: tlsKey))
        }
    }
}

extension GatewayConfig {
    /// This gateway's name among those sharing `[state] redis`.
    public var stateNode: String { state.node ?? hostname }

    /// Asks the gateway named `node` (sharing this configuration's Redis) to
    /// release a message it holds; it does within seconds and audits it.
    public func requestRelease(_ id: String, node: String, by who: String) throws {
        guard let r = state.redisStore(minTimeout: 2) else { throw StateError(location: file, message: "[state] redis is not set: release on the node itself") }
        guard QuarantineAdmin.validID(id) else { throw StateError(location: file, message: "\(id) is not a quarantine ID") }
        try r.push("release:" + node, "\(id)\t\(who)", ttl: 7 * 86400)
    }

    /// Where the classifier's model is: Redis with `[state] share_classifier`, else `[classifier] model`.
    public func classifierStore() -> any ModelStore {
        // Loading or writing a model of several megabytes takes longer than a greylist lookup.
        if state.shareClassifier, let r = state.redisStore(minTimeout: 5) { return RedisModelStore(redis: r) }
        return ModelFile(path: classifier?.model ?? "")
    }
}
