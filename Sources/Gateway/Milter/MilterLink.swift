import Foundation
import MilterProtocol
import NIOCore
import NIOPosix

/// Why a milter could not be asked: it did not answer in time, closed the
/// connection, or spoke something else than the protocol.
struct MilterLinkError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// One connection from mxgate to a milter: commands out, responses in, each
/// wait bounded by a timeout (Postfix's milter_command_timeout and
/// milter_content_timeout). SMFIR_PROGRESS restarts the wait, as libmilter
/// sends it to say a slow scan is still running.
final class MilterLink: @unchecked Sendable {
    private let channel: Channel
    private let reader: MilterResponseReader

    private init(channel: Channel, reader: MilterResponseReader) {
        self.channel = channel
        self.reader = reader
    }

    static func connect(_ socket: MilterSocket, group: EventLoopGroup, timeout: Double) async throws -> MilterLink {
        let reader = MilterResponseReader()
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(Int64(timeout * 1000)))
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(reader) } }
        let channel: Channel
        switch socket {
        case .inet(let host, let port): channel = try await bootstrap.connect(host: host, port: port).get()
        case .unix(let path): channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
        }
        return MilterLink(channel: channel, reader: reader)
    }

    /// Sends without waiting for an answer (macros, no-reply steps).
    func send(_ command: MilterCommand) {
        channel.writeAndFlush(ByteBuffer(bytes: command.encoded()), promise: nil)
    }

    /// The next response; a modification at end of message is a response too.
    func next(timeout: Double) async throws -> MilterResponse {
        while true {
            let r = try await reader.next(on: channel.eventLoop, timeout: timeout).get()
            if case .progress = r { continue }
            return r
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Decodes the milter's packets and hands them to the one waiting `next`,
/// in order. Touched only on the channel's event loop.
final class MilterResponseReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private var decoder = MilterFrameDecoder()
    private var ready: [MilterResponse] = []
    private var waiter: EventLoopPromise<MilterResponse>?
    private var timer: Scheduled<Void>?
    private var failure: MilterLinkError?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func next(on loop: EventLoop, timeout: Double) -> EventLoopFuture<MilterResponse> {
        loop.flatSubmit {
            if !self.ready.isEmpty { return loop.makeSucceededFuture(self.ready.removeFirst()) }
            if let f = self.failure { return loop.makeFailedFuture(f) }
            let p = loop.makePromise(of: MilterResponse.self)
            self.waiter = p
            self.timer = loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
                self.fail(MilterLinkError("no answer within \(timeout.formatted())s"))
                self.context?.close(promise: nil)
            }
            return p.futureResult
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buf = unwrapInboundIn(data)
        decoder.feed(buf.readableBytesView)
        do {
            while let (code, bytes) = try decoder.next() {
                deliver(try MilterResponse.parse(code: code, data: bytes))
            }
        } catch {
            fail(MilterLinkError("\(error)"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(MilterLinkError("the milter closed the connection"))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(MilterLinkError("\(error)"))
        context.close(promise: nil)
    }

    private func deliver(_ r: MilterResponse) {
        if let w = waiter {
            waiter = nil
            timer?.cancel()
            w.succeed(r)
        } else {
            ready.append(r)
        }
    }

    private func fail(_ e: MilterLinkError) {
        if failure == nil { failure = e }
        if let w = waiter {
            waiter = nil
            timer?.cancel()
            w.fail(failure!)
        }
    }
}
