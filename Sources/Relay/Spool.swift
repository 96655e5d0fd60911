import Foundation
import NIOCore
import NIOPosix
import SMTPProtocol
import Synchronization

/// One recipient of a queued message: where it goes, what the client asked
/// for it (RFC 3461 NOTIFY and ORCPT), and how delivery went so far.
public struct QueuedRecipient: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case pending, delivered, failed }

    /// The address delivered to (after rewriting).
    public var address: String
    /// RFC 3461 ORCPT as given ("rfc822;user@example.com"), for the DSN.
    public var orcpt: String?
    /// RFC 3461 NOTIFY as given ("NEVER" or a list of SUCCESS, FAILURE, DELAY).
    public var notify: String?
    public var status: Status = .pending
    public var attempts = 0
    /// The last answer: a remote reply ("550 5.1.1 No such user") or why there was none.
    public var lastReply: String?
    public var lastAttempt: Date?
    /// The host that gave `lastReply`, for the DSN's Remote-MTA.
    public var remoteHost: String?
    /// True once a "relayed" or "delivered" DSN is no longer owed.
    public var successReported = false

    public init(address: String, orcpt: String? = nil, notify: String? = nil) {
        self.address = address
        self.orcpt = orcpt
        self.notify = notify
    }

    /// RFC 3461 §4.1: without NOTIFY, failures are reported (delays at the MTA's discretion).
    public func wants(_ kind: String) -> Bool {
        guard let n = notify?.uppercased() else { return kind == "FAILURE" || kind == "DELAY" }
        return n.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == kind }
    }
}

/// The envelope of a queued message and its delivery state, kept next to
/// the message text as JSON and replaced durably at each change.
public struct QueuedEnvelope: Codable, Sendable {
    public var id: String
    public var arrival: Date
    /// The reverse path; empty for the null sender (bounces, which are never bounced).
    public var sender: String
    public var ret: String?
    public var envid: String?
    public var body: String?
    public var smtpUTF8 = false
    public var recipients: [QueuedRecipient]
    /// Bytes of the stored message text (trace header included).
    public var size: Int
    public var messageID: String?
    /// "helo [ip]" of the client that handed the message in, or "mxgate" for DSNs.
    public var origin: String
    public var nextAttempt: Date
    public var held = false
    public var delayWarned = false

    public init(id: String, sender: String, recipients: [QueuedRecipient], size: Int, messageID: String?, origin: String) {
        self.id = id
        self.arrival = Date()
        self.sender = sender
        self.recipients = recipients
        self.size = size
        self.messageID = messageID
        self.origin = origin
        self.nextAttempt = arrival
    }

    public var pending: [QueuedRecipient] { recipients.filter { $0.status == .pending } }
    public var isFinished: Bool { recipients.allSatisfy { $0.status != .pending } }
}

/// The queue on disk (`[queue] directory`):
///
///     tmp/       files being written; emptied at start-up
///     active/    ID: the message text, then its envelope as JSON, then a
///                32-byte footer giving both lengths; never changed after
///                it is committed. ID.env: the envelope's current state
///                (JSON), once a delivery attempt has changed it.
///     corrupt/   what start-up recovery could not read, kept for a person
///
/// One file per message, so one sync per message at most. The group
/// committer's thread writes a message to tmp/, renames it into active/
/// and makes it durable: alone, with fsync of the file and of active/; with
/// others waiting, with one syncfs(2) for the whole batch. No session hears 250
/// before its message is on disk, and a busy gateway does not pay a sync
/// per message.
public final class Spool: Sendable {
    public let directory: String
    let tmp: String
    let active: String
    let corrupt: String
    private let committer: GroupCommitter
    private static let counter = Atomic<Int>(0)
    private static let processTag = UInt32.random(in: 0..<0x1000)

    public init(directory: String) throws {
        self.directory = directory
        tmp = directory + "/tmp"
        active = directory + "/active"
        corrupt = directory + "/corrupt"
        for d in [directory, tmp, active, corrupt] {
            do {
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw RelayError.local("cannot create queue folder \(d): \(error.localizedDescription)")
            }
        }
        committer = try GroupCommitter(directory: active)
    }

