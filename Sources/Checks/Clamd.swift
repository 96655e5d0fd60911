import Foundation
import NIOPosix
import Synchronization

/// What a virus scan found.
public enum ScanResult: Sendable, Equatable {
    case clean
    case infected(String)
}

public struct ScanError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A client for clamd's INSTREAM command (clamd(8)): the message is sent in
/// length-prefixed chunks over a unix or TCP socket and clamd answers
/// "stream: OK" or "stream: NAME FOUND". clamd decodes MIME, base64,
/// quoted-printable and archives itself, so the whole message is sent as it
/// would be delivered. Blocking socket calls run on NIO's thread pool, never
/// on an event loop.
///
/// Connections are kept open between scans as clamd IDSESSION sessions, so
/// a busy gateway does not pay a connect (and a clamd thread hand-off) per
/// message. clamd drops a session after its IdleTimeout (30 s by default),
/// so an idle connection is reused only for `idleReuse` seconds, is checked
/// for a close before reuse, and a scan that fails on a reused connection
/// is retried once on a fresh one.
public final class ClamdClient: Sendable {
    public enum Address: Sendable, Equatable {
        case unix(String)
        case tcp(host: String, port: Int)
    }

    public let address: Address
    public let timeout: Double
    /// Size of one INSTREAM chunk.
    public let chunkSize = 64 * 1024
    /// Idle sessions kept for reuse; scans beyond it open more and close them after.
    public let poolSize: Int
    public let idleReuse: Double

    fileprivate struct Session {
        let fd: Int32
        var lastID = 0
        var lastUsed = ContinuousClock.now
    }

    private let idle = Mutex<[Session]>([])
    fileprivate let opened = Atomic<Int>(0)

    public init(address: Address, timeout: Double, poolSize: Int = 8, idleReuse: Double = 10) {
        self.address = address
        self.timeout = timeout
        self.poolSize = poolSize
        self.idleReuse = idleReuse
    }

    deinit {
        for s in idle.withLock({ $0 }) { Foundation.close(s.fd) }
    }

    /// Connections opened so far (for tests and metrics).
    public var connectionsOpened: Int { opened.load(ordering: .relaxed) }

