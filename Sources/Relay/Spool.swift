import Audit
import CChecksum
import Foundation
import NIOCore
import SMTPProtocol
import Synchronization
import Threads

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
///     free/      delivered message files (up to 256 KB, at most 128) that
///                new messages overwrite in place: no inode and no block is
///                freed and allocated again per message. On ext4 that was
///                most of the spool's cost (without a journal, allocating an
///                inode next to thousands freed in the last minutes scans
///                them all). The footer's checksum tells a file whose
///                overwrite a crash cut short.
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
    let free: String
    let committer: GroupCommitter
    private static let counter = Atomic<Int>(0)
    private static let processTag = UInt32.random(in: 0..<0x1000)

    public init(directory: String) throws {
        self.directory = directory
        tmp = directory + "/tmp"
        active = directory + "/active"
        corrupt = directory + "/corrupt"
        free = directory + "/free"
        for d in [directory, tmp, active, corrupt, free] {
            do {
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw RelayError.local("cannot create queue folder \(d): \(error.localizedDescription)")
            }
        }
        committer = try GroupCommitter(directory: active, tmp: tmp, free: free)
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

    /// "\nMXQ2:" + 16 hex digits of message length + ":" + 8 of envelope
    /// length + ":" + 8 of the CRC-32C of both + "\n". Files written before
    /// the checksum end in the 32-byte "\nMXQ1:" form, read as well.
    static let footerSize = 41
    static let footerSizeV1 = 32

    static func footer(message: Int, envelope: Int, crc: UInt32) -> [UInt8] {
        var out = Array("\nMXQ2:".utf8)
        out += upperHex(UInt64(message), width: 16).utf8
        out.append(58)
        out += upperHex(UInt64(envelope), width: 8).utf8
        out.append(58)
        out += upperHex(UInt64(crc), width: 8).utf8
        out.append(10)
        return out
    }

    struct Footer: Equatable {
        var message: Int
        var envelope: Int
        /// nil in a file written before the checksum.
        var crc: UInt32?
        var size: Int
    }

    /// The footer at the end of `tail` (the file's last bytes), if there is one.
    static func parseFooter(_ tail: [UInt8]) -> Footer? {
        func hex(_ b: ArraySlice<UInt8>) -> UInt64? { UInt64(String(decoding: b, as: UTF8.self), radix: 16) }
        if tail.count >= footerSize {
            let b = Array(tail.suffix(footerSize))
            if b.starts(with: Array("\nMXQ2:".utf8)), b[22] == 58, b[31] == 58, b[40] == 10,
               let m = hex(b[6..<22]), let e = hex(b[23..<31]), let c = hex(b[32..<40]) {
                return Footer(message: Int(m), envelope: Int(e), crc: UInt32(c), size: footerSize)
            }
        }
        guard tail.count >= footerSizeV1 else { return nil }
        let b = Array(tail.suffix(footerSizeV1))
        guard b.starts(with: Array("\nMXQ1:".utf8)), b[22] == 58, b[31] == 10, let m = hex(b[6..<22]), let e = hex(b[23..<31]) else { return nil }
        return Footer(message: Int(m), envelope: Int(e), crc: nil, size: footerSizeV1)
    }

    static func crc32c(_ crc: UInt32, _ raw: UnsafeRawBufferPointer) -> UInt32 {
        raw.isEmpty ? crc : mx_crc32c(crc, raw.baseAddress!, raw.count)
    }

    /// Stores a new message: `header` (the trace header) then `body` from
    /// `bodyOffset`, and its envelope, in one file. Returns once it is on
    /// disk; throws (and leaves nothing behind) otherwise.
    public func store(_ env: QueuedEnvelope, header: ByteBuffer, body: MessageBody, bodyOffset: Int = 0) async throws {
        try await committer.commit(to: messagePath(env.id), isNew: true) { fd, path in
            var crc: UInt32 = 0
            try header.withUnsafeReadableBytes { raw in
                crc = Self.crc32c(crc, raw)
                try Self.writeAll(fd, raw, path: path)
            }
            try body.forEachPieceBlocking(from: bodyOffset) { raw in
                crc = Self.crc32c(crc, raw)
                try Self.writeAll(fd, raw, path: path)
            }
            let json = Self.encode(env)
            json.withUnsafeBytes { crc = Self.crc32c(crc, $0) }
            try Self.writeAll(fd, json + Self.footer(message: env.size, envelope: json.count, crc: crc), path: path)
        }
    }

    /// Replaces a message's envelope durably (after a delivery attempt, hold, release).
    public func update(_ env: QueuedEnvelope) async throws {
        try await committer.commit(to: envelopePath(env.id), isNew: false) { fd, path in
            try Self.writeAll(fd, Self.encode(env), path: path)
        }
    }

    /// Removes a message: the message first, so a crash in between leaves
    /// a bare .env, which recovery deletes.
    public func remove(_ id: String) {
        unlink(messagePath(id))
        unlink(envelopePath(id))
    }

    /// Removes a delivered message later, on the committer's thread (it
    /// needs no waiting for): its file goes to free/ for reuse unless it is
    /// big (`size`, the envelope's). A crash before that delivers the
    /// message again; `drain()` makes sure a clean stop does not.
    public func removeLater(_ id: String, size: Int) {
        committer.removeLater(messagePath(id), recycle: size <= GroupCommitter.maxSpareSize)
        committer.removeLater(envelopePath(id), recycle: false)
    }

    /// Returns once every `removeLater` so far has been done.
    public func drain() async {
        await committer.drain()
    }

    public enum ReadError: Error { case missing, torn(String) }

    /// The envelope as committed with the message, checked against the
    /// file's size; with `verify`, the whole file against its checksum too
    /// (start-up recovery: a crash may have left a file whose sync never
    /// finished, with pages missing or, in a reused file, left over from
    /// the message it held before).
    func committedEnvelope(_ id: String, verify: Bool = false) throws(ReadError) -> QueuedEnvelope {
        let fd = open(messagePath(id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .missing }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        let tailSize = min(size, Self.footerSize)
        var tail = [UInt8](repeating: 0, count: tailSize)
        guard tail.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, tailSize, off_t(size - tailSize)) }) == tailSize,
              let foot = Self.parseFooter(tail) else { throw .torn("no footer (a write that never finished)") }
        let (m, e) = (foot.message, foot.envelope)
        guard m >= 0, e >= 0, m + e + foot.size == size else { throw .torn("size does not match the footer") }
        var json = [UInt8](repeating: 0, count: e)
        guard json.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, e, off_t(m)) }) == e,
              let env = try? Self.decode(Data(json)), env.size == m, env.id == id else { throw .torn("envelope unreadable") }
        if verify, let expected = foot.crc {
            var crc: UInt32 = 0
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            var offset = 0
            while offset < m + e {
                let n = min(buffer.count, m + e - offset)
                let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(offset)) }
                guard got == n else { throw .torn("short read") }
                buffer.withUnsafeBytes { crc = Self.crc32c(crc, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                offset += n
            }
            guard crc == expected else { throw .torn("checksum does not match (a write that never finished)") }
        }
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
        // Sessions may be storing already: this spool's own files in tmp/ stay.
        for name in (try? fm.contentsOfDirectory(atPath: tmp)) ?? [] where !committer.owns(name) { unlink("\(tmp)/\(name)") }
        // Spare files from the last run, as many as the committer keeps.
        var spares: [String] = []
        for name in (try? fm.contentsOfDirectory(atPath: free)) ?? [] {
            let path = "\(free)/\(name)"
            var st = stat()
            if spares.count < GroupCommitter.maxSpares && stat(path, &st) == 0 && Int(st.st_size) <= GroupCommitter.maxSpareSize {
                spares.append(path)
            } else {
                unlink(path)
            }
        }
        committer.adopt(spares)
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
                envelopes.append(latest(name, committed: try committedEnvelope(name, verify: true)))
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

/// A JSON object written byte by byte, keys in the order given; absent
/// optionals are left out, as the synthesized Codable conformance does.
struct EnvelopeJSON {
    var out: [UInt8] = [UInt8(ascii: "{")]

    mutating func key(_ k: StaticString) { JSONText.appendKey(k, to: &out) }

    mutating func add(_ k: StaticString, _ v: String?) {
        guard let v else { return }
        key(k)
        JSONText.appendQuoted(v, to: &out)
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
