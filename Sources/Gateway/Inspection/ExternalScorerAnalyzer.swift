import Checks

/// An external scorer (rspamd or spamd) asked at end of data, fed by the
/// inspection's one read of the message. Its symbols join mxgate's as
/// "rspamd:NAME" (or "spamd:NAME"), each scaled by the entry's weight. A
/// scorer that is down, slow or answers nonsense makes `spam-score` rules
/// tempfail (fail closed), unless the entry says on_error = "accept".
struct ExternalScorerAnalyzer: TextAnalyzer {
    let settings: ScorerSettings
    var name: String { settings.kind.rawValue }
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = .textStream

    func makeSink(_ input: InspectionInput) -> any TextSink { Sink(settings, input) }

    private final class Sink: TextSink, @unchecked Sendable {
        let settings: ScorerSettings
        let input: InspectionInput
        var message: [UInt8] = []
        var tooLarge = false
        let blocks = true
        init(_ s: ScorerSettings, _ input: InspectionInput) {
            settings = s
            self.input = input
            if let n = input.body?.count, n <= s.maxSize { message.reserveCapacity(n) }
        }

        func consume(_ piece: UnsafeRawBufferPointer) {
            guard !tooLarge else { return }
            if message.count + piece.count > settings.maxSize {
                tooLarge = true
                message = []
                return
            }
            message += piece
        }

        func finish(readError: Error?) -> Findings {
            let s = settings
            if tooLarge { return Findings(warnings: ["\(s.label): not asked, the message is larger than max_size (\(s.maxSize) bytes)"]) }
            let f = input.facts
            let env = ScorerEnvelope(clientIP: f.clientIP, helo: f.helo, mailFrom: f.mailFrom?.description ?? "",
                                     recipients: f.recipients.map(\.description), hostname: f.clientName)
            do {
                if let readError { throw readError }
                let v: ExternalVerdict
                let endpoint = ScorerEndpoint(host: s.host, port: s.port, timeout: s.timeout)
                switch s.kind {
                case .rspamd: v = try RspamdClient(endpoint).check(message, env)
                case .spamd: v = try SpamdClient(endpoint).check(message, env)
                }
                return Self.findings(v, s)
            } catch {
                input.metrics?.scanFailures.increment()
                input.logger.error("\(s.label) failed: \(error)")
                if s.failOpen { return Findings(warnings: ["\(s.label) failed, scored without it: \(error)"]) }
                return Findings(facts: [.scorerFailure("\(s.label) failed: \(error)")])
            }
        }

        static func findings(_ v: ExternalVerdict, _ s: ScorerSettings) -> Findings {
            var out = Findings()
            var sum = 0.0
            for (name, score) in v.symbols.sorted(by: { $0.key < $1.key }) {
                out.symbols.append(Symbol(name: "\(s.kind.rawValue):\(name)", score: Symbol.rounded(score * s.weight)))
                sum += score
            }
            // What the scorer counts that no symbol shows (composites, its own adjustments).
            let rest = v.score - sum
            if abs(rest) >= 0.01 { out.symbols.append(Symbol(name: "\(s.kind.rawValue):OTHER", score: Symbol.rounded(rest * s.weight))) }
            return out
        }
    }
}
