// mxgate-fuzz: libFuzzer targets for everything that reads what a client
// or an admin writes. Built two ways:
//
//   scripts/fuzz.sh [TARGET] [SECONDS]   libFuzzer + AddressSanitizer
//                                        (MXGATE_FUZZ=1, --sanitize=fuzzer,address)
//   mxgate-fuzz TARGET FILE...           a plain build replays corpus files,
//                                        so the test suite runs every seed
//                                        and every crash ever found
//
// Targets: command (the SMTP command parser), session (the state machine
// driven by a byte stream, DATA and BDAT framing included), mime (header
// parser and MIME walker), policy (the policy-language loader), address
// (the address parsers), auth (DKIM-Signature, ARC and From fields, DMARC
// records: what a sender writes for authentication to read), milter (the
// milter packet decoder and the command and response parsers: what an MTA
// or a milter sends).
import Auth
import Classifier
import Foundation
import Heuristics
import MailMessage
import MilterProtocol
import NIOCore
import Policy
import SMTPProtocol

enum FuzzTarget: String, CaseIterable {
    case command, session, mime, policy, address, auth, milter

    func run(_ bytes: [UInt8]) {
        switch self {
        case .command: Self.command(bytes)
        case .session: Self.session(bytes)
        case .mime: Self.mime(bytes)
        case .policy: Self.policy(bytes)
        case .address: Self.address(bytes)
        case .auth: Self.auth(bytes)
        case .milter: Self.milter(bytes)
        }
    }

    static func command(_ bytes: [UInt8]) {
        switch CommandParser.parse(bytes) {
        case .success(let c): _ = "\(c)"
        case .failure(let r): var b = ByteBuffer(); r.encode(into: &b)
        }
    }

    /// Bytes as a client would send them: framed into lines, parsed, fed to
    /// the state machine (every check passes); DATA and BDAT text goes
    /// through the text decoder and the dot-stuffer, as in a session.
    static func session(_ bytes: [UInt8]) {
        var limits = SMTPLimits()
        limits.messageSize = 64 * 1024
        var machine = SessionStateMachine(configuration: .init(hostname: "mx.fuzz.example", limits: limits, tlsAvailable: true))
        var framer = CommandLineFramer(maxLength: limits.commandLineLength)
        var input = ByteBuffer(bytes: bytes)
        var steps = 0
        while steps < 10_000, machine.phase != .closed {
            steps += 1
            switch framer.next(&input) {
            case .needMore:
                return
            case .tooLong:
                _ = machine.error(.lineTooLong)
            case .line(let line):
                switch machine.receive(CommandParser.parse(line)) {
                case .checkHelo(let name, let extended): _ = machine.heloAccepted(name, extended: extended)
                case .checkMail(let path, let params): machine.mailAccepted(path, params)
                case .checkRecipient(let box, let params): machine.recipientAccepted(box, params)
                case .startData:
                    text(&input, mode: .dotTerminated, limits: limits)
                    machine.transactionEnded()
                case .receiveChunk(let size, let last):
                    var chunk = input.readSlice(length: min(size, input.readableBytes)) ?? ByteBuffer()
                    var decoder = MessageTextDecoder(mode: .chunked, maxSize: limits.messageSize,
                                                     maxLineLength: limits.textLineLength, bareNewline: .normalize)
                    var out = ByteBuffer()
                    _ = decoder.decode(&chunk, into: &out)
                    if last { decoder.finishChunked(into: &out); machine.transactionEnded() }
                case .discardChunk(let size, _): input.moveReaderIndex(forwardBy: min(size, input.readableBytes))
                case .startTLS: machine.tlsStarted()
                case .reply, .replyAndClose, .reset: break
                }
            }
        }
    }

    static func text(_ input: inout ByteBuffer, mode: MessageTextDecoder.Mode, limits: SMTPLimits) {
        for policy in [BareNewlinePolicy.reject, .normalize] {
            var copy = input
            var decoder = MessageTextDecoder(mode: mode, maxSize: limits.messageSize, maxLineLength: limits.textLineLength,
                                             bareNewline: policy)
            var out = ByteBuffer()
            let done = decoder.decode(&copy, into: &out)
            if policy == .reject { input = copy }
            // A session relays only a whole message the decoder found no fault in.
            guard done, decoder.violation == nil else { continue }
            // What would go downstream: only CRLF line ends, and no early end of data.
            var stuffed = ByteBuffer()
            var stuffer = DotStuffer()
            stuffer.stuff(out, into: &stuffed)
            stuffer.finish(into: &stuffed)
            let wire = Array(stuffed.readableBytesView)
            if out.readableBytes == 0 {
                // An empty text: the CRLF ending the DATA command line comes before the dot.
                precondition(wire == [46, 13, 10], "an empty text is just .CRLF")
                continue
            }
            precondition(wire.count >= 5 && wire.suffix(5) == [13, 10, 46, 13, 10], "the text must end with CRLF.CRLF")
            for i in wire.indices where wire[i] == 10 { precondition(i > 0 && wire[i - 1] == 13, "bare LF leaves mxgate") }
            for i in wire.indices.dropLast() where wire[i] == 13 { precondition(wire[i + 1] == 10, "bare CR leaves mxgate") }
            if let end = firstEnd(wire) { precondition(end == wire.count - 5, "an end of data before the end") }
        }
    }

