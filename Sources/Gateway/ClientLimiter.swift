import DequeModule
import Foundation
import Synchronization

/// Per-client-IP counters for `limit connections-per-client` and
/// `limit messages-per-client` (per minute). In memory, per process: with
/// several gateways each enforces its own share, as Postfix's anvil does.
final class ClientLimiter: Sendable {
    private struct State {
        var connections: [String: Int] = [:]
        /// Start times of recent transactions per client, oldest first: at
        /// most `limit` of them, trimmed and appended in place (copying the
        /// list per message made a busy client cost in proportion to its rate).
        var messages: [String: Deque<Double>] = [:]
        var lastSweep: Double = 0
    }

    private let state = Mutex(State())
    /// Clients that waited for the greeting, and until when that holds (a day, like postscreen's cache).
    private let greeted = Mutex<[String: Double]>([:])

    func passedGreeting(_ ip: String) -> Bool {
        let now = Date().timeIntervalSince1970
        return greeted.withLock { ($0[ip] ?? 0) > now }
    }

    func greetingPassed(_ ip: String) {
        let now = Date().timeIntervalSince1970
        greeted.withLock { g in
            if g.count > 100_000 { g = g.filter { $0.value > now } }
            g[ip] = now + 86400
        }
    }
    private let window: Double = 60

    /// Counts a new connection; false (and not counted) when over `limit`.
    func connect(_ ip: String, limit: Int?) -> Bool {
        state.withLock { s in
            let n = s.connections[ip, default: 0]
            if let limit, n >= limit { return false }
            s.connections[ip] = n + 1
            return true
        }
    }

    func disconnect(_ ip: String) {
        state.withLock { s in
            let n = s.connections[ip, default: 1] - 1
            s.connections[ip] = n > 0 ? n : nil
        }
    }

    /// Counts a MAIL FROM; false when the client already started `limit` in the last minute.
    func message(_ ip: String, limit: Int?) -> Bool {
        guard let limit else { return true }
        let now = Date().timeIntervalSince1970
        return state.withLock { s in
            if now - s.lastSweep > window {
                s.messages = s.messages.filter { ($0.value.last ?? 0) > now - window }
                s.lastSweep = now
            }
            let cutoff = now - window
            func admit(_ times: inout Deque<Double>) -> Bool {
                while let first = times.first, first <= cutoff { times.removeFirst() }
                guard times.count < limit else { return false }
                times.append(now)
                return true
            }
            let admitted = admit(&s.messages[ip, default: []])
            if s.messages[ip]?.isEmpty == true { s.messages[ip] = nil }
            return admitted
        }
    }
}
