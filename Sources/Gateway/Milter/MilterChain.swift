import Foundation
import Logging
import MilterProtocol
import NIOCore
import Policy
import SMTPProtocol

/// The `[[milters]]` one SMTP session asks, in order, as Postfix's
/// smtpd_milters does. Each milter has its own connection for the session,
/// opened at the first stage in its `stages`; the stages before it are sent
/// then from what the session knows (so `stages = ["data"]` costs one short
/// conversation per message). Answers become `Fact.milter` (a refusal is the
/// stage's answer) and, at the end of a message, header edits.
/// The commands of each stage and the reading of answers are in
/// MilterChain+Stages.swift.
///
/// Used only by its session's task, one stage at a time.
final class MilterChain: @unchecked Sendable {
    struct Peer {
        let settings: MilterClientSettings
        var link: MilterLink?
        var agreed = MilterNegotiation(version: Milter.version, actions: [], steps: [])
        /// The last stage sent in this session (nil: nothing yet).
        var sent: InspectionStage?
        /// It accepted the whole session (at connect or HELO): not asked again.
        var doneForSession = false
        /// It accepted or decided this message: not asked again until the next.
        var doneForMessage = false
        /// It failed; with default_action tempfail every later stage is refused too, as Postfix does.
        var failure: String?
    }

    var peers: [Peer]
    let group: EventLoopGroup
    let hostname: String
    let logger: Logger

    init?(_ settings: [MilterClientSettings], group: EventLoopGroup, hostname: String, logger: Logger) {
        guard !settings.isEmpty else { return nil }
        peers = settings.map { Peer(settings: $0) }
        self.group = group
        self.hostname = hostname
        self.logger = logger
    }

    /// What the milters answer at `stage`, asked in order; the first that
    /// decides ends the round (the later ones are not asked).
    func ask(_ stage: InspectionStage, _ input: InspectionInput) async -> Findings {
        var found = Findings()
        for i in peers.indices {
            let decided = await ask(i, stage, input, into: &found)
            if decided { break }
        }
        return found
    }

    /// The message ended: milters told of it but not of its end hear
    /// SMFIC_ABORT (a RSET, or a refusal elsewhere); all wait for the next MAIL.
    func endMessage() {
        for i in peers.indices { abortMessage(i) }
    }

    /// A milter told of a message but not of its end hears SMFIC_ABORT and waits for the next MAIL.
    private func abortMessage(_ i: Int) {
        if let s = peers[i].sent, s >= .mail {
            peers[i].link?.send(.abort)
            peers[i].sent = .helo
        }
        peers[i].doneForMessage = false
    }

    /// The session is over.
    func close() {
        for p in peers {
            p.link?.send(.quit)
            p.link?.close()
        }
        peers = peers.map { Peer(settings: $0.settings) }
    }

    // MARK: one milter

    /// True when this milter's answer decided the stage.
    private func ask(_ i: Int, _ stage: InspectionStage, _ input: InspectionInput, into found: inout Findings) async -> Bool {
        let s = peers[i].settings
        if let why = peers[i].failure {
            // Down earlier in this session: tempfail again, or carry on without it.
            if s.failOpen { return false }
            found.facts.append(.milter(Self.failed(s, why)))
            return true
        }
        // A new message: one refused at MAIL, or never ended, is aborted first.
        if stage == .mail { abortMessage(i) }
        if peers[i].doneForSession || peers[i].doneForMessage { return false }
        if peers[i].link == nil {
            guard s.stages.contains(stage) else { return false }
            do { try await open(i) } catch {
                return fail(i, "cannot connect: \(error)", into: &found)
            }
        }
        do {
            // Every stage not sent yet up to this one; a recipient stage again for each recipient.
            let pending = peers[i].sent == .rcpt && stage == .rcpt
                ? [InspectionStage.rcpt]
                : InspectionStage.allCases.filter { st in st <= stage && peers[i].sent.map { st > $0 } ?? true }
            for st in pending {
                let answer = try await send(i, st, input, current: stage)
                // After the end of a message the milter waits for the next MAIL.
                peers[i].sent = st == .endOfData ? .helo : st
                found.headerEdits += answer.edits
                found.warnings += answer.warnings
                guard let v = answer.verdict else { continue }
                // Only the stages the admin listed count, and what decides the message wherever it came.
                if st == stage && s.stages.contains(stage) || v.decides || v.verdict == "accept" { found.facts.append(.milter(v)) }
                if v.verdict == "accept" {
                    if st <= .helo { peers[i].doneForSession = true } else { peers[i].doneForMessage = true }
                    return false
                }
                if v.decides {
                    if st > .helo { peers[i].doneForMessage = true }
                    return true
                }
            }
        } catch {
            return fail(i, "\(error)", into: &found)
        }
        return false
    }

    private func open(_ i: Int) async throws {
        let s = peers[i].settings
        let link = try await MilterLink.connect(s.socket, group: group, timeout: s.connectTimeout)
        peers[i].link = link
        link.send(.negotiate(version: Milter.version, actions: Self.offeredActions, steps: Self.offeredSteps))
        guard case .negotiate(let v, let actions, let steps, _) = try await link.next(timeout: s.connectTimeout) else {
            throw MilterLinkError("no option negotiation in its answer")
        }
        guard v >= 2 else { throw MilterLinkError("it speaks milter version \(v)") }
        // A milter asking for more than offered is refused by libmilter's MTAs; take what was offered.
        peers[i].agreed = MilterNegotiation(version: min(v, Milter.version), actions: actions.intersection(Self.offeredActions),
                                            steps: steps.intersection(Self.offeredSteps))
    }

    /// True when the failure decides the stage (default_action tempfail).
    private func fail(_ i: Int, _ why: String, into found: inout Findings) -> Bool {
        let s = peers[i].settings
        peers[i].link?.close()
        peers[i].link = nil
        peers[i].failure = why
        logger.warning("milter \(s.label): \(why)")
        if s.failOpen {
            found.warnings.append("milter \(s.name): \(why); carried on without it (default_action accept)")
            found.facts.append(.milter(MilterVerdict(milter: s.name, verdict: "failed", reason: why)))
            return false
        }
        found.facts.append(.milter(Self.failed(s, why)))
        return true
    }

    static func failed(_ s: MilterClientSettings, _ why: String) -> MilterVerdict {
        MilterVerdict(milter: s.name, verdict: "tempfail", reply: unavailable, reason: "milter \(s.name) failed: \(why)")
    }

    /// Postfix's reply for a milter's tempfail, and for a milter that failed with default_action tempfail.
    static let unavailable = SMTPReply(451, "4.7.1", "Service unavailable - try again later")

    /// What mxgate does with a milter's changes: headers (added, inserted, changed) and quarantine.
    static let offeredActions: Milter.Actions = [.addHeaders, .changeHeaders, .quarantine]
    /// Every step may be left out or left unanswered; header values may keep their leading space.
    static let offeredSteps: Milter.Steps = [
        .noConnect, .noHelo, .noMail, .noRecipient, .noBody, .noHeaders, .noEndOfHeaders, .noReplyHeader, .noUnknown, .noData,
        .skip, .noReplyConnect, .noReplyHelo, .noReplyMail, .noReplyRecipient, .noReplyData, .noReplyUnknown,
        .noReplyEndOfHeaders, .noReplyBody, .headerLeadingSpace,
    ]
}

extension InspectionStage: Comparable {
    private var order: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: InspectionStage, b: InspectionStage) -> Bool { a.order < b.order }
}
