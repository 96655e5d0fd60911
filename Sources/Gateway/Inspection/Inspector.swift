import Foundation
import NIOPosix
import Relay

/// Runs the analyzers of a stage and hands back their findings, merged in
/// the order the analyzers were listed (so the facts a session ends up with
/// do not depend on which lookup answered first).
///
/// At a stage, analyzers that need neither the text nor the MIME summary
/// run side by side; at end of data the message text is read once, in one
/// pass, for every `TextAnalyzer` (the MIME walker, clamd, DKIM, ARC), and
/// analyzers that need what it found (the MIME summary, DKIM results for
/// DMARC) run after that read, side by side again.
/// DNS users are bounded by the budget in the input; the stage reports the
/// longest of them as the budget it spent.
final class Inspector: Sendable {
    private let byStage: [InspectionStage: [any Analyzer]]
    /// Each stage's analyzers sorted once into the text readers, those that
    /// run before the read and those that need what it found: casting every
    /// analyzer to a protocol per message was a runtime conformance lookup
    /// each time, a twentieth of a gateway's CPU with every check on.
    private let plans: [InspectionStage: Plan]
    private let hashing: [any BodyHashingAnalyzer]

    private struct Plan: Sendable {
        var streamers: [any TextAnalyzer] = []
        var first: [any Analyzer] = []
        var afterRead: [any Analyzer] = []
    }

    init(_ analyzers: [any Analyzer]) {
        byStage = Dictionary(grouping: analyzers, by: \.stage)
        let readResults: AnalyzerNeeds = [.mime, .textFindings]
        plans = byStage.mapValues { all in
            var plan = Plan()
            for a in all {
                if let t = a as? any TextAnalyzer {
                    plan.streamers.append(t)
                } else if a.needs.isDisjoint(with: readResults) {
                    plan.first.append(a)
                } else {
                    plan.afterRead.append(a)
                }
            }
            return plan
        }
        hashing = (byStage[.endOfData] ?? []).compactMap { $0 as? any BodyHashingAnalyzer }
    }

    /// Whether anything runs at `stage`: a session asks first, so a stage
    /// with no analyzer costs no async call.
    func has(_ stage: InspectionStage) -> Bool { byStage[stage] != nil }

    /// What hashes the body while the text streams in (DKIM, ARC), for one
    /// message; nil when no such analyzer runs. `limit`: how far the end of
    /// data looks for the header section's end.
    func liveText(limit: Int) -> LiveBodyHashes? {
        return hashing.isEmpty ? nil : LiveBodyHashes(hashing, limit: limit)
    }

    /// The analyzers of a stage, by name (for `mxgate check` and tests).
    func names(_ stage: InspectionStage) -> [String] { (byStage[stage] ?? []).map(\.name) }

    func inspect(_ stage: InspectionStage, _ input: InspectionInput) async -> Findings {
        guard let plan = plans[stage] else { return Findings() }
        let (streamers, first, afterRead) = (plan.streamers, plan.first, plan.afterRead)

        var readText: (@Sendable () async -> Findings)?
        if !streamers.isEmpty {
            readText = { await Self.stream(streamers, input) }
        }
        var out = await Self.runConcurrently(first, input, extra: readText)
        if !afterRead.isEmpty {
            var next = input
            for f in out.facts {
                if case .mime(let m) = f { next.mime = m }
                next.facts.apply(f)
            }
            out.merge(await Self.runConcurrently(afterRead, next, extra: nil))
        }
        return out
    }

    /// Runs `analyzers` (and `extra`, the text read) concurrently; one
    /// analyzer alone runs inline, with no child task.
    ///
    /// Of several, one runs in this task once the others are started as
    /// child tasks (each a task's allocation, an enqueue and a switch, about
    /// a hundredth of a gateway's CPU per message with every check on). It
    /// is a DNS user when there is one: every task of a session shares its
    /// event loop, so the children start when this task first waits, and a
    /// lookup's wait is when they can run.
    private static func runConcurrently(_ analyzers: [any Analyzer], _ input: InspectionInput,
                                        extra: (@Sendable () async -> Findings)?) async -> Findings {
        if analyzers.isEmpty, let extra { return await extra() }
        if analyzers.count == 1 && extra == nil { return await analyzers[0].analyze(input) }
        return await withTaskGroup(of: (Int, Findings).self) { group in
            let mine = analyzers.firstIndex { $0.needs.contains(.dns) } ?? 0
            for (i, a) in analyzers.enumerated() where i != mine { group.addTask { (i, await a.analyze(input)) } }
            if let extra { group.addTask { (analyzers.count, await extra()) } }
            var results: [(Int, Findings)] = [(mine, await analyzers[mine].analyze(input))]
            for await r in group { results.append(r) }
            var out = Findings()
            for (_, f) in results.sorted(by: { $0.0 < $1.0 }) { out.merge(f) }
            return out
        }
    }

    /// One read of the message for every text analyzer. When a sink blocks
    /// (a socket), the read and every sink run as one job on the thread
    /// pool; otherwise right here, on the session's loop.
    private static func stream(_ analyzers: [any TextAnalyzer], _ input: InspectionInput) async -> Findings {
        guard let body = input.body else { return Findings() }
        let sinks = analyzers.map { $0.makeSink(input) }
        let read: @Sendable () -> [Findings] = {
            var readError: Error?
            do {
                try body.forEachPieceBlocking { piece in for s in sinks { s.consume(piece) } }
            } catch {
                input.logger.error("reading the message for analysis failed: \(error)")
                readError = error
            }
            return sinks.map { $0.finish(readError: readError) }
        }
        var found: [Findings]
        if sinks.contains(where: \.blocks) || body.isSpilled {
            do {
                found = try await NIOThreadPool.singleton.runIfActive { read() }
            } catch {
                // The pool is gone only at shutdown; every sink still reports (a scanner then fails closed).
                found = read()
            }
        } else {
            found = read()
        }
        var out = Findings()
        for (s, f) in zip(sinks, found) { out.merge(await s.resolve(f)) }
        return out
    }
}
