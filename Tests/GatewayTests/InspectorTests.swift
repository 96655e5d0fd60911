import Foundation
import Logging
import MailMessage
import NIOCore
import Policy
import Relay
import SMTPProtocol
import Synchronization
import Testing

@testable import Gateway

/// The inspection seam: analyzers of a stage run side by side, the message
/// text is read once for every streaming analyzer, findings come back in
/// the order the analyzers were listed, MIME readers see the walk's
/// summary, and symbols reach the policy's score.
struct InspectorTests {
    static let logger = Logger(label: "test")

    static func input(_ body: MessageBody? = nil) -> InspectionInput {
        var i = InspectionInput(facts: SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1), dnsBudget: 5,
                                logger: logger)
        i.body = body
        return i
    }

    /// Two analyzers that each wait (bounded) for the other to have started:
    /// run one after the other, neither would see the other.
    final class Rendezvous: Sendable {
        let arrived = Mutex(0)
        func meet() async -> Bool {
            arrived.withLock { $0 += 1 }
            for _ in 0..<500 {
                if arrived.withLock({ $0 }) >= 2 { return true }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return false
        }
    }

    struct Meeting: Analyzer {
        let name: String
        let stage = InspectionStage.connect
        let needs: AnalyzerNeeds = .envelope
        let rendezvous: Rendezvous
        func analyze(_ input: InspectionInput) async -> Findings {
            Findings(symbols: [Symbol(name: name, score: await rendezvous.meet() ? 1 : 0)])
        }
    }

    @Test func analyzersOfAStageRunConcurrently() async {
        let r = Rendezvous()
        let inspector = Inspector([Meeting(name: "A", rendezvous: r), Meeting(name: "B", rendezvous: r)])
        let found = await inspector.inspect(.connect, Self.input())
        #expect(found.symbols == [Symbol(name: "A", score: 1), Symbol(name: "B", score: 1)])
    }

    struct Country: Analyzer {
        let name = "country"
        let stage = InspectionStage.connect
        let needs: AnalyzerNeeds = .envelope
        let code: String
        let delay: Int
        func analyze(_ input: InspectionInput) async -> Findings {
            try? await Task.sleep(for: .milliseconds(delay))
            return Findings(facts: [.country(code)])
        }
    }

    @Test func findingsComeInTheAnalyzersOrderNotTheOrderTheyFinish() async {
        let inspector = Inspector([Country(code: "AA", delay: 200), Country(code: "BB", delay: 0)])
        var facts = SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1)
        for f in await inspector.inspect(.connect, Self.input()).facts { facts.apply(f) }
        #expect(facts.country == "BB")
        #expect(!inspector.has(.rcpt))
        #expect(await inspector.inspect(.rcpt, Self.input()).facts.isEmpty)
    }

    /// Records every piece it is fed: where it lies in memory and its bytes.
    final class Recorder: TextAnalyzer, @unchecked Sendable {
        let name: String
        let stage = InspectionStage.endOfData
        let needs: AnalyzerNeeds = .textStream
        let blocking: Bool
        var sinks: [Sink] = []
        init(_ name: String, blocking: Bool) {
            self.name = name
            self.blocking = blocking
        }
        func makeSink(_ input: InspectionInput) -> any TextSink {
            let s = Sink(blocks: blocking)
            sinks.append(s)
            return s
        }
        final class Sink: TextSink, @unchecked Sendable {
            let blocks: Bool
            var pieces: [(address: UnsafeRawPointer?, count: Int)] = []
            var bytes: [UInt8] = []
            var onLoopThread = false
            init(blocks: Bool) { self.blocks = blocks }
            func consume(_ piece: UnsafeRawBufferPointer) {
                pieces.append((piece.baseAddress.map { UnsafeRawPointer($0) }, piece.count))
                bytes += piece
            }
            func finish(readError: Error?) -> Findings {
                Findings(symbols: [Symbol(name: "bytes", score: Double(bytes.count))], warnings: readError.map { ["\($0)"] } ?? [])
            }
        }
    }

    @Test(arguments: [false, true])
    func theTextIsReadOnceForEveryStreamingAnalyzer(blocking: Bool) async throws {
        // 300 KB spilled to a file: read in several pieces.
        let body = MessageBody(memoryThreshold: 1024, tempDirectory: NSTemporaryDirectory())
        let text = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        try body.append(ByteBuffer(bytes: text))
        #expect(body.isSpilled)
        let a = Recorder("a", blocking: false), b = Recorder("b", blocking: blocking)
        let found = await Inspector([a, b]).inspect(.endOfData, Self.input(body))
        let sa = try #require(a.sinks.first), sb = try #require(b.sinks.first)
        #expect(sa.bytes == text && sb.bytes == text)
        #expect(sa.pieces.count > 1)
        // The same buffers, piece by piece: one read, handed to both.
        #expect(sa.pieces.map(\.address) == sb.pieces.map(\.address))
        #expect(found.symbols.map(\.score) == [300_000, 300_000])
    }

    @Test func aReadThatFailsIsReportedToEverySink() async throws {
        // A spill file shorter than its recorded length: the read stops with an error part-way.
        let path = NSTemporaryDirectory() + "inspector-short-\(UUID().uuidString)"
        defer { unlink(path) }
        try Data(repeating: 65, count: 100_000).write(to: URL(fileURLWithPath: path))
        let body = try MessageBody(readingFile: path, length: 200_000)
        let found = await Inspector([Recorder("a", blocking: false), Recorder("b", blocking: true)])
            .inspect(.endOfData, Self.input(body))
        #expect(found.warnings.count == 2)
    }

    struct URLCounter: Analyzer {
        let name = "urls"
        let stage = InspectionStage.endOfData
        let needs: AnalyzerNeeds = .mime
        func analyze(_ input: InspectionInput) async -> Findings {
            Findings(symbols: [Symbol(name: "URLS", score: Double(input.mime?.urls.count ?? -1))])
        }
    }

    @Test func mimeReadersRunAfterTheWalkAndSeeItsSummary() async throws {
        let body = MessageBody(memoryThreshold: 1 << 20, tempDirectory: NSTemporaryDirectory())
        try body.append(ByteBuffer(string: "Subject: x\r\n\r\nsee https://a.example/ and https://b.example/x\r\n"))
        let found = await Inspector([URLCounter(), MIMEAnalyzer()]).inspect(.endOfData, Self.input(body))
        #expect(found.symbols == [Symbol(name: "URLS", score: 2)])
        var facts = SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1)
        for f in found.facts { facts.apply(f) }
        #expect(facts.urls.count == 2)
    }

    @Test func symbolsCountInTheScoreAndTheReport() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("inspector-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let policies = dir.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: policies, withIntermediateDirectories: true)
        try "at data match spam-score >= 5 reject \"550 5.7.1 Spam\"\n".write(
            to: policies.appendingPathComponent("t.policy"), atomically: true, encoding: .utf8)
        let policy = try PolicyLoader.load(policies: policies.path, base: dir.path,
                                           identity: GatewayIdentity(hostname: "mx.example.com", domains: ["example.com"], addresses: []))
        var driver = PolicyDriver(policy: policy, gate: RelayGate(domains: ["example.com"]),
                                  facts: SessionFacts(sessionID: "t", clientIP: "192.0.2.1", clientPort: 1))
        #expect(driver.connect() == .proceed)
        #expect(driver.mail(.null, MailParameters()) == .proceed)
        let found = Findings(symbols: [Symbol(name: "TEST_A", score: 3), Symbol(name: "TEST_B", score: 2.5)])
        let verdict = driver.data(size: 10, headers: HeaderBlock(Array("Subject: x\r\n\r\n".utf8)), inspected: found)
        #expect(verdict == .refuse(SMTPReply(550, "5.7.1", "Spam"), rules: [], closes: false))
        #expect(driver.spamScore == 5.5)
        #expect(driver.symbolScores == ["TEST_A": 3, "TEST_B": 2.5])
    }
}
