import Checks
import Logging
import NIOPosix
import Relay

/// The outcome of a scan as a fact: a failure is kept so the `virus` rule
/// tempfails (fail closed) unless [clamav] on_error = "accept".
private func scanFindings(_ result: Result<ScanResult, Error>, started: ContinuousClock.Instant, failOpen: Bool,
                          _ input: InspectionInput) -> Findings {
    switch result {
    case .success(let r):
        input.metrics?.scanSeconds.record(ContinuousClock.now - started)
        if case .infected(let name) = r { return Findings(facts: [.virusScan(virus: name, failure: nil)]) }
        return Findings(facts: [.virusScan(virus: nil, failure: nil)])
    case .failure(let error):
        input.metrics?.scanFailures.increment()
        input.logger.error("virus scan failed: \(error)")
        return Findings(facts: [.virusScan(virus: nil, failure: failOpen ? nil : "\(error)")])
    }
}

/// clamd's INSTREAM, fed by the inspection's one read of the message.
struct ClamdAnalyzer: TextAnalyzer {
    let name = "clamav"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = .textStream
    let client: ClamdClient
    let failOpen: Bool

    func makeSink(_ input: InspectionInput) -> any TextSink {
        let body = input.body
        let stream = client.openStream { emit in try body?.forEachPieceBlocking(emit) }
        return Sink(stream: stream, failOpen: failOpen, input: input)
    }

    private final class Sink: TextSink, @unchecked Sendable {
        let stream: ClamdStream
        let failOpen: Bool
        let input: InspectionInput
        let started = ContinuousClock.now
        let blocks = true
        init(stream: ClamdStream, failOpen: Bool, input: InspectionInput) {
            self.stream = stream
            self.failOpen = failOpen
            self.input = input
        }
        func consume(_ piece: UnsafeRawBufferPointer) { stream.send(piece) }
        func finish(readError: Error?) -> Findings {
            let result = Result { try stream.finish() }
            // clamd saw only part of the message: its "OK" says nothing about the rest.
            if let readError { return scanFindings(.failure(readError), started: started, failOpen: failOpen, input) }
            return scanFindings(result, started: started, failOpen: failOpen, input)
        }
    }
}

/// libclamav in process: it maps the stored message (file or buffer) itself,
/// so it takes the text as stored rather than the stream.
struct EmbeddedClamAVAnalyzer: Analyzer {
    let name = "clamav"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = .storedText
    let engine: EmbeddedEngine
    let failOpen: Bool

    func analyze(_ input: InspectionInput) async -> Findings {
        let started = ContinuousClock.now
        guard let body = input.body else { return Findings(facts: [.virusScan(virus: nil, failure: "no message")]) }
        let e = engine.scanner
        // A small text-only message is scanned here (EmbeddedScanner.isBounded):
        // the hop to a worker thread and back cost as much as its scan.
        let here: Result<ScanResult, Error>? = body.withStorage(file: { _ in nil }, memory: { bytes in
            EmbeddedScanner.isBounded(bytes) ? Result { try e.scan(bytes: bytes) } : nil
        })
        if let here { return scanFindings(here, started: started, failOpen: failOpen, input) }
        let result: Result<ScanResult, Error>
        do {
            result = .success(try await NIOThreadPool.singleton.runIfActive {
                try body.withStorage(file: { try e.scan(fileDescriptor: $0) }, memory: { try e.scan(bytes: $0) })
            })
        } catch {
            result = .failure(error)
        }
        return scanFindings(result, started: started, failOpen: failOpen, input)
    }
}

/// The policy asks for a scan and no scanner is configured: every message
/// tempfails at its `virus` rule rather than pass unscanned.
struct MissingScannerAnalyzer: Analyzer {
    let name = "clamav"
    let stage = InspectionStage.endOfData
    let needs: AnalyzerNeeds = []

    func analyze(_ input: InspectionInput) async -> Findings {
        Findings(facts: [.virusScan(virus: nil, failure: "no scanner configured")])
    }
}
