import Foundation
import NIOCore
import NIOPosix
import SMTPProtocol
import Synchronization

/// Local delivery into one Maildir per recipient (`DIR/<address>/new`), so
/// mxgate works with no other mail server. Each copy is written to tmp/,
/// fsync'd, renamed into new/ and the directory fsync'd: once `deliver`
/// returns, the message survives a crash.
public struct MaildirDelivery: Sendable {
    public let root: String
    private static let counter = Atomic<Int>(0)

    public init(root: String) { self.root = root }

    /// The folder for a recipient: the lower-cased address, with characters
    /// that could escape the root replaced.
    public func folder(for box: Mailbox) -> String {
        var name = box.description.lowercased()
        name = String(name.map { $0 == "/" || $0 == "\0" ? "_" : $0 })
        if name.hasPrefix(".") { name = "_" + name.dropFirst() }
        return root + "/" + name
    }

    /// Writes one copy per recipient and returns the file name used.
    public func deliver(header: ByteBuffer, body: MessageBody, to recipients: [Mailbox], hostname: String) async throws -> String {
        let bytes = try await Array(header.readableBytesView) + body.allBytes()
        let n = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let now = Date().timeIntervalSince1970
        let sec = Int(now)
        let usec = Int((now - Double(sec)) * 1_000_000)
        let safeHost = hostname.replacingOccurrences(of: "/", with: "\\057").replacingOccurrences(of: ":", with: "\\072")
        let name = "\(sec).M\(usec)P\(getpid())Q\(n).\(safeHost)"
        let folders = recipients.map { folder(for: $0) }
        try await NIOThreadPool.singleton.runIfActive {
            for dir in Set(folders) {
                try Self.write(bytes, into: dir, name: name)
            }
        }
        return name
    }

    private static func write(_ bytes: [UInt8], into dir: String, name: String) throws {
        let fm = FileManager.default
        for sub in ["tmp", "new", "cur"] {
            try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let tmp = dir + "/tmp/" + name
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
                let w = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw RelayError.local("cannot write \(tmp): \(String(cString: strerror(errno)))")
                }
                off += w
            }
        }
        guard fsync(fd) == 0 else { throw RelayError.local("fsync \(tmp): \(String(cString: strerror(errno)))") }
        guard rename(tmp, dir + "/new/" + name) == 0 else {
            throw RelayError.local("cannot move \(tmp) into new/: \(String(cString: strerror(errno)))")
        }
        ok = true
        let dfd = open(dir + "/new", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            defer { close(dfd) }
            guard fsync(dfd) == 0 else { throw RelayError.local("fsync \(dir)/new: \(String(cString: strerror(errno)))") }
        }
    }
}
