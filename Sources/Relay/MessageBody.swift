import Foundation
import NIOCore

/// Sees the text as it is stored, piece by piece and in order: what must
/// read the message while it streams in (DKIM's and ARC's body hashes)
/// rather than in a second pass after it.
public protocol TextObserver: AnyObject {
    func observe(_ piece: UnsafeRawBufferPointer)
}

/// The message text of one transaction while the verdict is pending: in
/// memory up to a threshold, then in an unlinked temporary file, so a 50 MB
/// message never sits whole in RAM (DESIGN.md, "End of data, milter-style").
public final class MessageBody: @unchecked Sendable {
    // Used by one session task at a time; not shared across tasks concurrently.
    private var memory = ByteBuffer()
    private var fd: Int32 = -1
    private let threshold: Int
    private let tempDirectory: String
    public private(set) var count = 0
    /// Shown every piece appended, as it is appended.
    public var observer: (any TextObserver)?

    public init(memoryThreshold: Int, tempDirectory: String) {
        self.threshold = memoryThreshold
        self.tempDirectory = tempDirectory
    }

    /// A read-only body over the first `length` bytes of a stored file (a
    /// queued message, whose envelope follows the text).
    public init(readingFile path: String, length: Int) throws {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { throw RelayError.local("cannot open \(path): \(String(cString: strerror(errno)))") }
        fd = f
        count = length
        threshold = 0
        tempDirectory = ""
    }

    deinit { if fd >= 0 { close(fd) } }

    public var isSpilled: Bool { fd >= 0 }

    public func append(_ bytes: ByteBuffer) throws {
        guard bytes.readableBytes > 0 else { return }
        if let observer { bytes.withUnsafeReadableBytes { observer.observe($0) } }
        count += bytes.readableBytes
        if fd < 0 && memory.readableBytes + bytes.readableBytes <= threshold {
            var b = bytes
            memory.writeBuffer(&b)
            return
        }
        if fd < 0 { try spill() }
        try writeAll(bytes)
    }

    /// Whether `n` more input bytes, decoded (at most doubled, when bare
    /// line ends become CRLF), still fit in memory: `appendInPlace` may be used.
    public func fitsInMemory(_ n: Int) -> Bool { fd < 0 && memory.readableBytes + 2 * n <= threshold }

    /// Lets `write` append straight to the in-memory text (the session's
    /// decoder, saving a copy of every chunk). Only after `fitsInMemory`.
    public func appendInPlace<R>(_ write: (inout ByteBuffer) -> R) -> R {
        let before = memory.readableBytes
        let r = write(&memory)
        count += memory.readableBytes - before
        if let observer, memory.readableBytes > before {
            memory.withUnsafeReadableBytes { observer.observe(UnsafeRawBufferPointer(rebasing: $0[before...])) }
        }
        return r
    }

    private func spill() throws {
        var template = Array((tempDirectory + "/mxgate-msg-XXXXXX").utf8CString)
        let f = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard f >= 0 else { throw RelayError.local("cannot create temporary file in \(tempDirectory): \(String(cString: strerror(errno)))") }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        unlink(path)  // the file lives only as long as this object
        fd = f
        try writeAll(memory)
        memory = ByteBuffer()
    }