    /// Queue IDs sort by arrival: seconds since 1970, a per-process tag and
    /// a counter, in hex ("674A1B2C3D0001F").
    public static func newID(now: Date = Date()) -> String {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue & 0xFFFFF
        return upperHex(UInt64(UInt32(now.timeIntervalSince1970)), width: 8) + upperHex(UInt64(processTag), width: 3) + upperHex(UInt64(n), width: 5)
    }

    /// The envelope as one line of JSON, readable by `decode` (JSONDecoder,
    /// ISO 8601 dates). Built by hand: JSONEncoder was about a twentieth of
    /// queue mode's CPU per message.
    static func encode(_ env: QueuedEnvelope) -> [UInt8] {
        var w = EnvelopeJSON()
        w.add("arrival", env.arrival)
        w.add("body", env.body)
        w.add("delayWarned", env.delayWarned)
        w.add("envid", env.envid)
        w.add("held", env.held)
        w.add("id", env.id)
        w.add("messageID", env.messageID)
        w.add("nextAttempt", env.nextAttempt)
        w.add("origin", env.origin)
        w.key("recipients")
        w.out.append(UInt8(ascii: "["))
        for (i, r) in env.recipients.enumerated() {
            if i > 0 { w.out.append(UInt8(ascii: ",")) }
            var rw = EnvelopeJSON()
            rw.add("address", r.address)
            rw.add("attempts", r.attempts)
            rw.add("lastAttempt", r.lastAttempt)
            rw.add("lastReply", r.lastReply)
            rw.add("notify", r.notify)
            rw.add("orcpt", r.orcpt)
            rw.add("remoteHost", r.remoteHost)
            rw.add("status", r.status.rawValue)
            rw.add("successReported", r.successReported)
            w.out += rw.finish()
        }
        w.out.append(UInt8(ascii: "]"))
        w.add("ret", env.ret)
        w.add("sender", env.sender)
        w.add("size", env.size)
        w.add("smtpUTF8", env.smtpUTF8)
        return w.finish() + [10]
    }

    static func decode(_ bytes: Data) throws -> QueuedEnvelope {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return try d.decode(QueuedEnvelope.self, from: bytes)
    }

    public func messagePath(_ id: String) -> String { "\(active)/\(id)" }
    public func envelopePath(_ id: String) -> String { "\(active)/\(id).env" }

    /// "\nMXQ1:" + 16 hex digits of message length + ":" + 8 of envelope length + "\n".
    static let footerSize = 32

