import Audit
import Foundation
import MailMessage
import MilterProtocol
import NIOCore
import Policy
import Relay
import SMTPProtocol

/// The message of a milter session: the MTA's header fields, the empty
/// line and the body chunks are written back into the text the MTA
/// received (CRLF line ends), the same `MessageBody` an SMTP session
/// stores; the end of message runs the end-of-data inspection and policy
/// on it and answers with our headers, or the refusal.
extension MilterConnection {
    func startMessage() {
        resetMessage()
        let b = MessageBody(memoryThreshold: runtime.config.memoryThreshold, tempDirectory: runtime.config.tempDirectory)
        // DKIM and ARC hash the body as it arrives, not in a second pass.
        b.observer = runtime.inspector.liveText(limit: runtime.headerSectionLimit)
        body = b
    }

    func resetMessage() {
        body = nil
        storeError = nil
        oversized = false
        forgedResults = []
        resultsSeen = 0
    }

    /// One header field as received: name, colon, the value as the MTA
    /// sent it (with its leading space when that was negotiated) and its
    /// folds with CRLF line ends.
    func header(_ name: String, _ value: String) {
        if body == nil { startMessage() }
        let leading = protocolState.negotiation?.steps.contains(.headerLeadingSpace) == true
        var field = Array(name.utf8)
        field.append(UInt8(ascii: ":"))
        if !leading { field.append(32) }
        field += DryRun.crlf(Array(value.utf8))
        if name.caseInsensitiveCompare("Authentication-Results") == .orderedSame {
            resultsSeen += 1
            if AuthenticationResults.isOurs(field[...], runtime.config.effectiveAuthservID.lowercased()) {
                forgedResults.append(resultsSeen)
            }
        }
        field += [13, 10]
        append(field)
    }

    /// Stores text up to the size limit; past it the message is only counted, and refused at its end.
    func append(_ bytes: [UInt8]) {
        guard let body, !bytes.isEmpty, storeError == nil else { return }
        if body.count + bytes.count > runtime.limits.messageSize {
            oversized = true
            return
        }
        do { try body.append(ByteBuffer(bytes: bytes)) } catch { storeError = error }
    }

    func endOfMessage() async -> [MilterResponse] {
        guard var driver, let body else { return [.continue] }
        defer {
            driver.endTransaction()
            self.driver = driver
        }
        let headerBytes = (try? body.headerSection(limit: runtime.headerSectionLimit)) ?? []
        let headers = HeaderBlock(headerBytes)
        let messageID = headers.first("Message-ID")
        let size = body.count
        func refuse(_ reply: SMTPReply, rules: [String], reason: String? = nil) -> [MilterResponse] {
            self.driver = driver
            finish(reply, size: size, messageID: messageID, rules: rules, reason: reason)
            return [Self.reply(reply)]
        }
        if oversized {
            return refuse(SMTPReply(552, "5.3.4", "Message size exceeds fixed maximum message size"), rules: ["limits"])
        }
        if let r = runtime.headerLimitRefusal(headers, headerBytes: headerBytes.count, bodySize: size) {
            return refuse(r, rules: ["limits"])
        }
        if let storeError {
            return refuse(SMTPReply(451, "4.3.0", "Local error while storing the message"), rules: [], reason: "\(storeError)")
        }
        self.driver = driver
        let found = await inspect(.endOfData) {
            $0.headers = headers
            $0.headerBytes = headerBytes
            $0.body = body
            $0.liveText = body.observer as? LiveBodyHashes
        }
        let outcome = driver.data(size: size, headers: headers, inspected: found)
        if let g = driver.greylistThisStage,
           let w = await state.greylistRecord(g, driver.facts, recipients: driver.facts.recipients, bodyHash: g.message) {
            driver.note(w, session: false)
        }
        if let k = runtime.config.classifier, k.autolearn, let c = runtime.classifier, let f = driver.classified,
           let spam = driver.autolearnClass(k, delivered: outcome == .deliver) {
            c.enqueue(f, spam: spam)
        }
        self.driver = driver
        switch outcome {
        case .refuse(let reply, let rules, _):
            finish(reply, size: size, messageID: messageID, rules: rules)
            return [Self.reply(reply)]
        case .discard:
            finish(SMTPReply(250, "2.0.0", "Ok: discarded"), size: size, messageID: messageID, verdict: .discarded)
            return [.discard]
        case .quarantine(let rule, let reason):
            guard protocolState.negotiation?.actions.contains(.quarantine) == true else {
                // An MTA that cannot hold mail: keep it at the client rather than deliver what the policy held back.
                let reply = SMTPReply(451, "4.7.1", "Message held for review, try again later")
                finish(reply, size: size, messageID: messageID, reason: "the MTA does not offer to quarantine")
                return [Self.reply(reply)]
            }
            // The MTA holds it (Postfix: the hold queue; `postsuper -H` releases it).
            finish(SMTPReply(250, "2.0.0", "Ok: held by \(mta)"), size: size, messageID: messageID, reason: reason,
                   verdict: .quarantined)
            return [.quarantine(reason ?? "mxgate: \(rule)"), .accept]
        case .deliver:
            finish(SMTPReply(250, "2.0.0", "Ok: accepted for \(mta)"), size: size, messageID: messageID)
            return modifications() + [.accept]
        }
    }

