import Foundation
import Synchronization

/// Logged-in browsers, by the random id in their cookie. In memory: a
/// restart logs everyone out, which is the safe direction. Each login has
/// its own CSRF token, which every form that changes something carries.
final class SessionStore: Sendable {
    struct Login: Sendable {
        var user: String
        var role: Role
        var csrf: String
        var expires: Date
    }

    private let logins = Mutex<[String: Login]>([:])
    let lifetime: TimeInterval

    init(lifetime: TimeInterval) { self.lifetime = lifetime }

    func create(user: String, role: Role) -> (id: String, login: Login) {
        let id = UsersFile.randomHex(32)
        let login = Login(user: user, role: role, csrf: UsersFile.randomHex(24), expires: Date().addingTimeInterval(lifetime))
        logins.withLock { all in
            let now = Date()
            if all.count > 10_000 { all = all.filter { $0.value.expires > now } }
            all[id] = login
        }
        return (id, login)
    }

    /// The login behind a cookie, its lifetime renewed by the use; nil when unknown or expired.
    func find(_ id: String) -> Login? {
        logins.withLock { all in
            guard var l = all[id] else { return nil }
            guard l.expires > Date() else {
                all[id] = nil
                return nil
            }
            l.expires = Date().addingTimeInterval(lifetime)
            all[id] = l
            return l
        }
    }

    func end(_ id: String) { _ = logins.withLock { $0.removeValue(forKey: id) } }

    /// Ends every login of a user (deleted, or its password changed).
    func endAll(user: String) { logins.withLock { all in all = all.filter { $0.value.user != user } } }
}

/// Failed logins per client address: past `attempts` in `window` seconds
/// the client waits, whatever name it tries, so passwords cannot be guessed
/// quickly from one place.
final class LoginLimiter: Sendable {
    private let failures = Mutex<[String: [Date]]>([:])
    let attempts: Int
    let window: TimeInterval

    init(attempts: Int, window: TimeInterval) {
        self.attempts = attempts
        self.window = window
    }

    /// Seconds the client must still wait, or nil when it may try.
    func wait(_ client: String) -> Int? {
        failures.withLock { all in
            let cutoff = Date().addingTimeInterval(-window)
            let recent = (all[client] ?? []).filter { $0 > cutoff }
            all[client] = recent.isEmpty ? nil : recent
            guard recent.count >= attempts, let oldest = recent.first else { return nil }
            return max(1, Int(oldest.timeIntervalSince(cutoff).rounded(.up)))
        }
    }

    func failed(_ client: String) {
        failures.withLock { all in
            if all.count > 100_000 { all = [:] }
            all[client, default: []].append(Date())
        }
    }

    func succeeded(_ client: String) { _ = failures.withLock { $0.removeValue(forKey: client) } }
}

/// Compares secrets in time independent of where they differ.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var diff: UInt8 = 0
    for i in x.indices { diff |= x[i] ^ y[i] }
    return diff == 0
}
