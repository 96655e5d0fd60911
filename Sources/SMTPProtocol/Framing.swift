import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Splits the command stream into lines without ever holding more than one
/// line's worth of bytes: an over-long line is discarded as it arrives and
/// reported once its end is seen (RFC 5321 §4.5.3.1.4).
public struct CommandLineFramer: Sendable {
    public enum Output: Equatable {
        case line(ByteBuffer)
        case tooLong
        case needMore
    }

    public var maxLength: Int
    private var discarding = false

    public init(maxLength: Int) { self.maxLength = maxLength }

    /// Commands end in CRLF; a bare LF is accepted as a line end here because
    /// commands are re-encoded, never passed through (message text is strict).
    public mutating func next(_ buffer: inout ByteBuffer) -> Output {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > maxLength {
                buffer.moveReaderIndex(to: buffer.writerIndex)
                discarding = true
            }
            return .needMore
        }
        let lineLength = lf - view.startIndex
        if discarding {
            buffer.moveReaderIndex(forwardBy: lineLength + 1)
            discarding = false
            return .tooLong
        }
        var contentLength = lineLength
        if contentLength > 0, view[lf - 1] == UInt8(ascii: "\r") { contentLength -= 1 }
        if contentLength + 2 > maxLength {
            buffer.moveReaderIndex(forwardBy: lineLength + 1)
            return .tooLong
        }
        let line = buffer.getSlice(at: buffer.readerIndex, length: contentLength)!
        buffer.moveReaderIndex(forwardBy: lineLength + 1)
        return .line(line)
    }
}

/// What to do with a CR or LF that is not part of a CRLF pair in message text.
/// Both choices keep bare line ends away from the downstream, which is what
/// defeats SMTP smuggling (CVE-2023-51764).
public enum BareNewlinePolicy: String, Sendable, Hashable {
    /// Receive the whole message, then refuse it with 550 5.6.2
    /// (Postfix's `smtpd_forbid_bare_newline = reject`).
    case reject
    /// Turn each bare CR or LF into CRLF. A dot after a bare line end is kept
    /// as text and later dot-stuffed, so it can never end the message.
    case normalize
}

/// Decodes message text as it streams in: DATA's dot-transparency and
/// end-of-data marker (RFC 5321 §4.5.2), or BDAT chunks (RFC 3030), with the
/// size and line-length limits enforced byte by byte so nothing over the
/// limit is ever stored.
///
/// Output is always CRLF-only text without dot-stuffing; only the exact
/// sequence CRLF "." CRLF ends DATA.
public struct MessageTextDecoder: Sendable {
    public enum Mode: Sendable { case dotTerminated, chunked }

    private enum State { case lineStart, mid, cr, dot, dotCR }

    public let mode: Mode
    public let maxSize: Int
    public let maxLineLength: Int
    public let bareNewline: BareNewlinePolicy

    /// Content bytes seen (stored or not), for the SIZE limit and the audit record.
    public private(set) var size = 0
    public private(set) var oversize = false
    public private(set) var sawBareNewline = false
    public private(set) var lineTooLong = false
    private var state: State
    private var lineLength = 0

    public init(mode: Mode, maxSize: Int, maxLineLength: Int, bareNewline: BareNewlinePolicy) {
        self.mode = mode
        self.maxSize = maxSize
        self.maxLineLength = maxLineLength
        self.bareNewline = bareNewline
        self.state = mode == .dotTerminated ? .lineStart : .mid
    }

    /// The reply the message deserves once its end is reached, if it broke a rule.
    public var violation: SMTPReply? {
        if oversize { return .messageTooBig }
        if sawBareNewline && bareNewline == .reject { return .bareNewline }
        if lineTooLong { return .textLineTooLong }
        return nil
    }

    /// Consumes input, appending decoded text to `output`. Returns true once
    /// the end-of-data line has been consumed (never in chunked mode); bytes
    /// after it stay in `input` (pipelined commands).
    ///
    /// Ordinary lines (text, then CRLF) pass through unchanged, so they are
    /// only measured and copied out in long runs; anything else (a stuffed
    /// or final dot, a bare CR or LF, a line split across reads) goes
    /// through `step` one state change at a time.
    public mutating func decode(_ input: inout ByteBuffer, into output: inout ByteBuffer) -> Bool {
        var finished = false
        let consumed = input.withUnsafeReadableBytes { raw -> Int in
            let n = raw.count
            var i = 0
            var runStart = 0
            while i < n {
                if state == .lineStart && raw[i] != UInt8(ascii: ".") { state = .mid }
                if state == .mid, let next = ordinaryLine(raw, from: i) {
                    i = next
                    continue
                }
                if i > runStart { emit(UnsafeRawBufferPointer(rebasing: raw[runStart..<i]), into: &output) }
                i = step(raw, at: i, into: &output, finished: &finished)
                runStart = i
                if finished { return i }
            }
            if i > runStart { emit(UnsafeRawBufferPointer(rebasing: raw[runStart..<i]), into: &output) }
            return i
        }
        input.moveReaderIndex(forwardBy: consumed)
        return finished
    }

    /// In `.mid` at `i`: if what follows is plain text up to a CRLF (or up
    /// to the end of the input, with no CR or LF in it), accounts for it
    /// and returns where it ends; nil when a CR or LF needs `step`.
    private mutating func ordinaryLine(_ raw: UnsafeRawBufferPointer, from i: Int) -> Int? {
        let n = raw.count
        let base = raw.baseAddress!
        guard let lfPtr = memchr(base + i, 10, n - i) else {
            guard memchr(base + i, 13, n - i) == nil else { return nil }
            lineLength += n - i
            if lineLength + 2 > maxLineLength { lineTooLong = true }
            return n
        }
        let lf = base.distance(to: UnsafeRawPointer(lfPtr))
        guard lf > i, raw[lf - 1] == 13, memchr(base + i, 13, lf - 1 - i) == nil else { return nil }
        lineLength += lf - 1 - i
        if lineLength + 2 > maxLineLength { lineTooLong = true }
        lineLength = 0
        state = mode == .dotTerminated ? .lineStart : .mid
        return lf + 1
    }