    /// Our Authentication-Results at the top (RFC 8601 §5: prepended), the
    /// policy's headers after it, and forged results claiming our
    /// authserv-id removed, as far as the MTA allows each.
    func modifications() -> [MilterResponse] {
        guard let driver, let n = protocolState.negotiation else { return [] }
        var out: [MilterResponse] = []
        let leading = n.steps.contains(.headerLeadingSpace)
        if n.actions.contains(.changeHeaders) {
            // From the last: removing one does not move the index of those before it.
            for i in forgedResults.reversed() { out.append(.changeHeader(index: i, name: "Authentication-Results", value: "")) }
        }
        out += rewrites(n)
        guard n.actions.contains(.addHeaders) else { return out }
        let fields = [AuthenticationResults.header(authservID: runtime.config.effectiveAuthservID, facts: driver.facts)]
            + driver.addedHeaders
        for (i, f) in fields.enumerated() {
            guard let colon = f.firstIndex(of: ":") else { continue }
            var value = String(f[f.index(after: colon)...]).replacingOccurrences(of: "\r\n", with: "\n")
            if !leading, value.hasPrefix(" ") { value.removeFirst() }
            out.append(.insertHeader(index: UInt32(i), name: String(f[..<colon]), value: value))
        }
        return out
    }

    /// `[rewrite]` sender and recipient tables, as the MTA's changes: a
    /// rewritten recipient is removed and its new address added.
    func rewrites(_ n: MilterNegotiation) -> [MilterResponse] {
        guard let driver else { return [] }
        var out: [MilterResponse] = []
        if n.actions.contains(.addRecipients) && n.actions.contains(.deleteRecipients) {
            for box in driver.facts.recipients {
                let to = runtime.rewriter.recipient(box)
                if to != box { out += [.deleteRecipient("<\(box)>"), .addRecipient("<\(to)>")] }
            }
        }
        if n.actions.contains(.changeFrom), let from = driver.facts.mailFrom {
            let to = runtime.rewriter.sender(from)
            if to != from { out.append(.changeFrom("<\(to)>", nil)) }
        }
        return out
    }

    func finish(_ reply: SMTPReply, size: Int, messageID: String?, rules extra: [String] = [], reason: String? = nil,
                verdict: AuditRecord.Verdict? = nil) {
        guard let driver else { return }
        let v = verdict ?? AuditRecord.verdict(for: reply)
        metrics.transaction(v.rawValue)
        var r = base(.transaction, reply: reply, verdict: v)
        driver.fillTransaction(&r, size: size, messageID: messageID, extraRules: extra)
        r.relay = v == .accepted || v == .quarantined ? "mta \(mta)" : nil
        r.reason = reason
        write(r)
    }
}
