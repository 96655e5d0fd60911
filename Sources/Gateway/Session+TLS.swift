import NIOCore
import NIOSSL
import SMTPProtocol

/// STARTTLS (RFC 3207): the switch to TLS in the middle of a session.
extension Session {
    // MARK: STARTTLS

    @inline(never)  // keeps this frame out of the one an idle session waits in
    func startTLS() async {
        guard let ssl = runtime.sslContext else {
            send(.tlsNotAvailable)
            return
        }
        // Replies to commands pipelined before STARTTLS go out first.
        await flush(wait: true)
        var buffer = ByteBuffer()
        SMTPReply(220, "2.0.0", "Ready to start TLS").encode(into: &buffer)
        let reply = buffer
        let handler = inputHandler
        do {
            try await channel.eventLoop.submit { try handler.startTLS(reply: reply, sslContext: ssl) }.get()
        } catch {
            closing = true
            return
        }
        // CVE-2011-0411: anything the client sent after STARTTLS in plaintext is dropped.
        pending.clear()
        while true {
            let next = await inputHandler.next()
            switch next {
            case .none:
                closing = true
                return
            case .bytes:
                continue  // plaintext read before the handshake finished
            case .tlsStarted:
                machine.tlsStarted()
                driver.tlsStarted()
                return
            case .tlsFailed(let why):
                logger.info("TLS handshake failed: \(why)")
                record(.connection, verdict: .rejected, reply: SMTPReply(421, "4.7.0", "TLS handshake failed"), reason: why)
                closing = true
                return
            case .timeout, .shutdown:
                closing = true
                return
            }
        }
    }
}
