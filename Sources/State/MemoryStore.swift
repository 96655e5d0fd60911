import DequeModule
import Foundation
import Synchronization

/// The embedded backend: the node's own memory, written to a file so a
/// restart keeps the greylist (counters and connection slots are not
/// written: they describe the moment, not the history). The file is
/// replaced whole (a temporary file, fsync, rename), so a crash leaves the
/// previous snapshot, never half of one; what changed since the last
/// snapshot (at most `SharedState`'s interval) is what a crash can lose.
public final class MemoryStore: StateStore {
    private struct Entry {
        var value: String
        var expires: Double
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var windows: [String: Deque<Double>] = [:]
        var slots: [String: Int] = [:]
        var dirty = false
        var lastSweep: Double = 0
    }

    public let path: String?
    public var location: String { path ?? "memory" }
    private let state = Mutex(State())
    static let magic = "# mxgate state 1: key TAB value TAB expiry (unix seconds), escaped"

    /// `path` nil: memory only (tests, `mxgate test`).
    public init(path: String?) throws {
        self.path = path
        guard let path, FileManager.default.fileExists(atPath: path) else { return }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw StateError(location: path, message: "cannot read the state file")
        }
        let now = Date().timeIntervalSince1970
        var entries: [String: Entry] = [:]
        for (n, line) in text.split(separator: "\n").enumerated() where !line.hasPrefix("#") {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 3, let exp = Double(f[2]) else {
                throw StateError(location: path, message: "line \(n + 1) is damaged (move the file away to start afresh)")
            }
            if exp > now { entries[Self.unescape(f[0])] = Entry(value: Self.unescape(f[1]), expires: exp) }
        }
        state.withLock { $0.entries = entries }
    }

    public func get(_ keys: [String]) throws -> [String?] {
        let now = Date().timeIntervalSince1970
        return state.withLock { s in keys.map { k in s.entries[k].flatMap { $0.expires > now ? $0.value : nil } } }
    }

    @discardableResult
    public func set(_ key: String, _ value: String, ttl: Double, ifAbsent: Bool) throws -> Bool {
        let now = Date().timeIntervalSince1970
        return state.withLock { s in
            sweep(&s, now)
            if ifAbsent, let e = s.entries[key], e.expires > now { return false }
            s.entries[key] = Entry(value: value, expires: now + ttl)
            s.dirty = true
            return true
        }
    }

    public func increment(_ key: String, ttl: Double) throws -> Int {
        let now = Date().timeIntervalSince1970
        return state.withLock { s in
            sweep(&s, now)
            let old = s.entries[key].flatMap { $0.expires > now ? Int($0.value) : nil } ?? 0
            s.entries[key] = Entry(value: String(old + 1), expires: now + ttl)
            s.dirty = true
            return old + 1
        }
    }

    public func delete(_ keys: [String]) throws {
        state.withLock { s in
            for k in keys { s.entries[k] = nil }
            s.dirty = true
        }
    }

    public func admit(_ key: String, limit: Int, window: Double, now: Double) throws -> Bool {
        state.withLock { s in
            if now - s.lastSweep > window { sweep(&s, now, window: window) }
            var times = s.windows[key] ?? []
            while let first = times.first, first <= now - window { times.removeFirst() }
            guard times.count < limit else {
                s.windows[key] = times
                return false
            }
            times.append(now)
            s.windows[key] = times
            return true
        }
    }

    public func acquire(_ key: String, limit: Int, ttl: Double) throws -> Bool {
        state.withLock { s in
            let n = s.slots[key, default: 0]
            guard n < limit else { return false }
            s.slots[key] = n + 1
            return true
        }
    }

    public func release(_ key: String) throws {
        state.withLock { s in
            let n = s.slots[key, default: 1] - 1
            s.slots[key] = n > 0 ? n : nil
        }
    }

    /// Drops what expired, at most once a minute (a busy MX sees many one-off keys).
    private func sweep(_ s: inout State, _ now: Double, window: Double = 60) {
        guard now - s.lastSweep > 60 else { return }
        s.lastSweep = now
        s.entries = s.entries.filter { $0.value.expires > now }
        s.windows = s.windows.filter { ($0.value.last ?? 0) > now - window }
    }

    /// Writes the snapshot if anything changed since the last one.
    public func persist() throws {
        guard let path else { return }
        let now = Date().timeIntervalSince1970
        let snapshot: [String: Entry]? = state.withLock { s in
            guard s.dirty else { return nil }
            s.dirty = false
            return s.entries
        }
        guard let snapshot else { return }
        var text = Self.magic + "\n"
        for (k, e) in snapshot where e.expires > now {
            text += "\(Self.escape(k))\t\(Self.escape(e.value))\t\(Int(e.expires.rounded(.up)))\n"
        }
        do {
            try Self.replace(path, with: Array(text.utf8))
        } catch {
            state.withLock { $0.dirty = true }
            throw error
        }
    }

    static func replace(_ path: String, with bytes: [UInt8]) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateError(location: tmp, message: String(cString: strerror(errno))) }
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw StateError(location: path, message: "cannot write the state file: \(String(cString: strerror(errno)))")
        }
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    static func escape(_ s: String) -> String {
        guard s.contains(where: { $0 == "\t" || $0 == "\n" || $0 == "\\" || $0 == "\r" }) else { return s }
        return s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
            .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
    }

    static func unescape<S: StringProtocol>(_ s: S) -> String {
        guard s.contains("\\") else { return String(s) }
        var out = ""
        var esc = false
        for c in s {
            if esc {
                out.append(c == "t" ? "\t" : c == "n" ? "\n" : c == "r" ? "\r" : c)
                esc = false
            } else if c == "\\" {
                esc = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}
