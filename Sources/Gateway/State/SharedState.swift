import Foundation
import Logging
import NIOPosix
import Policy
import SMTPProtocol
import State

/// The gateway's view of `[state]`: greylisting, per-client limits and the
/// greet-wait memory over the configured store, with the admin's fallback
/// when the store is Redis and it fails: the node's own state (`local`) or
/// no check (`accept`), never a tempfail and never an open gate by
/// surprise. Each failure is a warning for the audit record, a metric and
/// a log line; the store retries on its own, so recovery needs no restart.
final class SharedState: Sendable {
    enum Use: String, CaseIterable, Sendable { case greylist, limits, greeting }

    /// Redis, or the embedded store itself.
    let primary: any StateStore
    /// The node's own store: the embedded backend, and Redis's fallback.
    let local: MemoryStore
    let settings: StateSettings
    let greylist: Greylist
    /// The node's own limits (the embedded backend's, and the fallback's).
    let limiter = ClientLimiter()
    let metrics: GatewayMetrics?
    let logger: Logger

    var shared: Bool { primary !== local }

    init(settings: StateSettings, greylist: GreylistSettings, file: String?, metrics: GatewayMetrics?, logger: Logger) throws {
        self.settings = settings
        self.greylist = Greylist(settings: greylist)
        self.metrics = metrics
        self.logger = logger
        local = try MemoryStore(path: file)
        primary = settings.redisStore() ?? local
    }

    /// A blocking store call, off the event loops and the cooperative pool
    /// when it is a network call (the node's own store answers from memory, here).
    private func call<T: Sendable>(_ store: any StateStore, _ body: @escaping @Sendable (any StateStore) throws -> T) async throws -> T {
        guard store !== local else { return try body(store) }
        return try await NIOThreadPool.singleton.runIfActive { try body(store) }
    }

    private func failed(_ use: Use, _ error: Error, fallback: StateSettings.Fallback) -> String {
        metrics?.stateFailure(use)
        let what = fallback == .local ? "used this node's own state" : "skipped"
        let warning = "state: \(primary.location) failed (\((error as? StateError)?.message ?? "\(error)")); \(use.rawValue) \(what)"
        logger.warning("\(warning)")
        return warning
    }

    // MARK: greylisting

    /// What the greylist knows of this attempt, and a warning when the shared store failed.
    func greylistCheck(_ facts: SessionFacts, recipients: [Mailbox], bodyHash: String?) async -> (GreylistCheck, String?) {
        let now = Date().timeIntervalSince1970
        let g = greylist
        do {
            return (try await call(primary) { try g.check(facts, recipients: recipients, bodyHash: bodyHash, store: $0, now: now) }, nil)
        } catch {
            let warning = failed(.greylist, error, fallback: settings.greylistFallback)
            if settings.greylistFallback == .local, let c = try? g.check(facts, recipients: recipients, bodyHash: bodyHash, store: local, now: now) {
                var check = c
                check.detail += " (this node's own greylist: \(primary.location) is unavailable)"
                check.fromLocalState = true
                return (check, warning)
            }
            return (GreylistCheck(outcome: .unavailable, triplet: recipients.first.map { g.triplet(facts, $0) } ?? "",
                                  detail: "the greylist is unavailable: let through as [state] greylist_fallback says"), warning)
        }
    }

    /// Remembers what a fired `greylist` rule decided (where the check was made).
    func greylistRecord(_ check: GreylistCheck, _ facts: SessionFacts, recipients: [Mailbox], bodyHash: String?) async -> String? {
        let now = Date().timeIntervalSince1970
        let g = greylist
        do {
            try await call(check.fromLocalState ? local : primary) {
                try g.record(check, facts, recipients: recipients, bodyHash: bodyHash, store: $0, now: now)
            }
            return nil
        } catch {
            return failed(.greylist, error, fallback: settings.greylistFallback)
        }
    }

    // MARK: limits

    /// Where a connection's slot was taken, so it is given back there.
    enum Slot: Sendable { case none, local, shared }

    func connect(_ ip: String, limit: Int?) async -> (admitted: Bool, slot: Slot, warning: String?) {
        guard let limit else { return (true, .none, nil) }
        guard shared else { return (limiter.connect(ip, limit: limit), .local, nil) }
        do {
            let ok = try await call(primary) { try $0.acquire("conn:" + ip, limit: limit, ttl: 3600) }
            return (ok, ok ? .shared : .none, nil)
        } catch {
            let w = failed(.limits, error, fallback: settings.limitsFallback)
            if settings.limitsFallback == .accept { return (true, .none, w) }
            let ok = limiter.connect(ip, limit: limit)
            return (ok, ok ? .local : .none, w)
        }
    }

    func disconnect(_ ip: String, slot: Slot) async {
        switch slot {
        case .none: return
        case .local: limiter.disconnect(ip)
        case .shared:
            // A release that fails leaves the slot to expire (an hour): counted high, never low.
            do { try await call(primary) { try $0.release("conn:" + ip) } } catch { _ = failed(.limits, error, fallback: settings.limitsFallback) }
        }
    }

    func message(_ ip: String, limit: Int?) async -> (admitted: Bool, warning: String?) {
        guard let limit else { return (true, nil) }
        guard shared else { return (limiter.message(ip, limit: limit), nil) }
        let now = Date().timeIntervalSince1970
        do {
            return (try await call(primary) { try $0.admit("rate:" + ip, limit: limit, window: 60, now: now) }, nil)
        } catch {
            let w = failed(.limits, error, fallback: settings.limitsFallback)
            return (settings.limitsFallback == .accept || limiter.message(ip, limit: limit), w)
        }
    }

    // MARK: greet wait

    func passedGreeting(_ ip: String) async -> Bool {
        guard shared else { return limiter.passedGreeting(ip) }
        do { return try await call(primary) { try $0.get(["greet:" + ip]) }.first! != nil } catch {
            _ = failed(.greeting, error, fallback: .local)
            return limiter.passedGreeting(ip)
        }
    }

    func greetingPassed(_ ip: String) async {
        limiter.greetingPassed(ip)
        guard shared else { return }
        do { _ = try await call(primary) { try $0.set("greet:" + ip, "1", ttl: 86400, ifAbsent: false) } } catch {
            _ = failed(.greeting, error, fallback: .local)
        }
    }

    /// Release requests other nodes addressed to this one ("ID\tby"), taken from Redis.
    func releaseRequests(node: String) async -> [(id: String, by: String)] {
        guard let redis = primary as? RedisStore else { return [] }
        let items = (try? await call(redis) { _ in try redis.takeAll("release:" + node) }) ?? []
        return items.map { item in
            let parts = item.split(separator: "\t", maxSplits: 1).map(String.init)
            return (parts[0], parts.count > 1 ? parts[1] : "another node")
        }
    }

    /// Writes the node's own greylist to its file (periodically, and at shutdown).
    func persist() {
        do { try local.persist() } catch { logger.error("state: \(error)") }
    }
}
