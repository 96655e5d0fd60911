import CHiredis
import Foundation
import NIOSSL

/// The shared backend: one Redis that every gateway of a domain's MX hosts
/// talks to, through hiredis (Debian's libhiredis), blocking calls with a
/// timeout on a small pool of connections. A server that is down or slow
/// fails each call at once for `retryInterval` after a failure, then the
/// next call tries again: the caller falls back to its own state without
/// waiting a timeout per message, and recovers without a restart.
public final class RedisStore: StateStore, @unchecked Sendable {
    /// Where the server is, from a `redis://[[user]:password@]host[:port][/db]`
    /// or `unix:/path/to/socket[?db=N]` address.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host = "127.0.0.1"
        public var port = 6379
        public var socket: String?
        public var db = 0
        public var user: String?
        public var password: String?
        /// `rediss://`: TLS (see `RedisTLS`).
        public var tls = false

        public init(_ url: String) throws {
            func bad(_ why: String) -> StateError { StateError(location: url, message: why) }
            if url.hasPrefix("unix:") {
                var rest = String(url.dropFirst(5))
                if rest.hasPrefix("//") { rest.removeFirst(2) }
                if let q = rest.firstIndex(of: "?") {
                    let query = rest[rest.index(after: q)...]
                    rest = String(rest[..<q])
                    for pair in query.split(separator: "&") {
                        let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                        guard kv.count == 2, kv[0] == "db", let n = Int(kv[1]), n >= 0 else { throw bad("expected unix:/path?db=N") }
                        db = n
                    }
                }
                guard rest.hasPrefix("/") else { throw bad("expected unix:/path/to/redis.sock") }
                socket = rest
                return
            }
            tls = url.hasPrefix("rediss://")
            guard url.hasPrefix("redis://") || tls else { throw bad("expected redis://host[:port][/db], rediss:// (TLS) or unix:/path/to/socket") }
            var rest = Substring(url.dropFirst(tls ? 9 : 8))
            if let at = rest.lastIndex(of: "@") {
                let cred = rest[..<at]
                rest = rest[rest.index(after: at)...]
                if let colon = cred.firstIndex(of: ":") {
                    let u = String(cred[..<colon])
                    user = u.isEmpty ? nil : (u.removingPercentEncoding ?? u)
                    let p = String(cred[cred.index(after: colon)...])
                    password = p.removingPercentEncoding ?? p
                } else {
                    password = String(cred).removingPercentEncoding ?? String(cred)
                }
            }
            if let slash = rest.firstIndex(of: "/") {
                let d = rest[rest.index(after: slash)...]
                if !d.isEmpty {
                    guard let n = Int(d), n >= 0 else { throw bad("the database after / must be a number") }
                    db = n
                }
                rest = rest[..<slash]
            }
            var hostPart = rest
            if hostPart.hasPrefix("["), let close = hostPart.firstIndex(of: "]") {
                host = String(hostPart[hostPart.index(after: hostPart.startIndex)..<close])
                hostPart = hostPart[hostPart.index(after: close)...]
                if hostPart.hasPrefix(":") {
                    guard let p = Int(hostPart.dropFirst()), (1...65535).contains(p) else { throw bad("bad port") }
                    port = p
                }
            } else if let colon = hostPart.lastIndex(of: ":") {
                guard let p = Int(hostPart[hostPart.index(after: colon)...]), (1...65535).contains(p) else { throw bad("bad port") }
                port = p
                host = String(hostPart[..<colon])
            } else if !hostPart.isEmpty {
                host = String(hostPart)
            }
            guard !host.isEmpty else { throw bad("no host") }
        }

