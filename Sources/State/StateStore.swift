import Foundation

/// Where the state that several gateways must agree on lives: greylist
/// triplets, per-client counters, the greet-wait memory. Two backends: the
/// node's own memory (persisted to a file) and Redis. Calls block (a
/// network round trip for Redis), so callers run them off the event loops
/// (`SharedState` does).
public protocol StateStore: AnyObject, Sendable {
    /// For messages and the audit record: the file or the server.
    var location: String { get }
    /// Each key's value, nil where there is none (or it expired).
    func get(_ keys: [String]) throws -> [String?]
    /// Sets a key that expires after `ttl` seconds; with `ifAbsent` only when
    /// it is not there already (SET NX): true when it was set.
    @discardableResult
    func set(_ key: String, _ value: String, ttl: Double, ifAbsent: Bool) throws -> Bool
    /// Adds one (atomically) and renews the expiry; the new value.
    func increment(_ key: String, ttl: Double) throws -> Int
    func delete(_ keys: [String]) throws
    /// Sliding-window rate: counts one event for `key` now and answers true
    /// unless `limit` events already happened in the last `window` seconds
    /// (a refused event is not counted). Atomic across every gateway sharing the store.
    func admit(_ key: String, limit: Int, window: Double, now: Double) throws -> Bool
    /// Takes one of `limit` slots (a connection), false when all are taken;
    /// slots expire after `ttl` seconds so a node that dies frees its own.
    func acquire(_ key: String, limit: Int, ttl: Double) throws -> Bool
    func release(_ key: String) throws
}

/// A store that did not answer: down, slow, or refused the command.
public struct StateError: Error, CustomStringConvertible, Sendable {
    public var location: String
    public var message: String
    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }
    public var description: String { "\(location): \(message)" }
}
