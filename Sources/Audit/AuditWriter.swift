import Foundation
import Synchronization
import Threads

/// Where audit records go. Sessions hand records to a sink and move on; the
/// sink must never block the caller on disk I/O.
public protocol AuditSink: Sendable {
    func record(_ record: AuditRecord)
    /// False while records cannot be written: the gateway then tempfails
    /// new mail rather than accept it without a record (fail closed).
    var healthy: Bool { get }
}

extension AuditSink {
    public var healthy: Bool { true }
}

/// The single owner of the audit file (DESIGN.md: "one audit writer").
///
/// `record` only encodes and appends to an in-memory batch under a lock; a
/// dedicated thread writes the batch at least once a second (sooner when it
/// grows), rotates the file by size, and drains everything on `close`.
public final class AuditWriter: AuditSink, @unchecked Sendable {
    public struct Options: Sendable {
        public var path: String
        /// Rotate once the file passes this many bytes; 0 disables rotation.
        public var maxBytes: Int
        /// Rotated files kept as path.1 … path.N (newest first).
        public var keep: Int
        public init(path: String, maxBytes: Int = 100 * 1024 * 1024, keep: Int = 10) {
            self.path = path
            self.maxBytes = maxBytes
            self.keep = keep
        }
    }

    private struct State {
        var pending: [UInt8] = []
        var closed = false
        /// Set while writes fail; the records wait in `pending`.
        var failing: String?
        var dropped = 0
    }

    public let options: Options
    /// How often the writer wakes when nothing wakes it sooner.
    let flushInterval: DispatchTimeInterval
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private var fd: Int32 = -1          // owned by the writer thread after init
    private var fileSize = 0
    /// Flush early once this much is pending, so bursts do not wait a second.
    private let batchBytes = 256 * 1024
    /// While the file cannot be written, records wait up to this much; past
    /// it the oldest are dropped, counted, and the count is logged.
    private let backlogBytes = 64 * 1024 * 1024

    public var healthy: Bool { state.withLock { $0.failing == nil } }

    /// For tests: what the batch buffer holds on to between flushes.
    var pendingCapacity: Int { state.withLock { $0.pending.capacity } }

    public convenience init(options: Options) throws {
        try self.init(options: options, flushInterval: .seconds(1))
    }

