import Foundation

/// A TCP connection for the external scorers, used from the thread pool:
/// every call blocks, and the whole exchange (connect, send, read) has one
/// deadline, so a daemon that trickles its answer cannot hold a message
/// longer than its timeout.
public struct BlockingSocket {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
        public init(_ d: String) { description = d }
    }

    let fd: Int32
    let deadline: ContinuousClock.Instant
    let peer: String

    public static func connect(host: String, port: Int, timeout: Double) throws -> BlockingSocket {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else { throw Failure("cannot resolve \(host)") }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        let s = BlockingSocket(fd: fd, deadline: deadline, peer: "\(host):\(port)")
        try s.arm()
        guard Foundation.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            let e = errno == EINPROGRESS || errno == EAGAIN ? "timed out" : String(cString: strerror(errno))
            Foundation.close(fd)
            throw Failure("cannot connect to \(host):\(port): \(e)")
        }
        return s
    }

    /// Sets the socket's timeouts to what is left of the deadline.
    private func arm() throws {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { throw Failure("\(peer) timed out") }
        let (s, atto) = left.components
        var tv = timeval(tv_sec: Int(s), tv_usec: max(1, Int(atto / 1_000_000_000_000)))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                try arm()
                let n = send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw Failure(errno == EAGAIN ? "\(peer) timed out" : "writing to \(peer): \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
    }

    /// Everything the peer sends until it closes (or `limit` bytes).
    public func readToEnd(limit: Int = 4 << 20) throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while out.count < limit {
            try arm()
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(errno == EAGAIN ? "\(peer) timed out" : "reading from \(peer): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            out += buf[..<n]
        }
        return out
    }

    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
    public func close() { Foundation.close(fd) }
}
