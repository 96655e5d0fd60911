import NIOCore
import Testing

@testable import SMTPProtocol

struct CommandLineFramerTests {
    func lines(_ input: String, max: Int = 512, chunk: Int) -> [String] {
        var framer = CommandLineFramer(maxLength: max)
        var buffer = ByteBuffer()
        var out: [String] = []
        let bytes = Array(input.utf8)
        var i = 0
        while i < bytes.count {
            buffer.writeBytes(bytes[i..<min(i + chunk, bytes.count)])
            i += chunk
            loop: while true {
                switch framer.next(&buffer) {
                case .line(let l): out.append(String(buffer: l))
                case .tooLong: out.append("<too long>")
                case .needMore: break loop
                }
            }
        }
        return out
    }

    @Test(arguments: [1, 2, 3, 7, 1000])
    func sameLinesWhateverTheChunking(chunk: Int) {
        let input = "EHLO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\nDATA\r\n"
        #expect(lines(input, chunk: chunk) == ["EHLO a", "MAIL FROM:<a@b.c>", "RCPT TO:<d@e.f>", "DATA"])
    }

    @Test(arguments: [1, 5, 100, 10000])
    func overlongLineIsDiscardedNotBuffered(chunk: Int) {
        let long = String(repeating: "x", count: 5000)
        let input = "NOOP\r\n\(long)\r\nQUIT\r\n"
        #expect(lines(input, max: 512, chunk: chunk) == ["NOOP", "<too long>", "QUIT"])
    }

    @Test func bufferNeverHoldsMoreThanOneLine() {
        var framer = CommandLineFramer(maxLength: 512)
        var buffer = ByteBuffer()
        for _ in 0..<100 {
            buffer.writeString(String(repeating: "y", count: 1000))
            #expect(framer.next(&buffer) == .needMore)
            #expect(buffer.readableBytes <= 1000)
        }
        buffer.writeString("\r\n")
        #expect(framer.next(&buffer) == .tooLong)
    }
}

struct MessageTextDecoderTests {
    /// Feeds `input` in chunks of `chunk` bytes; returns (text, finished, rest, decoder).
    func decode(_ input: [UInt8], chunk: Int, policy: BareNewlinePolicy = .reject, maxSize: Int = 1 << 20,
                mode: MessageTextDecoder.Mode = .dotTerminated) -> ([UInt8], Bool, [UInt8], MessageTextDecoder) {
        var d = MessageTextDecoder(mode: mode, maxSize: maxSize, maxLineLength: 1000, bareNewline: policy)
        var out = ByteBuffer()
        var buffer = ByteBuffer()
        var i = 0
        var finished = false
        while i < input.count && !finished {
            buffer.writeBytes(input[i..<min(i + chunk, input.count)])
            i += chunk
            finished = d.decode(&buffer, into: &out)
        }
        var rest = Array(buffer.readableBytesView)
        if i < input.count { rest += input[i...] }
        return (Array(out.readableBytesView), finished, rest, d)
    }

    @Test(arguments: [1, 2, 3, 5, 64, 4096])
    func endOfDataAndUnstuffing(chunk: Int) {
        let wire = Array("Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n".utf8)
        let (text, done, rest, d) = decode(wire, chunk: chunk)
        #expect(done)
        #expect(String(decoding: text, as: UTF8.self) == "Subject: x\r\n\r\n.leading dot\r\n")
        #expect(String(decoding: rest, as: UTF8.self) == "QUIT\r\n")
        #expect(d.violation == nil)
    }

    /// SMTP smuggling (CVE-2023-51764..6): none of these look-alikes ends the
    /// message; only the real CRLF.CRLF later does.
    static let lookalikes: [String] = [
        "\n.\n", "\n.\r\n", "\r.\r", "\r.\n", "\r\n.\n", "\r\n.\r", "\r\n.\r\r\n", "\r\r\n.\r\r\n",
        "\n.\r\r\n", "\r\n\0.\r\n", "\r\n.\0\r\n", "\r\n \r\n.\n",
    ]

    @Test(arguments: lookalikes)
    func smugglingLookalikesDoNotEndData(_ fake: String) {
        let wire = Array("a\(fake)MAIL FROM:<evil@x.example>\r\n.\r\n".utf8)
        for chunk in [1, 3, 1000] {
            let (text, done, rest, _) = decode(wire, chunk: chunk)
            #expect(done)
            #expect(rest.isEmpty, "ended early on \(fake.debugDescription)")
            #expect(String(decoding: text, as: UTF8.self).contains("MAIL FROM:<evil@x.example>"))
        }
    }

