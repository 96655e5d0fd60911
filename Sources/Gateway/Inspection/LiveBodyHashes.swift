import Auth
import MailMessage
import Relay

/// A text analyzer whose work on the text is hashing the body (DKIM, ARC):
/// it can do it while the message streams in, given the header section.
protocol BodyHashingAnalyzer: TextAnalyzer {
    associatedtype Message: BodyHashing
    func makeMessage(header: [UInt8]) -> Message
    /// After the text: the key lookups and signature checks, within `timeout` a query.
    func verify(_ message: Message, timeout: Double?) async -> Findings
}

extension BodyHashingAnalyzer {
    /// The message the session hashed as it arrived, or else one hashed in the inspection's read.
    func makeSink(_ input: InspectionInput) -> any TextSink {
        let timeout = input.dnsQueryTimeout
        if let live = input.liveText?.message(for: name) as? Message {
            return BodyHashSink(live, hashed: true) { await self.verify($0, timeout: timeout) }
        }
        return BodyHashSink(makeMessage(header: input.headerBytes ?? []), hashed: false) { await self.verify($0, timeout: timeout) }
    }
}

/// DKIM's and ARC's body hashes computed while DATA (or BDAT) streams in:
/// the session's `MessageBody` shows this every stored piece; once the
/// header section is whole, each body-hashing analyzer's message is made
/// from it and fed the rest as it comes. At end of data the analyzers take
/// their message from here. A header section that does not end within
/// `limit` bytes (as the end of data reads it) leaves the work to the
/// inspection's read, which then comes to the same result.
final class LiveBodyHashes: TextObserver, @unchecked Sendable {
    // Fed on the session's task, then read once at its end of data.
    private let analyzers: [any BodyHashingAnalyzer]
    private let limit: Int
    private var header: [UInt8] = []
    private var messages: [String: any BodyHashing]?
    private var gaveUp = false
    private var finished = false

    init(_ analyzers: [any BodyHashingAnalyzer], limit: Int) {
        self.analyzers = analyzers
        self.limit = limit
    }

    func observe(_ piece: UnsafeRawBufferPointer) {
        if let messages {
            for m in messages.values where m.hashesBody { m.feedBody(piece) }
            return
        }
        guard !gaveUp else { return }
        let searched = max(0, header.count - 2)
        header += piece
        guard let bounds = HeaderSection.bounds(header, from: searched), bounds.bodyStart <= limit else {
            if header.count > limit {
                gaveUp = true
                header = []
            }
            return
        }
        let head = Array(header[..<bounds.bodyStart])
        var made: [String: any BodyHashing] = [:]
        for a in analyzers { made[a.name] = a.makeMessage(header: head) }
        let rest = header[bounds.bodyStart...]
        header = []
        rest.withUnsafeBytes { raw in for m in made.values where m.hashesBody { m.feedBody(raw) } }
        messages = made
    }

    /// The message of the analyzer `name`, its whole body hashed; nil when
    /// the header section did not end in time.
    func message(for name: String) -> (any BodyHashing)? {
        guard let messages else { return nil }
        if !finished {
            for m in messages.values { m.finishBody() }
            finished = true
        }
        return messages[name]
    }
}
