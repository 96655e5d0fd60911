import ArgumentParser
import Audit
import Foundation
import Gateway
import Logging

@main
struct MXGate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mxgate",
        abstract: "An inbound MX gateway: filters SMTP sessions and relays accepted mail to your real mail server.",
        discussion: """
            Start with `mxgate check --config mxgate.toml`, then `mxgate serve --config mxgate.toml`.
            Every decision is written to the audit log; review it with `mxgate log`.
            """,
        subcommands: [Serve.self, Check.self, Log.self]
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file (relative paths inside it are resolved against its folder).")
    var config: String = "mxgate.toml"
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway in the foreground.",
        discussion: """
            Logs go to standard error. SIGTERM (or Ctrl-C) stops accepting connections, lets open
            transactions finish (up to [server] shutdown_timeout) and exits 0. SIGHUP reloads the
            configuration and the TLS certificate; if the new configuration has errors they are
            logged and the running one stays in force.
            """
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "mxgate")
        let config: GatewayConfig
        do {
            config = try GatewayConfig.load(options.config)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        let server: GatewayServer
        do {
            server = try GatewayServer(configPath: options.config, config: config, logger: logger)
        } catch {
            printError("mxgate: \(error)")
            throw ExitCode(1)
        }
        let signals = SignalWatcher(server: server)
        signals.start()
        try await server.run()
        _ = signals
    }
}

/// Turns SIGTERM/SIGINT into a graceful shutdown and SIGHUP into a reload.
final class SignalWatcher {
    private let sources: [any DispatchSourceSignal]
    init(server: GatewayServer) {
        let queue = DispatchQueue(label: "mxgate.signals")
        var list: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler {
                if sig == SIGHUP { server.reload() } else { server.shutdown() }
            }
            list.append(s)
        }
        sources = list
    }
    func start() { sources.forEach { $0.resume() } }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration without starting anything.",
        discussion: "Prints each problem as FILE:LINE:COL: message and exits 1, or prints a summary and exits 0."
    )

    @OptionGroup var options: ConfigOption

    func run() throws {
        let config: GatewayConfig
        do {
            config = try GatewayConfig.load(options.config)
        } catch let e as ConfigErrors {
            for err in e.errors { print(err) }
            throw ExitCode(1)
        }
        var problems: [String] = []
        if config.tlsCertificate != nil {
            do { _ = try GatewayServer.checkTLS(config) } catch { problems.append("\(error)") }
        }
        if !problems.isEmpty {
            problems.forEach { print($0) }
            throw ExitCode(1)
        }
        print("\(options.config): ok")
        print("  listen    \(config.listen.map(\.description).joined(separator: ", "))")
        print("  hostname  \(config.hostname)")
        print("  relay     \(config.mode.rawValue) to \(config.downstreamDescription)")
        print("  domains   \(config.relayDomainsDescription)")
        print("  tls       \(config.tlsCertificate == nil ? "off (no [tls] certificate)" : "STARTTLS with \(config.tlsCertificate!)")")
        print("  audit     \(config.auditPath)")
    }
}

struct Log: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Review the audit log: what was accepted, refused, and why.",
        discussion: """
            Examples:
              mxgate log --since 1h --verdict rejected
              mxgate log --client-ip 192.0.2.7 --json
              mxgate log --to @example.com --follow
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

    @Flag(help: "Print the records as JSON Lines, exactly as stored.")
    var json = false

    @Flag(help: "Keep printing new records as they are written.")
    var follow = false

    func run() async throws {
        let config: GatewayConfig
        do {
            config = try GatewayConfig.load(options.config)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var filter = AuditFilter(clientIP: clientIP, from: from, to: to)
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
        let reader = AuditReader(path: config.auditPath)
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
        } else {
            FileHandle.standardOutput.write(Data(AuditTable.render(records, header: header).utf8))
        }
        try? FileHandle.standardOutput.synchronize()
    }
}
