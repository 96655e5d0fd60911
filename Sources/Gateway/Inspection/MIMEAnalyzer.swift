import MailMessage

/// Walks the message's MIME structure as it streams past: attachments,
/// decoded text and URLs for the attachment, body and URI rules.
struct MIMEAnalyzer: TextAnalyzer {
    let name = "mime"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = .textStream

    func makeSink(_ input: InspectionInput) -> any TextSink { Sink() }

    private final class Sink: TextSink, @unchecked Sendable {
        private var walker = MIMEWalker()
        let blocks = false
        func consume(_ piece: UnsafeRawBufferPointer) { walker.feed(piece) }
        func finish(readError: Error?) -> Findings { Findings(facts: [.mime(walker.finish())]) }
    }
}