    /// One state change of the byte-level decoder at `i`; returns the next position.
    private mutating func step(_ raw: UnsafeRawBufferPointer, at start: Int, into output: inout ByteBuffer, finished: inout Bool) -> Int {
        let n = raw.count
        var i = start
        switch state {
        case .mid:
            var j = i
            while j < n {
                let b = raw[j]
                if b == 13 || b == 10 { break }
                j += 1
            }
            if j > i {
                emit(UnsafeRawBufferPointer(rebasing: raw[i..<j]), into: &output)
                lineLength += j - i
                if lineLength + 2 > maxLineLength { lineTooLong = true }
                return j
            }
            let b = raw[i]
            i += 1
            if b == 13 { state = .cr } else { bare(into: &output) }
        case .cr:
            if raw[i] == 10 {
                i += 1
                emitCRLF(into: &output)
                state = mode == .dotTerminated ? .lineStart : .mid
            } else {
                bare(into: &output)  // reprocess this byte as text
                state = .mid
            }
        case .lineStart:
            if raw[i] == UInt8(ascii: ".") {
                i += 1
                state = .dot
            } else {
                state = .mid
            }
        case .dot:
            // A leading dot followed by more text is dot-stuffing: drop it.
            if raw[i] == 13 {
                i += 1
                state = .dotCR
            } else {
                state = .mid
            }
        case .dotCR:
            if raw[i] == 10 {
                finished = true
                return i + 1
            }
            // "." CR <not LF>: the dot was stuffing, the CR is bare.
            bare(into: &output)
            state = .mid
        }
        return i
    }

    /// Ends a BDAT LAST transaction: a CR left waiting for its LF is bare.
    public mutating func finishChunked(into output: inout ByteBuffer) {
        if state == .cr || state == .dotCR {
            bare(into: &output)
            state = .mid
        }
    }

    private mutating func bare(into output: inout ByteBuffer) {
        sawBareNewline = true
        if bareNewline == .normalize {
            emitCRLF(into: &output)
        }
        // Never back to lineStart: a dot after a bare line end is plain text.
    }

    private mutating func emitCRLF(into output: inout ByteBuffer) {
        lineLength = 0
        size += 2
        if size > maxSize { oversize = true; return }
        output.writeStaticString("\r\n")
    }

    private mutating func emit(_ bytes: UnsafeRawBufferPointer, into output: inout ByteBuffer) {
        size += bytes.count
        if size > maxSize { oversize = true; return }
        output.writeBytes(bytes)
    }
}

/// Dot-stuffs CRLF text for an outbound DATA (RFC 5321 §4.5.2) and writes the
/// terminating CRLF "." CRLF, adding a final CRLF if the text lacks one.
public struct DotStuffer: Sendable {
    private var atLineStart = true
    private var lastByte: UInt8 = 10

    public init() {}

    /// Copies `input` in runs, breaking a run only before a line that
    /// starts with a dot (found with memchr, so ordinary text costs a copy).
    public mutating func stuff(_ input: ByteBuffer, into output: inout ByteBuffer) {
        input.withUnsafeReadableBytes { raw in
            let n = raw.count
            guard n > 0 else { return }
            if atLineStart && raw[0] == UInt8(ascii: ".") { output.writeInteger(UInt8(ascii: ".")) }
            var runStart = 0
            while let lf = Self.lineEndBeforeDot(raw, from: runStart) {
                output.writeBytes(UnsafeRawBufferPointer(rebasing: raw[runStart...lf]))
                output.writeInteger(UInt8(ascii: "."))
                runStart = lf + 1
            }
            if runStart < n { output.writeBytes(UnsafeRawBufferPointer(rebasing: raw[runStart..<n])) }
            sent(last: raw[n - 1])
        }
    }

    /// True when `input` needs no stuffing here (no line in it starts with
    /// a dot): the caller may send it as it is, and the stuffer counts it as
    /// sent. False leaves the stuffer unchanged; call `stuff` instead.
    public mutating func passThrough(_ input: ByteBuffer) -> Bool {
        let clean = input.withUnsafeReadableBytes { raw in
            raw.isEmpty || !(atLineStart && raw[0] == UInt8(ascii: ".")) && Self.lineEndBeforeDot(raw, from: 0) == nil
        }
        if clean, let last = input.readableBytesView.last { sent(last: last) }
        return clean
    }

    /// The next line end at or after `start` that a dot follows, if any.
    /// Searches for dots, not line ends: base64 and most text have far
    /// fewer dots than lines (a 100 KB attachment: no memchr call per line).
    private static func lineEndBeforeDot(_ raw: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let base = raw.baseAddress else { return nil }
        var i = start + 1
        while i < raw.count, let dotPtr = memchr(base + i, Int32(UInt8(ascii: ".")), raw.count - i) {
            let dot = base.distance(to: UnsafeRawPointer(dotPtr))
            if raw[dot - 1] == 10 { return dot - 1 }
            i = dot + 1
        }
        return nil
    }

    private mutating func sent(last: UInt8) {
        atLineStart = last == 10
        lastByte = last
    }

    public mutating func finish(into output: inout ByteBuffer) {
        if lastByte != 10 { output.writeStaticString("\r\n") }
        output.writeStaticString(".\r\n")
    }
}