    static func footer(message: Int, envelope: Int) -> [UInt8] {
        func hex(_ v: Int, _ width: Int) -> String {
            let h = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, width - h.count)) + h
        }
        return Array("\nMXQ1:\(hex(message, 16)):\(hex(envelope, 8))\n".utf8)
    }

    /// (message length, envelope length) from a footer, if it is one.
    static func parseFooter(_ b: [UInt8]) -> (Int, Int)? {
        guard b.count == footerSize, b.starts(with: Array("\nMXQ1:".utf8)), b[22] == 58, b[31] == 10,
              let m = Int(String(decoding: b[6..<22], as: UTF8.self), radix: 16),
              let e = Int(String(decoding: b[23..<31], as: UTF8.self), radix: 16) else { return nil }
        return (m, e)
    }

    /// Stores a new message: `header` (the trace header) then `body` from
    /// `bodyOffset`, and its envelope, in one file. Returns once it is on
    /// disk; throws (and leaves nothing behind) otherwise.
    public func store(_ env: QueuedEnvelope, header: ByteBuffer, body: MessageBody, bodyOffset: Int = 0) async throws {
        let id = env.id
        try await committer.commit(isNew: true) { () throws -> GroupCommitter.File in
            let f = try Self.create("\(self.tmp)/\(id)")
            do {
                try Self.writeAll(f.fd, header.readableBytesView, path: f.tmp)
                try body.forEachPieceBlocking(from: bodyOffset) { try Self.writeAll(f.fd, $0, path: f.tmp) }
                let json = Self.encode(env)
                try Self.writeAll(f.fd, json + Self.footer(message: env.size, envelope: json.count), path: f.tmp)
            } catch {
                close(f.fd)
                unlink(f.tmp)
                throw error
            }
            return GroupCommitter.File(fd: f.fd, tmp: f.tmp, final: self.messagePath(id))
        }
    }

    /// Replaces a message's envelope durably (after a delivery attempt, hold, release).
    public func update(_ env: QueuedEnvelope) async throws {
        let id = env.id
        try await committer.commit(isNew: false) { () throws -> GroupCommitter.File in
            let f = try Self.create("\(self.tmp)/\(id).env.\(Self.counter.wrappingAdd(1, ordering: .relaxed).newValue)")
            do {
                try Self.writeAll(f.fd, Self.encode(env), path: f.tmp)
            } catch {
                close(f.fd)
                unlink(f.tmp)
                throw error
            }
            return GroupCommitter.File(fd: f.fd, tmp: f.tmp, final: self.envelopePath(id))
        }
    }

    /// Removes a message: the message first, so a crash in between leaves
    /// a bare .env, which recovery deletes.
    public func remove(_ id: String) {
        unlink(messagePath(id))
        unlink(envelopePath(id))
    }

    /// Removes a delivered message later, on the committer's thread:
    /// unlinking is slow on ext4 (blocks, bitmaps) and needs no waiting for.
    /// A crash before it happens delivers the message again; `drain()`
    /// makes sure a clean stop does not.
    public func removeLater(_ id: String) {
        committer.unlinkLater([messagePath(id), envelopePath(id)])
    }

    /// Returns once every `removeLater` so far has been done.
    public func drain() async {
        await committer.drain()
    }

    public enum ReadError: Error { case missing, torn(String) }

    /// The envelope as committed with the message, checked against the file's size.
    func committedEnvelope(_ id: String) throws(ReadError) -> QueuedEnvelope {
        let fd = open(messagePath(id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .missing }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        guard size >= Self.footerSize else { throw .torn("file too short") }
        var foot = [UInt8](repeating: 0, count: Self.footerSize)
        guard foot.withUnsafeMutableBytes({ pread(fd, $0.baseAddress!, Self.footerSize, off_t(size - Self.footerSize)) }) == Self.footerSize,
              let (m, e) = Self.parseFooter(foot) else { throw .torn("no footer (a write that never finished)") }
        guard m + e + Self.footerSize == size else { throw .torn("size does not match the footer") }
        var json = [UInt8](repeating: 0, count: e)
        guard json.withUnsafeMutableBytes({ pread(fd, $0.baseAddress!, e, off_t(m)) }) == e,
              let env = try? Self.decode(Data(json)), env.size == m, env.id == id else { throw .torn("envelope unreadable") }
        return env
    }

    /// The current envelope: the latest state written after a delivery
    /// attempt, or the one committed with the message. A state file that
    /// does not read (torn by a crash) falls back to the committed one, so
    /// a recipient may be tried again but is never lost.
    public func envelope(_ id: String) -> QueuedEnvelope? {
        guard Self.validID(id), let committed = try? committedEnvelope(id) else { return nil }
        return latest(id, committed: committed)
    }

    private func latest(_ id: String, committed: QueuedEnvelope) -> QueuedEnvelope {
        if let data = FileManager.default.contents(atPath: envelopePath(id)), let env = try? Self.decode(data), env.id == id {
            return env
        }
        return committed
    }

    /// Queue IDs are hex; anything else never names a file.
    public static func validID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 32 && id.allSatisfy { $0.isHexDigit }
    }

    /// The stored text of a message, for delivery and bounces.
    public func message(_ env: QueuedEnvelope) throws -> MessageBody {
        try MessageBody(readingFile: messagePath(env.id), length: env.size)
    }

    /// The stored text of a message by ID (the queue tools).
    public func message(_ id: String) throws -> MessageBody {
        guard let env = envelope(id) else { throw RelayError.local("queue: message \(id) is gone") }
        return try message(env)
    }

    /// Every queued envelope, after start-up recovery: tmp/ is emptied (none
    /// of it was ever acknowledged), a state file without its message is
    /// deleted, and a message file that does not read whole (torn by a crash
    /// before its commit finished, so never acknowledged either) is moved to
    /// corrupt/ and reported.
    public func recover() -> (envelopes: [QueuedEnvelope], problems: [String]) {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: tmp)) ?? [] { unlink("\(tmp)/\(name)") }
        var problems: [String] = []
        var envelopes: [QueuedEnvelope] = []
        let names = Set((try? fm.contentsOfDirectory(atPath: active)) ?? [])
        for name in names.sorted() {
            if name.hasSuffix(".env") {
                if !names.contains(String(name.dropLast(4))) { unlink("\(active)/\(name)") }
                continue
            }
            guard Self.validID(name) else { continue }
            do {
                envelopes.append(latest(name, committed: try committedEnvelope(name)))
            } catch {
                problems.append("\(name): \(error), moved to corrupt/")
                rename(messagePath(name), "\(corrupt)/\(name)")
                unlink(envelopePath(name))
            }
        }
        return (envelopes, problems)
    }

    /// Every envelope in active/, read-only (the queue tools).
    public func list() -> [QueuedEnvelope] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: active)) ?? []
        return names.filter(Self.validID).compactMap(envelope).sorted { $0.arrival < $1.arrival }
    }

    private static func create(_ path: String) throws -> (fd: Int32, tmp: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError(op: "create", path: path, errno: errno) }
        return (fd, path)
    }

    static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>, path: String) throws {
        let done: Void? = try bytes.withContiguousStorageIfAvailable { try writeAll(fd, UnsafeRawBufferPointer($0), path: path) }
        if done == nil { try Array(bytes).withUnsafeBytes { try writeAll(fd, $0, path: path) } }
    }

    static func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < raw.count {
            let n = write(fd, raw.baseAddress! + off, raw.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw SpoolError(op: "write", path: path, errno: errno)
            }
            off += n
        }
    }
}

