import Foundation
import MailMessage
import NIOCore
import Relay
import SMTPProtocol

/// Receiving the message text (DATA and BDAT) into a `MessageBody`, with its
/// own timeouts and the limits that apply to the text as a whole.
extension Session {
    /// Message text: per-read timeout, and `data_deadline` for the whole of it.
    func setTextTimeout() {
        let h = inputHandler
        let idle = TimeAmount.milliseconds(Int64(runtime.limits.dataBlockTimeout * 1000))
        let deadline = TimeAmount.milliseconds(Int64(runtime.limits.dataDeadline * 1000))
        if channel.eventLoop.inEventLoop {
            h.setTimeout(idle, mode: .text, deadline: deadline)
        } else {
            channel.eventLoop.execute { h.setTimeout(idle, mode: .text, deadline: deadline) }
        }
    }

    // MARK: DATA and BDAT

    func newBody() -> MessageBody {
        let body = MessageBody(memoryThreshold: config.memoryThreshold, tempDirectory: config.tempDirectory)
        // DKIM and ARC hash the body as it arrives, not in a second pass.
        body.observer = runtime.inspector.liveText(limit: headerSectionLimit)
        return body
    }

    /// How far into the text the end of data looks for the end of the header section.
    var headerSectionLimit: Int { runtime.headerSectionLimit }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    func data() async {
        if let (reply, reason) = transaction?.textRefusal() {
            // Recipients were accepted but the downstream is gone: say so now, before the client sends the text.
            await abortTransaction()
            finishTransaction(reply, size: nil, messageID: nil, reason: reason)
            return
        }
        send(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>"))
        await flush()
        setTextTimeout()
        var decoder = MessageTextDecoder(mode: .dotTerminated, maxSize: runtime.limits.messageSize,
                                         maxLineLength: runtime.limits.textLineLength, bareNewline: config.bareNewline)
        let body = newBody()
        var storeError: Error?
        var chunk = channel.allocator.buffer(capacity: 16 * 1024)
        while true {
            let done: Bool
            if storeError == nil && body.fitsInMemory(pending.readableBytes) {
                done = body.appendInPlace { decoder.decode(&pending, into: &$0) }
            } else {
                chunk.clear()
                done = decoder.decode(&pending, into: &chunk)
                if storeError == nil {
                    do { try body.append(chunk) } catch { storeError = error }
                }
            }
            if done { break }
            guard await readMore() else {
                setReadTimeout(runtime.limits.commandTimeout)
                await abortTransaction(reason: "client disconnected during DATA")
                closing = true
                return
            }
        }
        setReadTimeout(runtime.limits.commandTimeout)
        await endOfMessage(decoder: decoder, body: body, storeError: storeError)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    func chunk(size: Int, last: Bool) async {
        if let (reply, reason) = transaction?.textRefusal() {
            await discard(size)
            await abortTransaction()
            finishTransaction(reply, size: nil, messageID: nil, reason: reason)
            return
        }
        if chunkDecoder == nil {
            chunkDecoder = MessageTextDecoder(mode: .chunked, maxSize: runtime.limits.messageSize,
                                              maxLineLength: runtime.limits.textLineLength, bareNewline: config.bareNewline)
            body = newBody()
        }
        var remaining = size
        var storeError: Error?
        var out = channel.allocator.buffer(capacity: 16 * 1024)
        setTextTimeout()
        while remaining > 0 {
            if pending.readableBytes == 0 {
                guard await readMore() else {
                    setReadTimeout(runtime.limits.commandTimeout)
                    await abortTransaction(reason: "client disconnected during BDAT")
                    closing = true
                    return
                }
                continue
            }
            var slice = pending.readSlice(length: min(remaining, pending.readableBytes))!
            remaining -= slice.readableBytes
            out.clear()
            _ = chunkDecoder!.decode(&slice, into: &out)
            do { try body!.append(out) } catch { storeError = error }
        }
        setReadTimeout(runtime.limits.commandTimeout)
        if let storeError {
            await abortTransaction(reason: "\(storeError)")
            finishTransaction(SMTPReply(451, "4.3.0", "Local error while storing the message"), size: nil, messageID: nil, reason: "\(storeError)")
            return
        }
        guard last else {
            send(SMTPReply(250, "2.0.0", "\(size) octets received"))
            return
        }
        var decoder = chunkDecoder!
        out.clear()
        decoder.finishChunked(into: &out)
        do { try body!.append(out) } catch { storeError = error }
        let b = body!
        chunkDecoder = nil
        body = nil
        await endOfMessage(decoder: decoder, body: b, storeError: storeError)
    }

    @inline(never)  // keeps this frame out of the one an idle session waits in
    func discard(_ size: Int) async {
        var remaining = size
        while remaining > 0 {
            if pending.readableBytes == 0 {
                guard await readMore() else { closing = true; return }
                continue
            }
            let n = min(remaining, pending.readableBytes)
            pending.moveReaderIndex(forwardBy: n)
            remaining -= n
        }
    }

    /// A header section too large to be mail (Postfix's header_size_limit), or
    /// more Received lines than a message ever collects unless it loops
    /// (RFC 5321 §6.3; Postfix's hopcount_limit).
    func headerLimitRefusal(_ headers: HeaderBlock, headerBytes: Int, bodySize: Int) -> SMTPReply? {
        runtime.headerLimitRefusal(headers, headerBytes: headerBytes, bodySize: bodySize)
    }
}
