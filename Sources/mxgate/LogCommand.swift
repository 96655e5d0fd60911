import ArgumentParser
import Audit
import Checks
import Foundation
import Gateway
import Logging
import Policy
import Relay

/// `mxgate log`: the audit log, filtered, as a table, in full, or as JSON Lines.
struct Log: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Review the audit log: what was accepted, refused, and why.",
        usage: """
            mxgate log [--config <config>] [--since <since>] [--verdict <verdict>]
                       [--client-ip <client-ip>] [--from <from>] [--to <to>]
                       [--spf <result>] [--dkim <result>] [--dmarc <result>]
                       [--arc <result>] [--detail] [--json] [--follow] [--stats]
            """,
        discussion: """
            Examples:
              mxgate log --since 1h --verdict rejected
              mxgate log --stats --since 7d
              mxgate log --client-ip 192.0.2.7 --json
              mxgate log --to @example.com --follow
              mxgate log --spf fail --since 1d
              mxgate log --dmarc fail --detail

            Address filters match a whole address, or a domain given as @domain.
            """
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "Only records newer than this: 90s, 15m, 1h, 2d, 1w.")
    var since: String?

    @Option(help: "Only this verdict: accepted, rejected, tempfailed, quarantined, discarded.")
    var verdict: String?

    @Option(help: "Only this client IP address.")
    var clientIP: String?

    @Option(help: "Only this envelope sender (address, @domain, or <> for the null sender).")
    var from: String?

    @Option(help: "Only records with this recipient (address or @domain).")
    var to: String?

    @Option(help: "Only records whose SPF result is this: pass, fail, softfail, neutral, none, temperror, permerror.")
    var spf: String?

    @Option(help: "Only records with a DKIM signature whose result is this: pass, fail, none (no signature), …")
    var dkim: String?

    @Option(help: "Only records whose DMARC result is this: pass, fail, none, temperror, permerror.")
    var dmarc: String?

    @Option(help: "Only records whose ARC chain result is this: pass, fail, none.")
    var arc: String?

    @Flag(help: "Print each record in full: every field, authentication results included.")
    var detail = false

    @Flag(help: "Print the records as JSON Lines, exactly as stored.")
    var json = false

    @Flag(help: "Keep printing new records as they are written.")
    var follow = false

    @Flag(help: "Print a summary instead of records: decisions by verdict per day and hour, top refusing rules, refused clients and sender domains, spam scores (default window 1d; the console's Statistics page counts the same).")
    var stats = false

    func run() async throws {
        let config = try options.load()
        var filter = AuditFilter(clientIP: clientIP, from: from, to: to)
        filter.spf = spf
        filter.dkim = dkim
        filter.dmarc = dmarc
        filter.arc = arc
        if let since {
            guard let d = AuditFilter.parseDuration(since) else {
                printError("mxgate log: --since takes a duration such as 90s, 15m, 1h, 2d")
                throw ExitCode(2)
            }
            filter.since = Date().addingTimeInterval(-d)
        }
        if let verdict {
            guard let v = AuditRecord.Verdict(rawValue: verdict) else {
                printError("mxgate log: --verdict must be one of \(AuditRecord.Verdict.allCases.map(\.rawValue).joined(separator: ", "))")
                throw ExitCode(2)
            }
            filter.verdict = v
        }
        let now = Date()
        if stats && filter.since == nil { filter.since = now.addingTimeInterval(-86400) }
        let reader = AuditReader(path: config.auditPath)
        if stats {
            var summary = AuditStats(since: filter.since!, until: now)
            for r in reader.records(matching: filter, onBadLine: { file, line in printError("\(file):\(line): not an audit record, skipped") }) {
                summary.add(r)
            }
            print(summary.text(), terminator: "")
            return
        }
        let records = reader.records(matching: filter) { file, line in printError("\(file):\(line): not an audit record, skipped") }
        emit(records, header: true)
        guard follow else { return }
        var tail = AuditTail(path: config.auditPath)
        tail.skipToEnd()
        while true {
            try await Task.sleep(for: .milliseconds(500))
            let fresh = tail.poll().filter(filter.matches)
            emit(fresh, header: false)
        }
    }

    private func emit(_ records: [AuditRecord], header: Bool) {
        guard !records.isEmpty else { return }
        if json {
            FileHandle.standardOutput.write(Data(records.map { $0.jsonLine() + "\n" }.joined().utf8))
        } else if detail {
            FileHandle.standardOutput.write(Data(records.map(AuditTable.detail).joined(separator: "\n").utf8))
        } else {
            FileHandle.standardOutput.write(Data(AuditTable.render(records, header: header).utf8))
        }
        try? FileHandle.standardOutput.synchronize()
    }
}