    private func writeAll(_ bytes: ByteBuffer) throws {
        try bytes.withUnsafeReadableBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw RelayError.local("cannot write temporary file: \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
    }

    /// The header section, blank line included, for header parsing; if no
    /// blank line comes within `limit` bytes, the first `limit` bytes.
    public func headerSection(limit: Int) throws -> [UInt8] {
        guard fd < 0 else { return try prefix(limit) }
        let n = min(limit, memory.readableBytes)
        let end = memory.withUnsafeReadableBytes { raw -> Int in
            guard n >= 4, let base = raw.baseAddress else { return n }
            var i = 0
            while i + 4 <= n, let cr = memchr(base + i, 13, n - 3 - i) {
                let at = base.distance(to: UnsafeRawPointer(cr))
                if raw[at + 1] == 10 && raw[at + 2] == 13 && raw[at + 3] == 10 { return at + 4 }
                i = at + 1
            }
            return n
        }
        return memory.getBytes(at: memory.readerIndex, length: end) ?? []
    }

    /// The first bytes, for header parsing.
    public func prefix(_ n: Int) throws -> [UInt8] {
        if fd < 0 { return memory.getBytes(at: memory.readerIndex, length: min(n, memory.readableBytes)) ?? [] }
        var out = [UInt8](repeating: 0, count: min(n, count))
        let got = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        guard got >= 0 else { throw RelayError.local("cannot read temporary file") }
        return Array(out[..<got])
    }

    /// Calls `body` with successive chunks of the text.
    /// `from` skips the first bytes (a header section sent rewritten instead).
    public func forEachChunk(size: Int = 64 * 1024, from start: Int = 0, _ body: (ByteBuffer) async throws -> Void) async throws {
        if fd < 0 {
            var m = memory
            m.moveReaderIndex(forwardBy: min(start, m.readableBytes))
            while m.readableBytes > 0 {
                let slice = m.readSlice(length: min(size, m.readableBytes))!
                try await body(slice)
            }
            return
        }
        var offset = off_t(min(start, count))
        var chunk = ByteBuffer()
        while Int(offset) < count {
            chunk.clear()
            let n = chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
                let got = pread(fd, raw.baseAddress!, min(size, raw.count, count - Int(offset)), offset)
                return max(got, 0)
            }
            guard n > 0 else { throw RelayError.local("short read from temporary file") }
            offset += off_t(n)
            try await body(chunk)
        }
    }

    /// Gives the text to `file` as an open descriptor when it was spilled to
    /// disk, else to `memory` as bytes: a scanner can read either without a copy.
    public func withStorage<T>(file: (Int32) throws -> T, memory: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        if fd >= 0 {
            lseek(fd, 0, SEEK_SET)
            return try file(fd)
        }
        return try self.memory.withUnsafeReadableBytes { try memory($0) }
    }

    /// Calls `emit` with the text in pieces, blocking (a spilled message is
    /// read from its file in chunks of `chunkSize`); for thread-pool jobs.
    public func forEachPieceBlocking(chunkSize: Int = 64 * 1024, from start: Int = 0,
                                     _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if fd < 0 {
            return try memory.withUnsafeReadableBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[min(start, $0.count)...])) }
        }
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var offset = min(start, count)
        while offset < count {
            let n = min(chunkSize, count - offset)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, n, off_t(offset)) }
            guard got == n else { throw RelayError.local("short read from temporary file") }
            try buffer.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += n
        }
    }

    /// A pull reader over the text: each call returns the next chunk, nil at the end.
    public func reader(chunkSize: Int = 64 * 1024) -> () async throws -> [UInt8]? {
        var offset = 0
        return { [self] in
            guard offset < count else { return nil }
            let n = min(chunkSize, count - offset)
            defer { offset += n }
            if fd < 0 { return memory.getBytes(at: memory.readerIndex + offset, length: n) }
            var out = [UInt8](repeating: 0, count: n)
            let got = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, n, off_t(offset)) }
            guard got == n else { throw RelayError.local("short read from temporary file") }
            return out
        }
    }

    /// All bytes; used where a whole message is needed (small messages, tests).
    public func allBytes() async throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        try await forEachChunk { out += $0.readableBytesView }
        return out
    }
}

/// Why relaying failed; the session turns each into a 4xx reply.
public enum RelayError: Error, Sendable, CustomStringConvertible {
    case connect(String)
    case timeout(String)
    case closed(String)
    case protocolError(String)
    case tls(String)
    case local(String)

    public var description: String {
        switch self {
        case .connect(let s): return "cannot connect to downstream: \(s)"
        case .timeout(let s): return "downstream timed out \(s)"
        case .closed(let s): return "downstream closed the connection \(s)"
        case .protocolError(let s): return "downstream protocol error: \(s)"
        case .tls(let s): return "downstream TLS failed: \(s)"
        case .local(let s): return s
        }
    }
}