/// A spool write that failed: the session answers 452 4.3.1 and logs this.
public struct SpoolError: Error, Sendable, CustomStringConvertible {
    public let op: String
    public let path: String
    public let code: Int32
    init(op: String, path: String, errno: Int32) {
        self.op = op
        self.path = path
        self.code = errno
    }
    public var description: String { "queue: cannot \(op) \(path): \(String(cString: strerror(code)))" }
}

/// One thread that writes spool files and makes them durable in batches.
/// A writer hands over a closure that creates and fills its file and waits
/// on a continuation: one hand-off per message, where a pool thread for the
/// writing and this one for the sync made two. While a batch syncs, the
/// next one gathers: a batch of one is fsync'd file and folder; a bigger
/// one is renamed into place and made durable by one syncfs(2). Delivered
/// files are unlinked here too, between batches.
final class GroupCommitter: @unchecked Sendable {
    struct File: Sendable {
        let fd: Int32
        let tmp: String
        let final: String
    }

    private struct Job {
        /// Creates and writes the job's file in tmp/ (run on the committer's thread).
        let write: @Sendable () throws -> File
        /// A new message (its file goes if the batch fails), not an envelope replaced in place.
        let isNew: Bool
        let done: CheckedContinuation<Void, Error>
    }

    // `pending`, `unlinks` and `drains` are guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [Job] = []
    private var unlinks: [String] = []
    private var drains: [CheckedContinuation<Void, Never>] = []
    private let directoryFD: Int32
    private let directory: String

