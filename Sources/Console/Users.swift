import Crypto
import Foundation
import SMTPProtocol
import HummingbirdBcrypt

/// Who may use the console: viewers search and read; admins also release,
/// delete, allow-list and manage the queue.
public enum Role: String, Sendable, CaseIterable {
    case admin, viewer
}

/// One console user: a bcrypt hash of the password, and the SHA-256 of the
/// API token when one was issued (the token itself is shown once).
public struct ConsoleUser: Sendable, Equatable {
    public var name: String
    public var role: Role
    public var passwordHash: String
    public var tokenHash: String?
}

/// The users file (`[web] users`), one user a line:
///
///     name:role:bcrypt-hash:token-sha256-or-dash
///
/// Written whole to a temporary file and renamed, mode 0600, so a crash
/// mid-write leaves the old file and no one else can read the hashes.
public struct UsersFile: Sendable {
    public let path: String
    public init(path: String) { self.path = path }

    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Names are what the audit record shows: letters, digits and . _ @ -.
    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._@-".contains($0)) }
    }

    public func load() throws(Failure) -> [ConsoleUser] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Failure(message: "\(path): cannot read the users file") }
        var out: [ConsoleUser] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            let f = t.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 4, Self.validName(f[0]), let role = Role(rawValue: f[1]), f[2].hasPrefix("$2") else {
                throw Failure(message: "\(path):\(n + 1): expected name:admin|viewer:bcrypt-hash:token-hash")
            }
            out.append(ConsoleUser(name: f[0], role: role, passwordHash: f[2], tokenHash: f[3] == "-" ? nil : f[3]))
        }
        return out
    }

    public func save(_ users: [ConsoleUser]) throws(Failure) {
        var text = "# mxgate review console users: name:role:bcrypt:token-sha256 (mxgate web user add/delete/token)\n"
        for u in users { text += "\(u.name):\(u.role.rawValue):\(u.passwordHash):\(u.tokenHash ?? "-")\n" }
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir.isEmpty ? "." : dir, withIntermediateDirectories: true)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw Failure(message: "\(tmp): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw Failure(message: "\(path): cannot write the users file")
        }
    }

    /// Adds a user or replaces its role and password.
    public func add(name: String, role: Role, password: String) throws(Failure) {
        guard Self.validName(name) else { throw Failure(message: "'\(name)' is not a user name (letters, digits, . _ @ -)") }
        guard password.count >= 8 else { throw Failure(message: "the password needs at least 8 characters") }
        var users = try load()
        let hash = Bcrypt.hash(password, cost: 12)
        if let i = users.firstIndex(where: { $0.name == name }) {
            users[i].role = role
            users[i].passwordHash = hash
        } else {
            users.append(ConsoleUser(name: name, role: role, passwordHash: hash, tokenHash: nil))
        }
        try save(users)
    }

    public func delete(name: String) throws(Failure) {
        var users = try load()
        guard users.contains(where: { $0.name == name }) else { throw Failure(message: "no user \(name)") }
        users.removeAll { $0.name == name }
        try save(users)
    }

    /// Issues a new API token for the user (replacing any earlier one) and returns it.
    public func issueToken(name: String) throws(Failure) -> String {
        var users = try load()
        guard let i = users.firstIndex(where: { $0.name == name }) else { throw Failure(message: "no user \(name)") }
        let token = "mxg_" + Self.randomHex(24)
        users[i].tokenHash = Self.sha256(token)
        try save(users)
        return token
    }

    static func sha256(_ s: String) -> String {
        hex(SHA256.hash(data: Array(s.utf8)))
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String { lowerHex(bytes) }

    static func randomHex(_ bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return hex((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}
