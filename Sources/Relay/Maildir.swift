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
    /// `bodyOffset` skips the body's first bytes (a header section the caller sent changed, in `header`).
    public func deliver(header: ByteBuffer, body: MessageBody, bodyOffset: Int = 0, to recipients: [Mailbox],
                        hostname: String) async throws -> String {
        let bytes = try await Array(header.readableBytesView) + body.allBytes().dropFirst(bodyOffset)
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
        try DurableFile.write(bytes, to: dir + "/new/" + name, via: dir + "/tmp/" + name)
        try DurableFile.syncDirectory(dir + "/new")
    }
}
