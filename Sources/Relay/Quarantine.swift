import Foundation
import NIOCore
import NIOPosix

/// What is kept beside a quarantined message: who sent it, to whom, and why
/// it was held, so an admin can decide without opening the message.
public struct QuarantineEntry: Codable, Sendable {
    public var id: String
    public var time: String
    public var session: String
    public var clientIP: String
    public var helo: String?
    public var mailFrom: String
    public var rcptTo: [String]
    public var messageID: String?
    public var size: Int
    public var rules: [String]
    public var reason: String?
    public var spamScore: Double?
    /// The decoded Subject, for the console's list and search (absent in entries older than it).
    public var subject: String?

    public init(id: String, time: String, session: String, clientIP: String, helo: String?, mailFrom: String, rcptTo: [String],
                messageID: String?, size: Int, rules: [String], reason: String?, spamScore: Double?) {
        self.id = id
        self.time = time
        self.session = session
        self.clientIP = clientIP
        self.helo = helo
        self.mailFrom = mailFrom
        self.rcptTo = rcptTo
        self.messageID = messageID
        self.size = size
        self.rules = rules
        self.reason = reason
        self.spamScore = spamScore
    }

    enum CodingKeys: String, CodingKey {
        case id, time, session
        case clientIP = "client_ip"
        case helo
        case mailFrom = "mail_from"
        case rcptTo = "rcpt_to"
        case messageID = "message_id"
        case size, rules, reason, subject
        case spamScore = "spam_score"
    }
}

/// Durable storage for held messages: `DIR/ID.eml` (the message as it would
/// have been delivered) and `DIR/ID.json` (the envelope and verdict), each
/// written to a temporary name, fsync'd, renamed, and the folder fsync'd
/// before the client is told 250.
public struct QuarantineStore: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func store(header: ByteBuffer, body: MessageBody, bodyOffset: Int = 0, entry: QuarantineEntry) async throws {
        let message = try await Array(header.readableBytesView) + body.allBytes().dropFirst(bodyOffset)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json = Array(try encoder.encode(entry)) + [10]
        let dir = directory
        try await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try DurableFile.write(message, to: "\(dir)/\(entry.id).eml")
            try DurableFile.write(json, to: "\(dir)/\(entry.id).json")
            try DurableFile.syncDirectory(dir)
        }
    }
}

/// Write-to-temp, fsync, rename: the way every file mxgate promises to keep is written.
public enum DurableFile {
    /// Writes `bytes` to `tmp` (default: path + ".tmp"), fsyncs, renames to `path`.
    public static func write(_ bytes: [UInt8], to path: String, via temporary: String? = nil) throws {
        let tmp = temporary ?? path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RelayError.local("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(tmp) }
        }
        try bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw RelayError.local("cannot write \(tmp): \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
        guard fsync(fd) == 0 else { throw RelayError.local("fsync \(tmp): \(String(cString: strerror(errno)))") }
        guard rename(tmp, path) == 0 else { throw RelayError.local("cannot rename \(tmp): \(String(cString: strerror(errno)))") }
        ok = true
    }

    public static func syncDirectory(_ dir: String) throws {
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw RelayError.local("cannot open \(dir): \(String(cString: strerror(errno)))") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw RelayError.local("fsync \(dir): \(String(cString: strerror(errno)))") }
    }
}