        /// The address without the password, for logs and audit records.
        public var description: String {
            socket.map { "unix:\($0)?db=\(db)" } ?? "redis\(tls ? "s" : "")://\(host.contains(":") ? "[\(host)]" : host):\(port)/\(db)"
        }
    }

    /// One reply, as hiredis parsed it.
    public enum Reply: Equatable, Sendable {
        case string([UInt8])
        case status(String)
        case integer(Int)
        case array([Reply])
        case null

        public var text: String? {
            switch self {
            case .string(let b): return String(decoding: b, as: UTF8.self)
            case .status(let s): return s
            case .integer(let n): return String(n)
            default: return nil
            }
        }
    }

    public let endpoint: Endpoint
    public var location: String { endpoint.description }
    /// Every key this store writes starts with it, so one Redis can serve other tools too.
    public let prefix: String
    let timeout: Double
    let retryInterval: Double
    private let lock = NSLock()
    private var idle: [UnsafeMutablePointer<redisContext>] = []
    private var downUntil: Double = 0
    private var lastFailure: String?
    private let maxIdle = 8
    /// SHA-1s of the scripts loaded (SCRIPT LOAD), so each call sends the
    /// digest, not the script (EVALSHA): less to send and for Redis to hash.
    private var scripts: [String: String] = [:]

    let tls: RedisTLS
    /// Made once: loading the CA file per connection would cost a read and a parse each time.
    private var tlsContext: NIOSSLContext?

    public init(_ endpoint: Endpoint, timeout: Double = 0.25, retryInterval: Double = 1, prefix: String = "mxgate:",
                tls: RedisTLS = RedisTLS()) {
        self.endpoint = endpoint
        self.tls = tls
        self.timeout = timeout
        self.retryInterval = retryInterval
        self.prefix = prefix
    }

    deinit {
        for c in idle { redisFree(c) }
    }

    private func fail(_ message: String) -> StateError { StateError(location: location, message: message) }

    private static func tv(_ seconds: Double) -> timeval {
        timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
    }

    private func markDown(_ why: String) {
        lock.lock()
        downUntil = Date().timeIntervalSince1970 + retryInterval
        lastFailure = why
        for c in idle { redisFree(c) }
        idle.removeAll()
        lock.unlock()
    }

    private func checkout() throws -> UnsafeMutablePointer<redisContext> {
        lock.lock()
        if Date().timeIntervalSince1970 < downUntil {
            let why = lastFailure ?? "unavailable"
            lock.unlock()
            throw fail("\(why) (retrying within \(retryInterval.formatted())s)")
        }
        if let c = idle.popLast() {
            lock.unlock()
            return c
        }
        lock.unlock()
        let t = Self.tv(timeout)
        if endpoint.tls {
            do {
                lock.lock()
                let made = tlsContext
                lock.unlock()
                let context = try made ?? tls.context()
                lock.lock()
                tlsContext = context
                lock.unlock()
                let c = try tls.connect(host: endpoint.host, port: endpoint.port, timeout: timeout, context: context)
                return try prepare(c, t)
            } catch {
                markDown("\((error as? StateError)?.message ?? "\(error)")")
                throw error
            }
        }
        guard let c = endpoint.socket.map({ redisConnectUnixWithTimeout($0, t) }) ?? redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), t) else {
            markDown("cannot allocate a connection")
            throw fail("cannot allocate a connection")
        }
        if c.pointee.err != 0 {
            let why = Self.errorText(c)
            redisFree(c)
            markDown("cannot connect: \(why)")
            throw fail("cannot connect: \(why)")
        }
        return try prepare(c, t)
    }

    /// A new connection's timeout, AUTH and SELECT.
    private func prepare(_ c: UnsafeMutablePointer<redisContext>, _ t: timeval) throws -> UnsafeMutablePointer<redisContext> {
        redisSetTimeout(c, t)
        do {
            if let password = endpoint.password {
                _ = try run(c, endpoint.user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
            }
            if endpoint.db != 0 { _ = try run(c, ["SELECT", String(endpoint.db)]) }
        } catch {
            redisFree(c)
            markDown("\(error)")
            throw error
        }
        return c
    }

    private func checkin(_ c: UnsafeMutablePointer<redisContext>) {
        lock.lock()
        if idle.count < maxIdle && Date().timeIntervalSince1970 >= downUntil {
            idle.append(c)
            lock.unlock()
        } else {
            lock.unlock()
            redisFree(c)
        }
    }

    private static func errorText(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }.replacingOccurrences(of: "Resource temporarily unavailable", with: "timed out")
    }

    /// One command on one connection; a server error reply is thrown as a StateError.
    private func run(_ c: UnsafeMutablePointer<redisContext>, _ args: [String]) throws -> Reply {
        try run(c, args.map { Array($0.utf8) })
    }

    private struct Broken: Error { var why: String }

    private func run(_ c: UnsafeMutablePointer<redisContext>, _ args: [[UInt8]]) throws -> Reply {
        // hiredis copies the arguments into its buffer before returning, so
        // pointers into the arrays need only last for the call.
        let buffers = args.map { a -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(a.count, 1))
            a.withUnsafeBytes { src in if !src.isEmpty { UnsafeMutableRawPointer(p).copyMemory(from: src.baseAddress!, byteCount: src.count) } }
            return p
        }
        defer { buffers.forEach { $0.deallocate() } }
        var argv: [UnsafePointer<CChar>?] = buffers.map { UnsafePointer($0) }
        var lens: [Int] = args.map(\.count)
        let raw = redisCommandArgv(c, Int32(args.count), &argv, &lens)
        guard let raw else { throw Broken(why: Self.errorText(c)) }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        if reply.pointee.type == REDIS_REPLY_ERROR {
            throw fail(String(cString: reply.pointee.str))
        }
        return Self.convert(reply)
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> Reply {
        switch r.pointee.type {
        case REDIS_REPLY_STRING:
            let n = Int(r.pointee.len)
            return .string(n == 0 ? [] : Array(UnsafeRawBufferPointer(start: r.pointee.str, count: n)))
        case REDIS_REPLY_STATUS: return .status(String(cString: r.pointee.str))
        case REDIS_REPLY_INTEGER: return .integer(Int(r.pointee.integer))
        case REDIS_REPLY_ARRAY:
            return .array((0..<Int(r.pointee.elements)).map { convert(r.pointee.element[$0]!) })
        default: return .null
        }
    }

    /// Runs one command: a broken or timed-out connection marks the server
    /// down for `retryInterval` and throws.
    public func command(_ args: [[UInt8]]) throws -> Reply {
        let c = try checkout()
        do {
            let r = try run(c, args)
            checkin(c)
            return r
        } catch let b as Broken {
            redisFree(c)
            markDown(b.why.isEmpty ? "connection lost" : b.why)
            throw fail(b.why.isEmpty ? "connection lost" : b.why)
        } catch {
            checkin(c)  // the server answered (with an error): the connection is fine
            throw error
        }
    }

    public func command(_ args: [String]) throws -> Reply { try command(args.map { Array($0.utf8) }) }

    /// Runs a Lua script by its digest, loading it first (again after a
    /// Redis restart, which forgets loaded scripts: NOSCRIPT).
    public func eval(_ script: String, keys: [String], args: [String]) throws -> Reply {
        lock.lock()
        var sha = scripts[script]
        lock.unlock()
        for attempt in 0..<2 {
            if sha == nil {
                guard let loaded = try command(["SCRIPT", "LOAD", script]).text else { throw fail("SCRIPT LOAD gave no digest") }
                lock.lock()
                scripts[script] = loaded
                lock.unlock()
                sha = loaded
            }
            do {
                return try command(["EVALSHA", sha!, String(keys.count)] + keys + args)
            } catch let e as StateError where e.message.hasPrefix("NOSCRIPT") && attempt == 0 {
                sha = nil
            }
        }
        throw fail("the script could not be loaded")
    }

    /// Answers PING: for `mxgate check` and start-up.
    public func ping() throws {
        guard case .status("PONG") = try command(["PING"]) else { throw fail("unexpected answer to PING") }
    }

    // MARK: lists (requests from one node to another)

    /// Appends to a list that expires after `ttl` seconds unless added to again.
    public func push(_ list: String, _ value: String, ttl: Double) throws {
        _ = try command(["EVAL", "redis.call('RPUSH', KEYS[1], ARGV[1]) redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1",
                         "1", prefix + list, value, String(max(1, Int(ttl)))])
    }

    /// Takes every item of a list, oldest first, in one step (two nodes never take the same item).
    public func takeAll(_ list: String) throws -> [String] {
        let r = try command(["EVAL", "local v = redis.call('LRANGE', KEYS[1], 0, -1) redis.call('DEL', KEYS[1]) return v", "1", prefix + list])
        guard case .array(let items) = r else { return [] }
        return items.compactMap(\.text)
    }

    // MARK: StateStore

    public func get(_ keys: [String]) throws -> [String?] {
        guard !keys.isEmpty else { return [] }
        let r = try command(["MGET"] + keys.map { prefix + $0 })
        guard case .array(let items) = r, items.count == keys.count else { throw fail("unexpected answer to MGET") }
        return items.map(\.text)
    }

    @discardableResult
    public func set(_ key: String, _ value: String, ttl: Double, ifAbsent: Bool) throws -> Bool {
        var args = ["SET", prefix + key, value, "PX", String(max(1, Int(ttl * 1000)))]
        if ifAbsent { args.append("NX") }
        return try command(args) != .null
    }

    static let incrementScript = "local v = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1]) return v"
    public func increment(_ key: String, ttl: Double) throws -> Int {
        guard case .integer(let n) = try eval(Self.incrementScript, keys: [prefix + key], args: [String(max(1, Int(ttl * 1000)))]) else {
            throw fail("unexpected answer to INCR")
        }
        return n
    }

    public func delete(_ keys: [String]) throws {
        guard !keys.isEmpty else { return }
        _ = try command(["DEL"] + keys.map { prefix + $0 })
    }

    /// A sorted set of event times per key, trimmed to the window, in one
    /// script so two gateways cannot both take the last place.
    static let admitScript = """
        local k, now, w, lim = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        redis.call('ZREMRANGEBYSCORE', k, '-inf', now - w)
        if redis.call('ZCARD', k) >= lim then return 0 end
        redis.call('ZADD', k, now, ARGV[4])
        redis.call('PEXPIRE', k, math.ceil(w * 1000))
        return 1
        """
    public func admit(_ key: String, limit: Int, window: Double, now: Double) throws -> Bool {
        let member = "\(now)-\(UInt32.random(in: 0...UInt32.max))"
        let r = try eval(Self.admitScript, keys: [prefix + key], args: [String(now), String(window), String(limit), member])
        return r == .integer(1)
    }

    static let acquireScript = """
        local n = tonumber(redis.call('GET', KEYS[1]) or '0')
        if n >= tonumber(ARGV[1]) then return 0 end
        redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], ARGV[2])
        return 1
        """
    public func acquire(_ key: String, limit: Int, ttl: Double) throws -> Bool {
        try eval(Self.acquireScript, keys: [prefix + key], args: [String(limit), String(max(1, Int(ttl)))]) == .integer(1)
    }

    static let releaseScript = """
        local n = tonumber(redis.call('GET', KEYS[1]) or '0')
        if n <= 1 then redis.call('DEL', KEYS[1]) else redis.call('DECR', KEYS[1]) end
        return 1
        """
    public func release(_ key: String) throws {
        _ = try eval(Self.releaseScript, keys: [prefix + key], args: [])
    }
}
