import Audit
import Foundation
import Relay

/// `mxgate queue …`: look at the spool (read-only, straight from the
/// envelope files) and change it. Changes go through the running gateway's
/// control socket, so the process delivering a message is the only writer
/// of its envelope; with no gateway running they are made on disk directly.
public struct QueueAdmin: Sendable {
    public let config: GatewayConfig
    public let spool: Spool

    public init(config: GatewayConfig) throws {
        self.config = config
        spool = try Spool(directory: config.queueDirectory)
    }

    public enum AdminError: Error, CustomStringConvertible {
        case badID(String)
        case notFound(String)
        case refused(String)
        public var description: String {
            switch self {
            case .badID(let id): return "'\(id)' is not a queue ID (see mxgate queue list)"
            case .notFound(let id): return "no queued message \(id)"
            case .refused(let why): return why
            }
        }
    }

    public func list() -> [QueuedEnvelope] { spool.list() }

    public func find(_ id: String) throws(AdminError) -> QueuedEnvelope {
        guard Spool.validID(id) else { throw .badID(id) }
        guard let env = spool.envelope(id) else { throw .notFound(id) }
        return env
    }

    /// The envelope, each recipient's state, and the message's header section.
    public func show(_ id: String) throws -> String {
        let env = try find(id)
        var out = "queue ID:   \(env.id)\n"
        out += "arrived:    \(AuditRecord.formatTime(env.arrival))\n"
        out += "from:       <\(env.sender)>\n"
        out += "origin:     \(env.origin)\n"
        out += "size:       \(env.size)\n"
        if let m = env.messageID { out += "message-id: \(m)\n" }
        if let r = env.ret { out += "ret:        \(r)\n" }
        if let e = env.envid { out += "envid:      \(e)\n" }
        out += "state:      \(env.held ? "held" : "next attempt \(AuditRecord.formatTime(env.nextAttempt))")\n"
        for r in env.recipients {
            out += "to:         <\(r.address)> \(r.status.rawValue), \(r.attempts) attempt(s)"
            if let reply = r.lastReply { out += ": \(reply)" }
            out += "\n"
        }
        let text = (try? spool.message(id).prefix(64 * 1024)) ?? []
        out += "\n" + String(decoding: DSN.headerSection(text), as: UTF8.self)
        return out
    }

    /// Messages by destination domain and age, like Postfix's qshape.
    public func summary(now: Date = Date()) -> String {
        let buckets: [(String, Double)] = [("<5m", 300), ("<1h", 3600), ("<1d", 86400), ("older", .infinity)]
        var rows: [String: [Int]] = [:]
        var held = 0
        for env in list() {
            if env.held { held += 1 }
            let age = now.timeIntervalSince(env.arrival)
            let b = buckets.firstIndex { age < $0.1 } ?? buckets.count - 1
            for domain in Set(env.pending.map { $0.address.split(separator: "@").last.map(String.init) ?? "" }) {
                rows[domain, default: [Int](repeating: 0, count: buckets.count)][b] += 1
            }
        }
        var table = [["DESTINATION", "TOTAL"] + buckets.map(\.0)]
        var totals = [Int](repeating: 0, count: buckets.count)
        for (domain, counts) in rows.sorted(by: { $0.value.reduce(0, +) > $1.value.reduce(0, +) }) {
            table.append([domain, String(counts.reduce(0, +))] + counts.map(String.init))
            for i in counts.indices { totals[i] += counts[i] }
        }
        table.insert(["TOTAL", String(totals.reduce(0, +))] + totals.map(String.init), at: 1)
        var widths = [Int](repeating: 0, count: table[0].count)
        for r in table { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = table.map { r in
            r.enumerated().map { i, c in i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  ")
        }.joined(separator: "\n")
        if held > 0 { out += "\n\(held) message(s) on hold" }
        return out
    }

    /// hold, release, delete or flush (ID optional for flush); the answer to print.
    public func change(_ verb: String, _ id: String?, audit: AuditSink) async throws -> String {
        if let id { _ = try find(id) }
        if let answer = QueueControlClient.send(([verb] + (id.map { [$0] } ?? [])).joined(separator: " "),
                                                queueDirectory: config.queueDirectory) {
            if answer.hasPrefix("ok ") { return String(answer.dropFirst(3)) }
            throw AdminError.refused(answer.hasPrefix("error ") ? String(answer.dropFirst(6)) : answer)
        }
        // No gateway running: change the files (nothing is delivering them).
        let targets = try id.map { [try find($0)] } ?? list()
        for var env in targets {
            let outcome: DeliveryReport.Outcome
            switch verb {
            case "delete":
                spool.remove(env.id)
                outcome = .deleted
            case "hold", "release":
                env.held = verb == "hold"
                if !env.held { env.nextAttempt = Date() }
                try await spool.update(env)
                outcome = env.held ? .held : .released
            default:
                guard !env.held else { continue }
                env.nextAttempt = Date()
                try await spool.update(env)
                continue
            }
            audit.record(QueueService.record(DeliveryReport(id: env.id, outcome: outcome, sender: env.sender,
                                                            recipients: env.pending.map(\.address), messageID: env.messageID,
                                                            size: env.size, reply: "\(verb) by an administrator")))
        }
        let what = id ?? "\(targets.count) message(s)"
        switch verb {
        case "delete": return "\(what) deleted"
        case "hold": return "\(what) held"
        case "release": return "\(what) released"
        default: return "\(what) due now; no gateway is running to deliver it"
        }
    }
}