    init(directory: String) throws {
        self.directory = directory
        directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw SpoolError(op: "open", path: directory, errno: errno) }
        let t = Thread { [self] in self.run() }
        t.name = "mxgate-spool-commit"
        t.start()
    }

    func commit(isNew: Bool, write: @escaping @Sendable () throws -> File) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
            condition.lock()
            pending.append(Job(write: write, isNew: isNew, done: c))
            condition.signal()
            condition.unlock()
        }
    }

    func unlinkLater(_ paths: [String]) {
        condition.lock()
        unlinks += paths
        condition.signal()
        condition.unlock()
    }

    func drain() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            condition.lock()
            drains.append(c)
            condition.signal()
            condition.unlock()
        }
    }

    // The committer lives as long as the process (one per spool directory).
    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && unlinks.isEmpty && drains.isEmpty { condition.wait() }
            let batch = pending, gone = unlinks, drained = drains
            pending.removeAll()
            unlinks.removeAll()
            drains.removeAll()
            condition.unlock()
            if !batch.isEmpty { commit(batch) }
            for path in gone { unlink(path) }
            for d in drained { d.resume() }
        }
    }

    private func commit(_ batch: [Job]) {
        var results: [Result<File, Error>] = batch.map { job in Result { try job.write() } }
        var dirError: Error?
        let written = results.compactMap { try? $0.get() }
        if batch.count == 1 {
            // Alone: fsync the file, rename it, fsync the folder.
            if let f = written.first {
                do { try Self.syncAndRename(f) } catch { results[0] = .failure(error) }
                if case .success = results[0], fsync(directoryFD) != 0 {
                    dirError = SpoolError(op: "fsync", path: directory, errno: errno)
                }
            }
        } else if !written.isEmpty {
            // Several waiting: rename them all, then one syncfs(2) makes
            // every file and every rename durable at once.
            for i in results.indices {
                guard case .success(let f) = results[i] else { continue }
                do { try Self.rename(f) } catch { results[i] = .failure(error) }
            }
            if linuxSyncfs(directoryFD) != 0 {
                dirError = SpoolError(op: "syncfs", path: directory, errno: errno)
            }
        }
        for (job, result) in zip(batch, results) {
            switch (result, dirError) {
            case (.success, nil):
                job.done.resume()
            case (.success(let f), let e?):
                if job.isNew { unlink(f.final) }
                job.done.resume(throwing: e)
            case (.failure(let e), _):
                job.done.resume(throwing: e)
            }
        }
    }

    /// Renames a file into place (a syncfs follows); on failure it is gone.
    private static func rename(_ f: File) throws {
        defer { close(f.fd) }
        if Foundation.rename(f.tmp, f.final) != 0 {
            let e = SpoolError(op: "rename", path: f.tmp, errno: errno)
            unlink(f.tmp)
            throw e
        }
    }

    /// fsync then rename a file; on failure it is gone (a state file
    /// replaced in place keeps its old version).
    private static func syncAndRename(_ f: File) throws {
        defer { close(f.fd) }
        var failure: SpoolError?
        if fsync(f.fd) != 0 {
            failure = SpoolError(op: "fsync", path: f.tmp, errno: errno)
        } else if Foundation.rename(f.tmp, f.final) != 0 {
            failure = SpoolError(op: "rename", path: f.tmp, errno: errno)
        }
        if let failure {
            unlink(f.tmp)
            throw failure
        }
    }
}

/// syncfs(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc
/// module does not set.
@_silgen_name("syncfs")
private func linuxSyncfs(_ fd: Int32) -> Int32

/// A JSON object written byte by byte, keys in the order given; absent
/// optionals are left out, as the synthesized Codable conformance does.
struct EnvelopeJSON {
    var out: [UInt8] = [UInt8(ascii: "{")]

    mutating func key(_ k: StaticString) {
        if out.count > 1 { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    mutating func add(_ k: StaticString, _ v: String?) {
        guard let v else { return }
        key(k)
        out.append(UInt8(ascii: "\""))
        defer { out.append(UInt8(ascii: "\"")) }
        let plain = v.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
            return true
        }
        if plain == true {
            out.append(contentsOf: v.utf8)
            return
        }
        for b in v.utf8 {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [92, b]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
    }

    mutating func add(_ k: StaticString, _ v: Int) {
        key(k)
        out += String(v).utf8
    }

    mutating func add(_ k: StaticString, _ v: Bool) {
        key(k)
        out += (v ? "true" : "false").utf8
    }

    /// ISO 8601 in UTC to the second ("2026-11-30T11:49:26Z"), what
    /// JSONEncoder's `.iso8601` strategy writes and JSONDecoder reads.
    mutating func add(_ k: StaticString, _ v: Date?) {
        guard let v else { return }
        key(k)
        var t = time_t(v.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func digits(_ n: Int32, _ width: Int) {
            var div: Int32 = 1
            for _ in 1..<width { div *= 10 }
            var n = n
            while div > 0 {
                out.append(UInt8(48 + n / div % 10))
                n %= div
                div /= 10
            }
        }
        out.append(UInt8(ascii: "\""))
        digits(tm.tm_year + 1900, 4)
        out.append(UInt8(ascii: "-"))
        digits(tm.tm_mon + 1, 2)
        out.append(UInt8(ascii: "-"))
        digits(tm.tm_mday, 2)
        out.append(UInt8(ascii: "T"))
        digits(tm.tm_hour, 2)
        out.append(UInt8(ascii: ":"))
        digits(tm.tm_min, 2)
        out.append(UInt8(ascii: ":"))
        digits(tm.tm_sec, 2)
        out += Array("Z\"".utf8)
    }

    func finish() -> [UInt8] { out + [UInt8(ascii: "}")] }
}