    @Test(arguments: lookalikes)
    func normalizedTextHasNoBareLineEnds(_ fake: String) {
        let wire = Array("a\(fake)b\r\n.\r\n".utf8)
        let (text, done, _, d) = decode(wire, chunk: 1, policy: .normalize)
        #expect(done)
        #expect(d.violation == nil)
        // Every CR is followed by LF and every LF preceded by CR.
        for (i, b) in text.enumerated() {
            if b == 13 { #expect(i + 1 < text.count && text[i + 1] == 10) }
            if b == 10 { #expect(i > 0 && text[i - 1] == 13) }
        }
    }

    @Test func bareLineEndsAreRejectedByDefault() {
        let (_, done, _, d) = decode(Array("a\nb\r\n.\r\n".utf8), chunk: 4)
        #expect(done)
        #expect(d.violation == .bareNewline)
    }

    @Test func sizeLimitStopsStoring() {
        let body = String(repeating: "0123456789\r\n", count: 1000)
        let (text, done, _, d) = decode(Array((body + ".\r\n").utf8), chunk: 100, maxSize: 500)
        #expect(done)
        #expect(d.violation == .messageTooBig)
        #expect(text.count <= 500)
        #expect(d.size == 12000)
    }

    @Test func longLineIsFlagged() {
        let (_, done, _, d) = decode(Array((String(repeating: "x", count: 1200) + "\r\n.\r\n").utf8), chunk: 7)
        #expect(done)
        #expect(d.violation == .textLineTooLong)
    }

    @Test func chunkedModeKeepsDotsAndNeverEnds() {
        let wire = Array("a\r\n.\r\n..b\r\n".utf8)
        let (text, done, _, d) = decode(wire, chunk: 2, mode: .chunked)
        #expect(!done)
        #expect(text == wire)
        #expect(d.violation == nil)
    }

    @Test func chunkedModeCRAtTheEndIsBare() {
        var d = MessageTextDecoder(mode: .chunked, maxSize: 100, maxLineLength: 1000, bareNewline: .reject)
        var b = ByteBuffer(string: "abc\r")
        var out = ByteBuffer()
        _ = d.decode(&b, into: &out)
        d.finishChunked(into: &out)
        #expect(d.violation == .bareNewline)
    }
}

struct DotStufferTests {
    @Test(arguments: [1, 2, 5, 100])
    func stuffsLeadingDotsAcrossChunks(chunk: Int) {
        let text = Array(".start\r\nmid\r\n.\r\n..two\r\nend".utf8)
        var s = DotStuffer()
        var out = ByteBuffer()
        var i = 0
        while i < text.count {
            s.stuff(ByteBuffer(bytes: text[i..<min(i + chunk, text.count)]), into: &out)
            i += chunk
        }
        s.finish(into: &out)
        #expect(String(buffer: out) == "..start\r\nmid\r\n..\r\n...two\r\nend\r\n.\r\n")
    }

    @Test func roundTripThroughDecoder() {
        let original = "Subject: t\r\n\r\n.\r\n..\r\n. x\r\nlast\r\n"
        var s = DotStuffer()
        var wire = ByteBuffer()
        s.stuff(ByteBuffer(string: original), into: &wire)
        s.finish(into: &wire)
        var d = MessageTextDecoder(mode: .dotTerminated, maxSize: 1000, maxLineLength: 1000, bareNewline: .reject)
        var out = ByteBuffer()
        #expect(d.decode(&wire, into: &out))
        #expect(String(buffer: out) == original)
    }
}

/// The decoder and stuffer copy ordinary lines in runs; these tests hold
/// them to a plain byte-at-a-time reference on random text split at random
/// points, so the fast paths can never change what a message becomes.
struct FramingReferenceTests {
    /// The byte-at-a-time decoder the run-copying one replaced.
    struct ReferenceDecoder {
        enum State { case lineStart, mid, cr, dot, dotCR }
        let dotTerminated: Bool, normalize: Bool, maxSize: Int, maxLine: Int
        var state: State
        var size = 0, lineLength = 0
        var bare = false, tooLong = false, oversize = false
        var out: [UInt8] = []

        init(dotTerminated: Bool, normalize: Bool, maxSize: Int, maxLine: Int) {
            self.dotTerminated = dotTerminated
            self.normalize = normalize
            self.maxSize = maxSize
            self.maxLine = maxLine
            state = dotTerminated ? .lineStart : .mid
        }

        mutating func emit(_ b: [UInt8]) {
            size += b.count
            if size > maxSize { oversize = true } else { out += b }
        }
        mutating func crlf() { lineLength = 0; emit([13, 10]) }
        mutating func sawBare() { bare = true; if normalize { crlf() } }

        /// Returns the bytes consumed when the end of data is reached.
        mutating func feed(_ input: [UInt8]) -> Int? {
            var i = 0
            while i < input.count {
                let b = input[i]
                switch state {
                case .mid:
                    if b == 13 { state = .cr } else if b == 10 { sawBare() } else {
                        emit([b])
                        lineLength += 1
                        if lineLength + 2 > maxLine { tooLong = true }
                    }
                    i += 1
                case .cr:
                    if b == 10 { i += 1; crlf(); state = dotTerminated ? .lineStart : .mid } else { sawBare(); state = .mid }
                case .lineStart:
                    if b == UInt8(ascii: ".") { i += 1; state = .dot } else { state = .mid }
                case .dot:
                    if b == 13 { i += 1; state = .dotCR } else { state = .mid }
                case .dotCR:
                    if b == 10 { return i + 1 }
                    sawBare()
                    state = .mid
                }
            }
            return nil
        }
    }

    static let alphabet: [[UInt8]] = [Array("abc".utf8), [13, 10], [13, 10], [13, 10], [UInt8(ascii: ".")], [13], [10],
                                      Array(String(repeating: "x", count: 40).utf8), Array("\r\n.\r\n".utf8)]

    @Test(arguments: 0..<40)
    func decoderMatchesReference(seed: Int) {
        var rng = SplitMix(seed: UInt64(seed))
        for mode in [MessageTextDecoder.Mode.dotTerminated, .chunked] {
            for policy in [BareNewlinePolicy.reject, .normalize] {
                var input: [UInt8] = []
                for _ in 0..<(20 + Int(rng.next() % 200)) { input += Self.alphabet[Int(rng.next() % UInt64(Self.alphabet.count))] }
                let maxSize = 50 + Int(rng.next() % 2000), maxLine = 20 + Int(rng.next() % 60)
                var ref = ReferenceDecoder(dotTerminated: mode == .dotTerminated, normalize: policy == .normalize,
                                           maxSize: maxSize, maxLine: maxLine)
                let refEnd = ref.feed(input)
                var d = MessageTextDecoder(mode: mode, maxSize: maxSize, maxLineLength: maxLine, bareNewline: policy)
                var out = ByteBuffer()
                var pending = ByteBuffer()
                var fed = 0
                var end: Int?
                while fed < input.count && end == nil {
                    let n = min(input.count - fed, 1 + Int(rng.next() % 64))
                    pending.writeBytes(input[fed..<fed + n])
                    fed += n
                    if d.decode(&pending, into: &out) { end = fed - pending.readableBytes }
                }
                #expect(end == refEnd, "seed \(seed) \(mode) \(policy)")
                #expect(d.size == ref.size && d.oversize == ref.oversize && d.sawBareNewline == ref.bare && d.lineTooLong == ref.tooLong,
                        "seed \(seed) \(mode) \(policy)")
                if !ref.oversize { #expect(Array(out.readableBytesView) == ref.out, "seed \(seed) \(mode) \(policy)") }
            }
        }
    }

    @Test(arguments: 0..<40)
    func stufferMatchesReference(seed: Int) {
        var rng = SplitMix(seed: UInt64(seed) &+ 1000)
        var text: [UInt8] = []
        for _ in 0..<(10 + Int(rng.next() % 200)) { text += Self.alphabet[Int(rng.next() % UInt64(Self.alphabet.count))] }
        // Reference: a dot at the start of any line (after an LF, or first) is doubled.
        var expected: [UInt8] = []
        var atStart = true
        for b in text {
            if atStart && b == UInt8(ascii: ".") { expected.append(b) }
            expected.append(b)
            atStart = b == 10
        }
        if text.last != 10 { expected += [13, 10] }
        expected += Array(".\r\n".utf8)
        var s = DotStuffer()
        var out = ByteBuffer()
        var i = 0
        while i < text.count {
            let n = min(text.count - i, 1 + Int(rng.next() % 50))
            let piece = ByteBuffer(bytes: text[i..<i + n])
            // Half the pieces try the no-copy path first, as the relay does.
            if rng.next() % 2 == 0 && s.passThrough(piece) {
                out.writeImmutableBuffer(piece)
            } else {
                s.stuff(piece, into: &out)
            }
            i += n
        }
        s.finish(into: &out)
        #expect(Array(out.readableBytesView) == expected, "seed \(seed)")
    }
}

/// A small seeded generator, so a failing case can be replayed by its seed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