    init(options: Options, flushInterval: DispatchTimeInterval) throws {
        self.options = options
        self.flushInterval = flushInterval
        let dir = (options.path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try openFile()
        // Named from inside: on Linux a name set before start() is not applied
        // (and 15 characters at most), so `top -H` would show the parent's.
        detachNamedThread("mxgate-audit") { [self] in self.run() }
    }

    private func openFile() throws {
        fd = open(options.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw AuditError("cannot open audit log \(options.path): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        fileSize = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
    }

    public func record(_ record: AuditRecord) {
        var line = record.jsonBytes()
        line.append(10)
        let big = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.pending += line
            return s.pending.count >= batchBytes
        }
        if big { wake.signal() }
    }

    /// Writes everything pending and stops the writer thread.
    public func close() {
        let already = state.withLock { s -> Bool in
            defer { s.closed = true }
            return s.closed
        }
        guard !already else { return }
        wake.signal()
        done.wait()
    }

    private func run() {
        while true {
            _ = wake.wait(timeout: .now() + flushInterval)
            // Take the batch and leave a fresh array. Not removeAll(keepingCapacity:):
            // `batch` still shares the storage, so that allocated a new buffer one
            // page larger on every wake, idle or not (4 KB a second, for ever).
            let (batch, closed) = state.withLock { s -> ([UInt8], Bool) in
                let batch = s.pending
                s.pending = []
                return (batch, s.closed)
            }
            if !batch.isEmpty {
                let leftover = write(batch)
                noteOutcome(leftover, error: leftover.isEmpty ? nil : String(cString: strerror(errno)))
            }
            if closed {
                if fd >= 0 { fsync(fd); Foundation.close(fd) }
                done.signal()
                return
            }
        }
    }

    /// After a flush: unwritten records go back in front of the queue (so
    /// nothing is lost while the disk is full or the file unwritable), and
    /// a change between working and failing is logged once.
    private func noteOutcome(_ leftover: [UInt8], error: String?) {
        let (message, dropped) = state.withLock { s -> (String?, Int) in
            var message: String?
            if leftover.isEmpty {
                if let was = s.failing { message = "mxgate: audit log writable again (after: \(was)); held records written" }
                s.failing = nil
            } else {
                if s.failing == nil { message = "mxgate: audit log write failed, holding records and refusing new mail with 451: \(error ?? "?")" }
                s.failing = error ?? "write failed"
                s.pending = leftover + s.pending
                var dropped = 0
                while s.pending.count > backlogBytes, let nl = s.pending.firstIndex(of: 10) {
                    s.pending.removeSubrange(...nl)
                    dropped += 1
                }
                s.dropped += dropped
                return (message, dropped)
            }
            return (message, 0)
        }
        if let message { FileHandle.standardError.write(Data((message + "\n").utf8)) }
        if dropped > 0 { FileHandle.standardError.write(Data("mxgate: audit backlog full, \(dropped) oldest record(s) dropped\n".utf8)) }
    }

    /// Writes a batch, rotating between lines whenever the next line would
    /// take the file past the size limit; returns what could not be written.
    private func write(_ bytes: [UInt8]) -> [UInt8] {
        if fd < 0, (try? openFile()) == nil { return bytes }
        var runStart = 0
        var lineStart = 0
        while lineStart < bytes.count {
            let lineEnd = (bytes[lineStart...].firstIndex(of: 10) ?? bytes.count - 1) + 1
            let runLength = lineEnd - runStart
            if options.maxBytes > 0, fileSize + runLength > options.maxBytes, fileSize + (lineStart - runStart) > 0 {
                if let stop = writeRange(bytes, runStart, lineStart) { return Array(bytes[stop...]) }
                rotate()
                runStart = lineStart
            }
            lineStart = lineEnd
        }
        if let stop = writeRange(bytes, runStart, bytes.count) { return Array(bytes[stop...]) }
        return []
    }

    /// nil when all was written, else where writing stopped (the start of
    /// the line it stopped in, so no record is written half twice).
    private func writeRange(_ bytes: [UInt8], _ from: Int, _ to: Int) -> Int? {
        var offset = from
        let failed: Bool = bytes.withUnsafeBytes { raw in
            while offset < to {
                let n = Foundation.write(fd, raw.baseAddress! + offset, to - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return true
                }
                offset += n
            }
            return false
        }
        guard failed else {
            fileSize += offset - from
            return nil
        }
        let e = errno
        // Cut back to the start of the line that was cut, so the file stays
        // one whole record a line (shrinking is allowed even when full).
        var lineStart = offset
        while lineStart > from && bytes[lineStart - 1] != 10 { lineStart -= 1 }
        let keep = fileSize + (lineStart - from)
        if offset > lineStart { _ = ftruncate(fd, off_t(keep)) }
        fileSize = keep
        errno = e
        return lineStart
    }

    /// path → path.1 → path.2 …, dropping the oldest beyond `keep`.
    private func rotate() {
        Foundation.close(fd)
        let fm = FileManager.default
        if options.keep > 0 {
            try? fm.removeItem(atPath: "\(options.path).\(options.keep)")
            for i in stride(from: options.keep - 1, through: 1, by: -1) {
                let from = "\(options.path).\(i)"
                if fm.fileExists(atPath: from) { try? fm.moveItem(atPath: from, toPath: "\(options.path).\(i + 1)") }
            }
            try? fm.moveItem(atPath: options.path, toPath: "\(options.path).1")
        } else {
            try? fm.removeItem(atPath: options.path)
        }
        do { try openFile() } catch {
            FileHandle.standardError.write(Data("mxgate: \(error)\n".utf8))
        }
    }
}

public struct AuditError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Collects records in memory; used by `mxgate test` and the tests.
public final class MemoryAuditSink: AuditSink, @unchecked Sendable {
    private let storage = Mutex<[AuditRecord]>([])
    public init() {}
    public func record(_ record: AuditRecord) { storage.withLock { $0.append(record) } }
    public var records: [AuditRecord] { storage.withLock { $0 } }
}
