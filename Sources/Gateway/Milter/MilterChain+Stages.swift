import Foundation
import MailMessage
import MilterProtocol
import Policy
import Relay
import SMTPProtocol

/// What mxgate sends a milter at each stage (with the macros Postfix sends
/// by default), and how it reads the answers, following libmilter's
/// meanings: accept ends the milter's part (for the session at connect and
/// HELO, for the message later), reject and tempfail refuse the stage with
/// Postfix's default texts, a reply code refuses with the milter's own.
extension MilterChain {
    struct Answer {
        var verdict: MilterVerdict?
        var edits: [MilterHeaderEdit] = []
        var warnings: [String] = []
    }

    /// Sends stage `st` (now, or as a replay while `current` is asked) and reads its answer.
    func send(_ i: Int, _ st: InspectionStage, _ input: InspectionInput, current: InspectionStage) async throws -> Answer {
        let f = input.facts
        let s = peers[i].settings
        let n = peers[i].agreed
        switch st {
        case .connect:
            let v6 = f.clientIP.contains(":")
            let port = UInt16(clamping: f.clientPort)
            send(i, .macros(.connect, [("j", hostname), ("{daemon_name}", "mxgate"), ("{client_addr}", f.clientIP),
                                        ("{client_port}", String(f.clientPort)), ("{client_name}", f.clientName ?? "unknown"),
                                        ("_", "\(f.clientName ?? "unknown") [\(f.clientIP)]")]))
            guard n.sends(.noConnect) else { return Answer() }
            let host = f.clientName ?? "[\(f.clientIP)]"
            return try await step(i, .connect(hostname: host, address: v6 ? .inet6(f.clientIP, port: port) : .inet(f.clientIP, port: port)),
                                  reply: n.answers(.noReplyConnect), timeout: s.commandTimeout)
        case .helo:
            guard let helo = f.helo, n.sends(.noHelo) else { return Answer() }
            if f.tls { send(i, .macros(.helo, [("{tls_version}", "TLSv1.3")])) }
            return try await step(i, .helo(helo), reply: n.answers(.noReplyHelo), timeout: s.commandTimeout)
        case .mail:
            guard let from = f.mailFrom else { return Answer() }
            send(i, .macros(.mail, [("i", f.sessionID), ("{mail_addr}", from.description)]))
            guard n.sends(.noMail) else { return Answer() }
            let args = f.mailParameters?.size.map { ["SIZE=\($0)"] } ?? []
            return try await step(i, .mail("<\(from.description)>", arguments: args), reply: n.answers(.noReplyMail),
                                  timeout: s.commandTimeout)
        case .rcpt:
            guard n.sends(.noRecipient) else { return Answer() }
            // At RCPT: this recipient (after the earlier ones when the milter joins now); later: every accepted one.
            let replayed = current == .rcpt && peers[i].sent.map({ $0 >= .rcpt }) == true ? [] : f.recipients
            let now = current == .rcpt ? f.recipient.map { [$0] } ?? [] : []
            var last = Answer()
            for (k, box) in (replayed + now).enumerated() {
                send(i, .macros(.recipient, [("{rcpt_addr}", box.description)]))
                var a = try await step(i, .recipient("<\(box.description)>", arguments: []), reply: n.answers(.noReplyRecipient),
                                       timeout: s.commandTimeout)
                let isCurrent = k >= replayed.count
                if !isCurrent, let v = a.verdict, v.verdict == "reject" || v.verdict == "tempfail" {
                    // Already accepted from the client: the milter's refusal of it can only be noted.
                    a.warnings.append("milter \(s.name) refused \(box) after it was accepted: \(v.reply?.description ?? v.verdict)")
                    a.verdict = nil
                }
                if let v = a.verdict, v.decides || v.verdict == "accept" { return a }
                if isCurrent { last = a }
            }
            return last
        case .endOfData:
            return try await message(i, input)
        }
    }

    /// DATA, the header fields, the end of headers, the body in chunks of
    /// at most 64 KB, and the end of message with its modifications.
    private func message(_ i: Int, _ input: InspectionInput) async throws -> Answer {
        let s = peers[i].settings
        let n = peers[i].agreed
        send(i, .macros(.data, [("i", input.facts.sessionID)]))
        if n.sends(.noData) {
            let a = try await step(i, .data, reply: n.answers(.noReplyData), timeout: s.commandTimeout)
            if a.verdict?.verdict != "continue" && a.verdict != nil { return a }
        }
        let text = input.headerBytes ?? []
        let bounds = HeaderSection.bounds(text)
        if n.sends(.noHeaders) {
            for (name, value) in Self.fields(text[0..<(bounds?.fieldsEnd ?? text.count)], leadingSpace: n.steps.contains(.headerLeadingSpace)) {
                let a = try await step(i, .header(name: name, value: value), reply: n.answers(.noReplyHeader), timeout: s.commandTimeout)
                if let v = a.verdict, v.verdict != "continue" { return a }
            }
        }
        if n.sends(.noEndOfHeaders) {
            let a = try await step(i, .endOfHeaders, reply: n.answers(.noReplyEndOfHeaders), timeout: s.commandTimeout)
            if let v = a.verdict, v.verdict != "continue" { return a }
        }
        if n.sends(.noBody), let body = input.body, let start = bounds?.bodyStart {
            var early: Answer?
            do {
                try await body.forEachChunk(size: Milter.chunkSize, from: start) { chunk in
                    let a = try await step(i, .body(Array(chunk.readableBytesView)), reply: n.answers(.noReplyBody),
                                           timeout: s.contentTimeout, bodyChunk: true)
                    if a.verdict == nil && a.warnings == ["skip"] { throw StopBody() }
                    if let v = a.verdict, v.verdict != "continue" {
                        early = a
                        throw StopBody()
                    }
                }
            } catch is StopBody {}
            if let early { return early }
        }
        return try await endOfMessage(i)
    }

