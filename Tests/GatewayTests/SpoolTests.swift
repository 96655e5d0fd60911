import Foundation
import NIOCore
@testable import Relay
import Testing

struct SpoolTests {
    func fresh() throws -> (Spool, String) {
        let dir = NSTemporaryDirectory() + "/mxgate-spool-\(UUID().uuidString)"
        return (try Spool(directory: dir), dir)
    }

    func body(_ text: String) throws -> MessageBody {
        let b = MessageBody(memoryThreshold: 1 << 20, tempDirectory: NSTemporaryDirectory())
        try b.append(ByteBuffer(string: text))
        return b
    }

    @Test func storeReadUpdateRemove() async throws {
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let header = ByteBuffer(string: "Received: x\r\n")
        let text = "Subject: s\r\n\r\nbody\r\n"
        var env = QueuedEnvelope(id: Spool.newID(), sender: "a@b.example", recipients: [QueuedRecipient(address: "c@d.example")],
                                 size: header.readableBytes + text.utf8.count, messageID: nil, origin: "test")
        try await spool.store(env, header: header, body: body(text))
        #expect(try await spool.message(env.id).allBytes() == Array(("Received: x\r\n" + text).utf8))
        env.recipients[0].attempts = 3
        try await spool.update(env)
        #expect(spool.envelope(env.id)?.recipients[0].attempts == 3)
        #expect(spool.recover().envelopes.map(\.id) == [env.id])
        spool.remove(env.id)
        #expect(spool.envelope(env.id) == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/active").isEmpty)
    }

    /// A delivered message's file goes to free/ and the next message is
    /// written over it: the same inode, never a stale byte of the last
    /// message (a shorter one is cut to its length), and the spares survive
    /// a restart.
    @Test func deliveredFilesAreReused() async throws {
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func envelope(_ size: Int) -> QueuedEnvelope {
            QueuedEnvelope(id: Spool.newID(), sender: "a@b.example", recipients: [QueuedRecipient(address: "c@d.example")],
                           size: size, messageID: nil, origin: "test")
        }
        func inode(_ path: String) throws -> UInt64 {
            try #require(FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? UInt64)
        }
        let long = String(repeating: "x", count: 10_000) + "\r\n"
        let first = envelope(long.utf8.count)
        try await spool.store(first, header: ByteBuffer(), body: body(long))
        let firstInode = try inode(spool.messagePath(first.id))
        spool.removeLater(first.id, size: first.size)
        await spool.drain()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/free") == [first.id])
        #expect(spool.envelope(first.id) == nil)

        let second = envelope(6)
        try await spool.store(second, header: ByteBuffer(), body: body("short\n"))
        #expect(try inode(spool.messagePath(second.id)) == firstInode)
        #expect(try await spool.message(second.id).allBytes() == Array("short\n".utf8))
        let size = try #require(FileManager.default.attributesOfItem(atPath: spool.messagePath(second.id))[.size] as? Int)
        #expect(size < 1000)  // the rest of the longer message is cut off
        #expect(spool.recover().envelopes.map(\.id) == [second.id])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/free").isEmpty)

        // A big message's file is not kept.
        let big = envelope(300_000)
        try await spool.store(big, header: ByteBuffer(), body: body(String(repeating: "y", count: 300_000)))
        spool.removeLater(big.id, size: big.size)
        // A restart's recovery hands the spares left in free/ to the committer.
        spool.removeLater(second.id, size: second.size)
        await spool.drain()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/free") == [second.id])
        let again = try Spool(directory: dir)
        #expect(again.recover().envelopes.isEmpty)
        let third = envelope(6)
        try await again.store(third, header: ByteBuffer(), body: body("third\n"))
        #expect(try inode(again.messagePath(third.id)) == firstInode)
        #expect(try await again.message(third.id).allBytes() == Array("third\n".utf8))
    }