    static func firstEnd(_ w: [UInt8]) -> Int? {
        guard w.count >= 5 else { return nil }
        for i in 0...(w.count - 5) where w[i] == 13 && w[i + 1] == 10 && w[i + 2] == 46 && w[i + 3] == 13 && w[i + 4] == 10 {
            return i
        }
        return nil
    }

    static func mime(_ bytes: [UInt8]) {
        _ = HeaderBlock(bytes).decodedFields
        var limits = MIMELimits()
        limits.depth = 8
        limits.parts = 64
        var walker = MIMEWalker(limits: limits)
        var i = 0
        while i < bytes.count {
            let n = min(bytes.count - i, 1 + (i % 97))
            walker.feed(bytes[i..<(i + n)])
            i += n
        }
        let s = walker.finish()
        for p in s.parts { _ = p.filename?.count }
        _ = s.urls.compactMap(URLExtractor.host)
        // What reads the summary: the heuristics and the classifier's features.
        let headers = HeaderBlock(bytes)
        _ = Heuristics.detect(HeuristicInput(headers: headers, mime: s, receivedAt: Date(timeIntervalSince1970: 1_800_000_000),
                                             localDomains: ["example.com"]))
        _ = MessageFeatures(headers: headers, summary: s, dimensionBits: 16)
    }

    static let policyDir: String = {
        let d = NSTemporaryDirectory() + "/mxgate-fuzz-policy-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d + "/policies", withIntermediateDirectories: true)
        return d
    }()

    static func policy(_ bytes: [UInt8]) {
        _ = FileManager.default.createFile(atPath: policyDir + "/policies/fuzz.policy", contents: Data(bytes))
        let identity = GatewayIdentity(hostname: "mx.fuzz.example", domains: ["example.com"])
        if let p = try? PolicyLoader.load(policies: policyDir + "/policies", base: policyDir, identity: identity) {
            let facts = SessionFacts(sessionID: "f", clientIP: "192.0.2.1", clientPort: 25)
            for stage in PolicyStage.allCases { _ = p.evaluate(stage, facts) }
        }
    }

    /// The input is a message: its header section goes through the DKIM and
    /// ARC parsers and their body hashers, each field's text through the
    /// DMARC record parser and the From address list reader.
    static func auth(_ bytes: [UInt8]) {
        let dkim = DKIMMessage(header: bytes)
        let arc = ARCChain(header: bytes)
        bytes.withUnsafeBytes { raw in
            dkim.feedBody(raw)
            arc.feedBody(raw)
        }
        dkim.finishBody()
        arc.finishBody()
        for field in HeaderBlock(bytes).fields {
            _ = DMARCRecord.parse(field.value)
            _ = AddressList.domains(in: field.value)
            _ = ARCChain.results(Array("\(field.name):\(field.value)".utf8)[...])
        }
    }

    /// The stream as a sequence of packets, each parsed both as a command
    /// and as a response, and what parsed encoded again and parsed back the same.
    static func milter(_ bytes: [UInt8]) {
        var d = MilterFrameDecoder()
        d.feed(bytes)
        while let packet = try? d.next() {
            if let c = try? MilterCommand.parse(code: packet.code, data: packet.data) {
                let again = c.encoded()
                var d2 = MilterFrameDecoder()
                d2.feed(again)
                if let p2 = try? d2.next(), let c2 = try? MilterCommand.parse(code: p2.code, data: p2.data) {
                    _ = "\(c2)"
                }
            }
            _ = try? MilterResponse.parse(code: packet.code, data: packet.data)
        }
    }

    static func address(_ bytes: [UInt8]) {
        let s = String(decoding: bytes, as: UTF8.self)
        _ = try? AddressParser.parseMailbox(s)
        _ = try? AddressParser.parseReversePath(Substring(s))
        _ = try? AddressParser.parseForwardPath(Substring(s))
    }
}

#if FUZZING
nonisolated(unsafe) let selected: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["MXGATE_FUZZ_TARGET"] ?? "command"
    guard let t = FuzzTarget(rawValue: name) else { fatalError("MXGATE_FUZZ_TARGET: one of \(FuzzTarget.allCases.map(\.rawValue))") }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selected.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Replays corpus files through a target: `mxgate-fuzz TARGET FILE|DIR...`.
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let target = FuzzTarget(rawValue: name) else {
            print("usage: mxgate-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIR...")
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
            let files = isDir.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for f in files {
                guard let data = FileManager.default.contents(atPath: f) else { continue }
                target.run(Array(data))
                count += 1
            }
        }
        print("\(name): \(count) input(s) replayed, no crash")
    }
}
#endif