    private struct StopBody: Error {}

    private func endOfMessage(_ i: Int) async throws -> Answer {
        let s = peers[i].settings
        let n = peers[i].agreed
        guard let link = peers[i].link else { throw MilterLinkError("not connected") }
        link.send(.endOfMessage([]))
        var answer = Answer()
        var quarantine: String?
        while true {
            let r = try await link.next(timeout: s.contentTimeout)
            switch r {
            case .addHeader(let name, let value) where n.actions.contains(.addHeaders):
                answer.edits.append(MilterHeaderEdit(kind: .add, name: name, value: value))
            case .insertHeader(let idx, let name, let value) where n.actions.contains(.addHeaders):
                answer.edits.append(MilterHeaderEdit(kind: .insert(idx), name: name, value: value))
            case .changeHeader(let idx, let name, let value) where n.actions.contains(.changeHeaders):
                answer.edits.append(MilterHeaderEdit(kind: .change(idx), name: name, value: value))
            case .quarantine(let reason) where n.actions.contains(.quarantine):
                quarantine = reason
            case .addHeader, .insertHeader, .changeHeader, .quarantine, .addRecipient, .addRecipientWithArgs, .deleteRecipient,
                 .changeFrom, .replaceBody:
                answer.warnings.append("milter \(s.name) asked for a change it was not offered (\(Self.describe(r))): not made")
            default:
                var v = try verdict(r, s.name)
                if let q = quarantine, v.verdict == "continue" || v.verdict == "accept" {
                    v = MilterVerdict(milter: s.name, verdict: "quarantine", reason: q.isEmpty ? "milter \(s.name)" : q)
                }
                answer.verdict = v
                return answer
            }
        }
    }

    // MARK: the wire

    func send(_ i: Int, _ c: MilterCommand) { peers[i].link?.send(c) }

    /// Sends a command and, when the milter answers it, reads the answer.
    private func step(_ i: Int, _ c: MilterCommand, reply: Bool, timeout: Double, bodyChunk: Bool = false) async throws -> Answer {
        guard let link = peers[i].link else { throw MilterLinkError("not connected") }
        link.send(c)
        guard reply else { return Answer() }
        let r = try await link.next(timeout: timeout)
        if bodyChunk, case .skip = r { return Answer(verdict: nil, warnings: ["skip"]) }
        return Answer(verdict: try verdict(r, peers[i].settings.name))
    }

    func verdict(_ r: MilterResponse, _ name: String) throws -> MilterVerdict {
        switch r {
        case .continue: return MilterVerdict(milter: name, verdict: "continue")
        case .accept: return MilterVerdict(milter: name, verdict: "accept")
        case .discard: return MilterVerdict(milter: name, verdict: "discard", reason: "milter \(name) discarded it")
        case .reject: return MilterVerdict(milter: name, verdict: "reject", reply: SMTPReply(550, "5.7.1", "Command rejected"))
        case .tempfail:
            return MilterVerdict(milter: name, verdict: "tempfail", reply: Self.unavailable)
        case .replyCode(let text):
            guard let reply = Self.reply(text) else { throw MilterLinkError("a reply that is not a 4xx or 5xx SMTP reply: \(text)") }
            return MilterVerdict(milter: name, verdict: reply.code < 500 ? "tempfail" : "reject", reply: reply)
        default:
            throw MilterLinkError("an answer out of place: \(Self.describe(r))")
        }
    }

    /// "550 5.7.1 text", one line or several ("550-5.7.1 a\r\n550 5.7.1 b").
    static func reply(_ text: String) -> SMTPReply? {
        let lines = text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline).map(String.init)
        guard let first = lines.first, first.count >= 3, let code = Int(first.prefix(3)), (400..<600).contains(code) else { return nil }
        var enhanced: String?
        let texts = lines.map { line -> String in
            var rest = Substring(line.dropFirst(3))
            if rest.first == "-" || rest.first == " " { rest = rest.dropFirst() }
            let word = rest.prefix { $0 != " " }
            if word.split(separator: ".").count == 3, word.allSatisfy({ $0.isNumber || $0 == "." }) {
                enhanced = String(word)
                rest = rest.dropFirst(word.count).drop { $0 == " " }
            }
            return String(rest)
        }
        return SMTPReply(code: code, enhanced: enhanced, lines: texts)
    }

    /// The header fields as the milter protocol carries them: name, and the
    /// value after the colon (its leading space kept only when agreed),
    /// folds with LF alone, as Postfix sends them.
    static func fields(_ section: ArraySlice<UInt8>, leadingSpace: Bool) -> [(String, String)] {
        MilterHeaderEdit.split(section).compactMap { field in
            guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            var value = Array(field[(colon + 1)...])
            while let last = value.last, last == 10 || last == 13 { value.removeLast() }
            if !leadingSpace, let first = value.first, first == 32 || first == 9 { value.removeFirst() }
            let name = String(decoding: field[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            return (name, String(decoding: value.filter { $0 != 13 }, as: UTF8.self))
        }
    }

    static func describe(_ r: MilterResponse) -> String {
        switch r {
        case .addRecipient, .addRecipientWithArgs: return "add a recipient"
        case .deleteRecipient: return "remove a recipient"
        case .changeFrom: return "change the sender"
        case .replaceBody: return "replace the body"
        case .addHeader(let n, _), .insertHeader(_, let n, _): return "add \(n)"
        case .changeHeader(_, let n, _): return "change \(n)"
        case .quarantine: return "quarantine"
        default: return "\(r)"
        }
    }
}
