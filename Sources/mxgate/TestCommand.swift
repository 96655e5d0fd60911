import ArgumentParser
import Audit
import Checks
import Foundation
import Gateway

/// `mxgate test`: messages through the policy offline, as the gateway would judge them.
struct TestMessage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run one message through the policy, with no network, and show the verdict.",
        // Written out so it reads at 80 columns; ArgumentParser prints its own on one line.
        usage: """
            mxgate test [--config <config>] --client-ip <client-ip>
                        [--helo <helo>] --from <from> --to <to> ...
                        [--client-name <client-name>] [--country <country>]
                        [--dns-zone <file>] [--tls] [--json] <message> ...
            """,
        discussion: """
            Every stage runs as in a live session: connect, helo, mail, each recipient, data. \
            Prints the verdict, each rule that fired and why, and the spam score; --json prints \
            the audit record the message would produce. DNS is not used: give --client-name for \
            the client's (verified) host name, or the client is taken to have none, or \
            --dns-zone for a zone file (RFC 1035 master format) that answers every DNS \
            query of the run (reverse DNS, DNS lists, SPF, DKIM keys, DMARC and ARC), so a \
            verdict that depended on DNS can be reproduced offline. Without one, DNS lists \
            count as not listing and sender authentication is not checked. With several \
            messages, each is judged on its own with the same envelope (--json: one record \
            per line, in the order given).

            Example:
              mxgate test --config mxgate.toml --client-ip 203.0.113.9 \\
                --helo mail.example.net --from alice@example.net \\
                --to bob@example.com message.eml
            """
    )

    @OptionGroup var options: ConfigOption
    @Option(help: "The client's IP address.") var clientIP: String
    @Option(help: "The HELO/EHLO name.") var helo: String = "client.example"
    @Option(help: "The envelope sender (\"<>\" for the null sender).") var from: String
    @Option(help: "An envelope recipient (repeat for several).") var to: [String]
    @Option(help: "The client's verified host name (default: no PTR record).") var clientName: String?
    @Option(help: "The client's country code, overriding GeoIP.") var country: String?
    @Option(help: "A zone file (RFC 1035 master format) that answers every DNS query.") var dnsZone: String?
    @Flag(help: "As if the client used STARTTLS.") var tls = false
    @Flag(help: "Print the audit record the message would produce.") var json = false
    @Argument(help: "The message files (RFC 5322, LF or CRLF line ends).") var messages: [String]

    func run() async throws {
        let config = try options.load()
        let dry: DryRun
        do { dry = try DryRun(config: config) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var zone: DNSZone?
        if let dnsZone {
            guard let text = try? String(contentsOfFile: dnsZone, encoding: .utf8) else {
                printError("mxgate test: cannot read \(dnsZone)")
                throw ExitCode(1)
            }
            do { zone = try DNSZone.load(masterFile: text) } catch {
                printError("\(dnsZone):\(error.line):1: \(error.message)")
                throw ExitCode(1)
            }
        }
        var failed = false
        for message in messages {
            guard let data = FileManager.default.contents(atPath: message) else {
                printError("mxgate test: cannot read \(message)")
                failed = true
                continue
            }
            var input = DryRun.Input(clientIP: clientIP, helo: helo, from: from, to: to, message: Array(data))
            input.dnsZone = zone
            input.tls = tls
            input.clientName = clientName
            input.country = country
            let report = await dry.run(input)
            if json {
                print(report.record.jsonLine())
            } else {
                if messages.count > 1 { print("== \(message)") }
                show(report)
            }
        }
        if failed { throw ExitCode(1) }
    }

    private func show(_ report: DryRun.Report) {
        let at = report.stage.map { " at \($0)" } ?? ""
        print("verdict:    \(report.verdict.rawValue)\(at)")
        print("reply:      \(report.reply)")
        for (rcpt, reply) in report.refusedRecipients { print("refused:    \(rcpt): \(reply)") }
        print("spam score: \(report.spamScore.map { DryRun.formatScore($0) } ?? "-")")
        if report.fired.isEmpty {
            print("rules:      none fired")
        } else {
            print("rules:")
            for (stage, rule) in report.fired {
                print("  \(stage.padding(toLength: 7, withPad: " ", startingAt: 0)) \(rule.name)  \(rule.action)")
                if !rule.explanation.isEmpty { print("          because \(rule.explanation)") }
            }
        }
        if !report.record.symbols.isEmpty {
            print("symbols:    " + report.record.symbols.sorted { $0.key < $1.key }.map { "\($0.key)=\(DryRun.formatScore($0.value))" }.joined(separator: ", "))
        }
        if report.authNotChecked {
            print("auth:       not checked: SPF, DKIM and DMARC need DNS; give --dns-zone FILE to answer it")
        }
        for (what, result) in report.record.auth?.summary ?? [] {
            print("auth:       \(what) \(result)")
        }
        if let p = report.record.classifier {
            print("classifier: spam probability \(DryRun.formatScore(p * 100))%")
        }
        for h in report.addedHeaders { print("adds:       \(h)") }
    }
}