    /// Hands the message to `emit` piece by piece (a spilled message is
    /// read from its file in chunks), so it never has to sit whole in memory.
    public typealias Source = @Sendable (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    /// Scans the message as delivered. The whole exchange runs as one job
    /// on NIO's thread pool: blocking sends straight from the message's
    /// storage, no copies and no hop per chunk. Throws when clamd cannot be
    /// reached, times out, or answers something unexpected: the caller
    /// fails closed.
    public func scan(_ source: @escaping Source) async throws -> ScanResult {
        try await NIOThreadPool.singleton.runIfActive { try self.scanBlocking(source) }
    }

    private func scanBlocking(_ source: Source) throws -> ScanResult {
        if var session = checkout() {
            if let r = try? instream(&session, source) {
                checkin(session)
                return r
            }
            // A reused session may have been closed by clamd at any moment: retry once, fresh.
            Foundation.close(session.fd)
        }
        return try scanFresh(source)
    }

    /// A scan fed piece by piece by someone else's read of the message (the
    /// gateway's inspection reads the text once for every analyzer).
    /// Blocking: for thread-pool jobs. `rescan` reads the message again, used
    /// only when a reused clamd session turns out closed mid-stream.
    public func openStream(rescan: @escaping Source) -> ClamdStream {
        ClamdStream(client: self, rescan: rescan)
    }

    fileprivate func scanFresh(_ source: Source) throws -> ScanResult {
        let fd = try connect()
        opened.wrappingAdd(1, ordering: .relaxed)
        var session = Session(fd: fd)
        do {
            try Self.writeAll(fd, Array("zIDSESSION\0".utf8), more: true)
            let r = try instream(&session, source)
            checkin(session)
            return r
        } catch {
            Foundation.close(fd)
            throw error
        }
    }

    fileprivate func instream(_ session: inout Session, _ source: Source) throws -> ScanResult {
        let fd = session.fd
        session.lastID += 1
        try Self.writeAll(fd, Array("zINSTREAM\0".utf8), more: true)
        try source { bytes in try writeFrames(fd, bytes) }
        try Self.writeAll(fd, [0, 0, 0, 0])
        return try finish(Self.readReply(fd), &session)
    }

    /// INSTREAM's framing: each chunk of at most `chunkSize` after its length.
    fileprivate func writeFrames(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(chunkSize, bytes.count - offset)
            try Self.writeAll(fd, withUnsafeBytes(of: UInt32(n).bigEndian) { Array($0) }, more: true)
            try Self.writeAll(fd, UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]), more: true)
            offset += n
        }
    }

    fileprivate func finish(_ reply: String, _ session: inout Session) throws -> ScanResult {
        // In a session clamd numbers its replies: "3: stream: OK".
        let expected = "\(session.lastID): "
        guard reply.hasPrefix(expected) else { throw ScanError("clamd answered out of turn: \(reply.prefix(200))") }
        session.lastUsed = .now
        return try Self.parse(String(reply.dropFirst(expected.count)))
    }

    /// An idle session young enough and not closed by clamd, or nil.
    fileprivate func checkout() -> Session? {
        while let s = idle.withLock({ $0.popLast() }) {
            if ContinuousClock.now - s.lastUsed < .milliseconds(Int64(idleReuse * 1000)) && Self.stillOpen(s.fd) { return s }
            Foundation.close(s.fd)
        }
        return nil
    }

    fileprivate func checkin(_ s: Session) {
        let kept = idle.withLock { pool -> Bool in
            guard pool.count < poolSize else { return false }
            pool.append(s)
            return true
        }
        if !kept { Foundation.close(s.fd) }
    }

    /// A peek that would block means open and quiet; end of file or stray
    /// bytes mean the session is unusable.
    private static func stillOpen(_ fd: Int32) -> Bool {
        var b: UInt8 = 0
        let n = recv(fd, &b, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }

    /// Ends the idle sessions (on reload or shutdown).
    public func close() {
        let sessions = idle.withLock { p -> [Session] in
            defer { p = [] }
            return p
        }
        for s in sessions {
            _ = Array("zEND\0".utf8).withUnsafeBytes { send(s.fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            Foundation.close(s.fd)
        }
    }

    /// "stream: OK", "stream: Eicar-Test-Signature FOUND", or an error line.
    static func parse(_ reply: String) throws -> ScanResult {
        let r = reply.trimmingCharacters(in: CharacterSet(charactersIn: "\0\n "))
        if r.hasSuffix(" OK") || r == "stream: OK" { return .clean }
        if r.hasSuffix(" FOUND") {
            var name = String(r.dropLast(" FOUND".count))
            if let colon = name.range(of: ": ", options: .backwards) { name = String(name[colon.upperBound...]) }
            return .infected(name)
        }
        throw ScanError("clamd answered: \(r.prefix(200))")
    }

    /// PING → PONG, for `mxgate check` and readiness.
    public func ping() async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive {
            let fd = try self.connect()
            defer { Foundation.close(fd) }
            try Self.writeAll(fd, Array("zPING\0".utf8))
            return try Self.readReply(fd).hasPrefix("PONG")
        }
    }

    fileprivate func connect() throws -> Int32 {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        switch address {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ScanError("socket: \(String(cString: strerror(errno)))") }
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { Foundation.close(fd); throw ScanError("socket path too long") }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
                raw[bytes.count] = 0
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else {
                let e = String(cString: strerror(errno))
                Foundation.close(fd)
                throw ScanError("cannot connect to clamd at \(path): \(e)")
            }
            return fd
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else {
                throw ScanError("cannot resolve clamd host \(host)")
            }
            defer { freeaddrinfo(res) }
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            guard fd >= 0 else { throw ScanError("socket: \(String(cString: strerror(errno)))") }
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            guard Foundation.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
                let e = String(cString: strerror(errno))
                Foundation.close(fd)
                throw ScanError("cannot connect to clamd at \(host):\(port): \(e)")
            }
            return fd
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], more: Bool = false) throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, more: more) }
    }

    /// `more` (MSG_MORE) lets the kernel join a frame header with its data.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, more: Bool = false) throws {
        var off = 0
        let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0)
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, flags)
            if n < 0 {
                if errno == EINTR { continue }
                throw ScanError(errno == EAGAIN ? "clamd timed out" : "writing to clamd: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    static func readReply(_ fd: Int32) throws -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 512)
        while out.count < 4096 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ScanError(errno == EAGAIN ? "clamd timed out" : "reading from clamd: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            out += buf[..<n]
            if out.contains(0) || out.contains(10) { break }
        }
        guard !out.isEmpty else { throw ScanError("clamd closed the connection without an answer") }
        return String(decoding: out.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// One INSTREAM scan fed piece by piece (`ClamdClient.openStream`). The
/// session is opened at the first piece, so opening costs nothing on an
/// event loop; every call blocks and belongs on the thread pool. A failure
/// is kept and thrown by `finish`, which is called exactly once.
public final class ClamdStream: @unchecked Sendable {
    private let client: ClamdClient
    private let rescan: ClamdClient.Source
    private var session: ClamdClient.Session?
    private var opened = false
    private var reused = false
    private var failure: Error?

    fileprivate init(client: ClamdClient, rescan: @escaping ClamdClient.Source) {
        self.client = client
        self.rescan = rescan
    }

    private func open() {
        opened = true
        do {
            if let s = client.checkout() {
                session = s
                reused = true
            } else {
                let fd = try client.connect()
                client.opened.wrappingAdd(1, ordering: .relaxed)
                session = ClamdClient.Session(fd: fd)
                try ClamdClient.writeAll(fd, Array("zIDSESSION\0".utf8), more: true)
            }
            session!.lastID += 1
            try ClamdClient.writeAll(session!.fd, Array("zINSTREAM\0".utf8), more: true)
        } catch {
            failure = error
        }
    }

    public func send(_ bytes: UnsafeRawBufferPointer) {
        if !opened { open() }
        guard failure == nil, let fd = session?.fd else { return }
        do {
            try client.writeFrames(fd, bytes)
        } catch {
            failure = error
        }
    }

    public func finish() throws -> ScanResult {
        if !opened { open() }
        if failure == nil, var s = session {
            do {
                try ClamdClient.writeAll(s.fd, [0, 0, 0, 0])
                let r = try client.finish(ClamdClient.readReply(s.fd), &s)
                client.checkin(s)
                return r
            } catch {
                failure = error
            }
        }
        if let s = session { Foundation.close(s.fd) }
        session = nil
        // A reused session may have been closed by clamd at any moment: once more, fresh.
        if reused { return try client.scanFresh(rescan) }
        throw failure ?? ScanError("clamd scan failed")
    }
}