    /// Recovery runs beside sessions that already store messages: it
    /// empties tmp/ of what an earlier run left, not of this spool's own
    /// files being written.
    @Test func recoveryLeavesFilesBeingWrittenAlone() throws {
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mine = dir + "/tmp/" + spool.committer.tag + "00000000000000AA.1"
        let left = dir + "/tmp/00000000000000BB.1"
        for path in [mine, left] { #expect(FileManager.default.createFile(atPath: path, contents: Data("x".utf8))) }
        _ = spool.recover()
        #expect(FileManager.default.fileExists(atPath: mine))
        #expect(!FileManager.default.fileExists(atPath: left))
    }

    /// Recovery reads every message file whole against its checksum: a page
    /// a crash left unwritten (or left over from the file's last message)
    /// sends the file to corrupt/, never to a recipient. Files from before
    /// the checksum (the 32-byte MXQ1 footer) still read.
    @Test func recoveryChecksTheChecksum() async throws {
        #expect(Array("123456789".utf8).withUnsafeBytes { Spool.crc32c(0, $0) } == 0xE306_9283)  // RFC 3720's check value
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = String(repeating: "line of text\r\n", count: 1000)
        let env = QueuedEnvelope(id: Spool.newID(), sender: "a@b.example", recipients: [QueuedRecipient(address: "c@d.example")],
                                 size: text.utf8.count, messageID: nil, origin: "test")
        try await spool.store(env, header: ByteBuffer(), body: body(text))
        let fd = open(spool.messagePath(env.id), O_WRONLY)
        #expect(pwrite(fd, "X", 1, 5000) == 1)
        close(fd)
        #expect(spool.envelope(env.id)?.id == env.id)  // the queue tools read envelopes without the check
        let (found, problems) = spool.recover()
        #expect(found.isEmpty)
        #expect(problems.count == 1 && problems[0].contains("checksum"))
        #expect(FileManager.default.fileExists(atPath: dir + "/corrupt/" + env.id))

        let old = QueuedEnvelope(id: Spool.newID(), sender: "a@b.example", recipients: [QueuedRecipient(address: "c@d.example")],
                                 size: 6, messageID: nil, origin: "test")
        let json = Spool.encode(old)
        var file = Array("hello\n".utf8) + json
        file += Array("\nMXQ1:\(String(repeating: "0", count: 15))6:\(String(format: "%08X", json.count))\n".utf8)
        #expect(FileManager.default.createFile(atPath: spool.messagePath(old.id), contents: Data(file)))
        #expect(spool.recover().envelopes.map(\.id) == [old.id])
        #expect(try await spool.message(old.id).allBytes() == Array("hello\n".utf8))
    }

    /// The envelope JSON is written by hand: whatever it holds (quotes,
    /// backslashes, control characters, UTF-8, absent optionals, dates) must
    /// read back exactly as JSONEncoder's own encoding of it does.
    @Test func envelopeJSONReadsBackLikeJSONEncoders() async throws {
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let odd = "q\"b\\s/c\u{01}\t\r\nü€😀\u{7f}"
        var env = QueuedEnvelope(id: Spool.newID(), sender: "a\"x@b.example",
                                 recipients: [QueuedRecipient(address: "c@d.example", orcpt: "rfc822;\(odd)", notify: "SUCCESS,FAILURE"),
                                              QueuedRecipient(address: "e@f.example")],
                                 size: 5, messageID: "<\(odd)@x>", origin: "helo [::1]")
        env.ret = "HDRS"
        env.smtpUTF8 = true
        env.held = true
        env.arrival = Date(timeIntervalSince1970: 1_764_503_366.75)
        env.nextAttempt = Date(timeIntervalSince1970: 86_399)
        env.recipients[0].attempts = 12
        env.recipients[0].status = .failed
        env.recipients[0].lastReply = "550 5.1.1 \(odd)"
        env.recipients[0].lastAttempt = Date(timeIntervalSince1970: 951_782_400)  // 2000-02-29
        env.recipients[0].remoteHost = "mx.example"
        env.recipients[0].successReported = true
        try await spool.store(env, header: ByteBuffer(), body: body("hello"))
        try await spool.update(env)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let reference = try decoder.decode(QueuedEnvelope.self, from: encoder.encode(env))
        for got in [try #require(spool.envelope(env.id)), try #require(spool.recover().envelopes.first)] {
            #expect(got.id == reference.id && got.sender == reference.sender && got.size == reference.size)
            #expect(got.arrival == reference.arrival && got.nextAttempt == reference.nextAttempt)
            #expect(got.arrival == Date(timeIntervalSince1970: 1_764_503_366))
            #expect(got.ret == "HDRS" && got.envid == nil && got.body == nil && got.smtpUTF8 && got.held && !got.delayWarned)
            #expect(got.messageID == reference.messageID && got.origin == reference.origin)
            #expect(got.recipients == reference.recipients)
            #expect(got.recipients[0].lastReply == "550 5.1.1 \(odd)")
        }
    }

    /// What a crash can leave: a torn message file (never acknowledged), a
    /// state file without its message, leftovers in tmp/, a torn state file.
    @Test func recoveryKeepsWhatWasCommittedOnly() async throws {
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func store(_ text: String) async throws -> QueuedEnvelope {
            let env = QueuedEnvelope(id: Spool.newID(), sender: "", recipients: [QueuedRecipient(address: "c@d.example")],
                                     size: text.utf8.count, messageID: nil, origin: "test")
            try await spool.store(env, header: ByteBuffer(), body: body(text))
            return env
        }
        let good = try await store("Subject: good\r\n\r\nx\r\n")
        let torn = try await store("Subject: torn\r\n\r\nx\r\n")
        let tornState = try await store("Subject: state\r\n\r\nx\r\n")
        // Torn message file: cut in the middle of its envelope.
        let tornPath = dir + "/active/" + torn.id
        let size = try FileManager.default.attributesOfItem(atPath: tornPath)[.size] as! Int
        #expect(truncate(tornPath, off_t(size - 20)) == 0)
        try "{\"id\":\"ABC\"}".write(toFile: dir + "/active/00000000000000AA.env", atomically: false, encoding: .utf8)
        try "half".write(toFile: dir + "/tmp/00000000000000BB", atomically: false, encoding: .utf8)
        try "{\"recipients\":[".write(toFile: dir + "/active/\(tornState.id).env", atomically: false, encoding: .utf8)

        let (envelopes, problems) = spool.recover()
        #expect(Set(envelopes.map(\.id)) == [good.id, tornState.id])
        #expect(envelopes.first { $0.id == tornState.id }?.recipients[0].status == .pending)
        #expect(problems.count == 1 && problems[0].hasPrefix(torn.id))
        #expect(FileManager.default.fileExists(atPath: dir + "/corrupt/" + torn.id))
        #expect(!FileManager.default.fileExists(atPath: dir + "/active/00000000000000AA.env"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/tmp").isEmpty)
    }

    /// Many sessions at once share syncs: every store returns, every file reads back.
    @Test func concurrentStoresAllCommit() async throws {
        let (spool, dir) = try fresh()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<50 {
                group.addTask {
                    let text = "Subject: \(i)\r\n\r\nmessage \(i)\r\n"
                    let env = QueuedEnvelope(id: Spool.newID(), sender: "a@b.example", recipients: [QueuedRecipient(address: "c@d.example")],
                                             size: text.utf8.count, messageID: "<\(i)@x>", origin: "test")
                    try await spool.store(env, header: ByteBuffer(), body: self.body(text))
                    return env.id
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(ids).count == 50)
        #expect(spool.recover().envelopes.count == 50)
        for id in ids { #expect(try await spool.message(id).allBytes().count == spool.envelope(id)!.size) }
    }
}
