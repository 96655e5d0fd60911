import Crypto
import Policy
import SMTPProtocol

/// Looks the recipient's triplet up before `at rcpt` rules that greylist
/// (the store may be Redis: the lookup is the wait, never the rule).
struct GreylistRecipientAnalyzer: Analyzer {
    let state: SharedState
    var name: String { "greylist" }
    var stage: InspectionStage { .rcpt }
    var needs: AnalyzerNeeds { .envelope }

    func analyze(_ input: InspectionInput) async -> Findings {
        guard let rcpt = input.facts.recipient else { return Findings() }
        let (check, warning) = await state.greylistCheck(input.facts, recipients: [rcpt], bodyHash: nil)
        return Findings(facts: [.greylist(check)], warnings: warning.map { [$0] } ?? [])
    }
}

/// At end of data: every accepted recipient's triplet, and the body's
/// SHA-256, so that the same message retried from another address of a
/// sender's pool passes (rspamd's greylist keys on the body the same way).
struct GreylistMessageAnalyzer: TextAnalyzer {
    let state: SharedState
    var name: String { "greylist" }
    var stage: InspectionStage { .endOfData }
    var needs: AnalyzerNeeds { [.envelope, .textStream] }

    func makeSink(_ input: InspectionInput) -> any TextSink { Sink(state: state, facts: input.facts) }

    /// Hashes what follows the header section's blank line.
    final class Sink: TextSink, @unchecked Sendable {
        let blocks = false
        let state: SharedState
        let facts: SessionFacts
        private var hash = SHA256()
        /// Bytes of "\r\n\r\n" matched so far (4: in the body).
        private var matched = 0

        init(state: SharedState, facts: SessionFacts) {
            self.state = state
            self.facts = facts
        }

        func consume(_ piece: UnsafeRawBufferPointer) {
            guard matched < 4 else { return hash.update(bufferPointer: piece) }
            let pattern: [UInt8] = [13, 10, 13, 10]
            for (i, b) in piece.enumerated() {
                if b == pattern[matched] {
                    matched += 1
                } else {
                    matched = b == 13 ? 1 : 0
                }
                if matched == 4 {
                    hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: piece[(i + 1)...]))
                    return
                }
            }
        }

        private var digest = ""

        func finish(readError: Error?) -> Findings {
            digest = lowerHex(hash.finalize())
            return Findings()
        }

        func resolve(_ found: Findings) async -> Findings {
            let (check, warning) = await state.greylistCheck(facts, recipients: facts.recipients, bodyHash: digest)
            var c = check
            c.message = digest
            return Findings(facts: [.greylist(c)], warnings: warning.map { [$0] } ?? [])
        }
    }
}
