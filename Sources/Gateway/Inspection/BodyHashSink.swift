import Auth

/// The sink of DKIM and ARC: the body part of the one read goes to the
/// message's hashers (the header section is left out, as both hash only
/// the body), unless the session `hashed` it already as it arrived; after
/// the read `verify` looks the keys up. The time it takes is what the
/// analysis spent of the DNS budget.
final class BodyHashSink<Message: BodyHashing>: TextSink, @unchecked Sendable {
    // Used by one read at a time, then resolved once (TextSink's contract).
    let message: Message
    let blocks = false
    private let hashed: Bool
    private let verify: @Sendable (Message) async -> Findings
    private var seen = 0

    init(_ message: Message, hashed: Bool, verify: @escaping @Sendable (Message) async -> Findings) {
        self.message = message
        self.hashed = hashed
        self.verify = verify
    }

    func consume(_ piece: UnsafeRawBufferPointer) {
        guard !hashed, message.hashesBody, let start = message.bodyOffset else { return }
        let from = max(0, start - seen)
        seen += piece.count
        if from < piece.count { message.feedBody(UnsafeRawBufferPointer(rebasing: piece[from...])) }
    }

    func finish(readError: Error?) -> Findings {
        if !hashed { message.finishBody() }
        return Findings()
    }

    func resolve(_ found: Findings) async -> Findings {
        let started = ContinuousClock.now
        var out = await verify(message)
        out.dnsSeconds = (ContinuousClock.now - started).inSeconds
        return out
    }
}

extension InspectionInput {
    /// The longest one lookup may take: what is left of the message's DNS budget (nil: no bound).
    var dnsQueryTimeout: Double? { dnsBudget.isFinite ? max(0.001, dnsBudget) : nil }

    /// When what is left of the DNS budget runs out, counted from `start` (nil: no bound).
    func dnsDeadline(from start: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        dnsBudget.isFinite ? start + .milliseconds(Int64(max(0, dnsBudget) * 1000)) : nil
    }
}
