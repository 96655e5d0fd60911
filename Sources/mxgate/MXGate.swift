import ArgumentParser
import Audit
import Checks
import Console
import Foundation
import Gateway
import Logging
import Policy
import Relay
import State

/// The entry point blocks the main thread on a semaphore while the command
/// runs as a task, instead of an async main: an async main parks the main
/// thread in dispatch_main's sigsuspend, and valgrind (3.19, Debian 12)
/// crashes as soon as a worker thread starts beside it, which made
/// callgrind unusable for profiling. Nothing in mxgate uses the main queue.
@main
enum Main {
    static func main() {
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            await MXGate.main()
            done.signal()
        }
        done.wait()
    }
}

struct MXGate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mxgate",
        abstract: "An inbound MX gateway: filters SMTP sessions and relays accepted mail to your real mail server.",
        discussion: """
            Start with `mxgate check --config mxgate.toml`, then `mxgate serve --config mxgate.toml`. \
            Every decision is written to the audit log; review it with `mxgate log`.
            """,
        subcommands: [Serve.self, Check.self, TestMessage.self, Learn.self, Lookup.self, Log.self, Quarantine.self, Queue.self, Web.self]
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file (relative paths inside it are resolved against its folder).")
    var config: String = "mxgate.toml"

    /// The configuration, or its errors on stderr and exit status 1.
    func load() throws -> GatewayConfig {
        do { return try GatewayConfig.load(config) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway in the foreground.",
        discussion: """
            Logs go to standard error. SIGTERM (or Ctrl-C) stops accepting connections, lets open \
            transactions finish (up to [server] shutdown_timeout) and exits 0. SIGHUP reloads the \
            configuration and the TLS certificate; if the new configuration has errors they are \
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
        let config = try options.load()
        if Privileges.shouldDrop(config) {
            do { try Privileges.bindAndBecomeUser(config, arguments: CommandLine.arguments) } catch {
                printError("mxgate: \(error)")
                throw ExitCode(1)
            }
        }
        let server: GatewayServer
        do {
            server = try GatewayServer(configPath: options.config, config: config, logger: logger)
        } catch {
            printError("mxgate: \(error)")
            throw ExitCode(1)
        }
        // A write past a file-size limit (RLIMIT_FSIZE) must fail with EFBIG,
        // answered 452 by the spool, not kill the gateway with SIGXFSZ.
        signal(SIGXFSZ, SIG_IGN)
        let signals = SignalWatcher(server: server)
        signals.start()
        var console: Task<Void, Never>?
        if let web = config.web {
            let c: ConsoleServer
            do { c = try ConsoleServer(config: config, audit: server.auditSink, logger: logger, reloadPolicy: { server.reload() }) } catch {
                printError("mxgate: [web]: \(error)")
                throw ExitCode(1)
            }
            console = Task {
                do {
                    try await c.run { url in logger.info("review console on \(url)") }
                } catch {
                    logger.error("review console on \(web.listen) stopped: \(error)")
                }
            }
        }
        try await server.run()
        console?.cancel()
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

/// Runs an audited admin action (quarantine or queue) with its own audit
/// writer and prints its outcome; an error goes to stderr with exit 1.
func runAudited(_ config: GatewayConfig, tool: String, _ action: (AuditWriter) async throws -> String) async throws {
    let audit = try AuditWriter(options: .init(path: config.auditPath, maxBytes: config.auditMaxBytes, keep: config.auditKeep))
    defer { audit.close() }
    do {
        print(try await action(audit))
    } catch {
        printError("mxgate \(tool): \(error)")
        throw ExitCode(1)
    }
}

/// Rows as aligned columns; the last column is not padded (it may be long).
func printTable(_ rows: [[String]]) {
    let columns = rows.map(\.count).max() ?? 0
    var widths = [Int](repeating: 0, count: columns)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    for r in rows {
        print(r.enumerated().map { i, c in i < r.count - 1 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0) : c }
            .joined(separator: "  "))
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration, policies and tables without starting anything.",
        discussion: """
            Prints each problem as FILE:LINE:COL: message and exits 1, or a summary and exits 0. \
            Warnings (such as a rule that can never match) are printed but do not fail the check.
            """
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
        var failed = false
        let prefix = PathDisplay(configPath: options.config)
        var policy: PolicySet?
        do {
            policy = try DryRun.loadPolicy(config)
        } catch {
            for d in error.diagnostics { print(prefix.show(d)) }
            failed = true
        }
        for w in policy?.warnings ?? [] { print(prefix.show(w)) }
        do { _ = try GatewayServer.checkScanner(config) } catch {
            print("\(error)")
            failed = true
        }
        for problem in GatewayServer.checkRewrite(config) {
            print(problem)
            failed = true
        }
        let milterNames = Set(config.milters.map(\.name))
        for (rule, name) in policy?.milterConditions ?? [] where !milterNames.contains(name) {
            print("\(rule): milter \(name): no [[milters]] entry has that name (known: \(milterNames.sorted().joined(separator: ", ")))")
            failed = true
        }
        if config.tlsCertificate != nil {
            do { _ = try GatewayServer.checkTLS(config) } catch {
                print("\(error)")
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
        print("\(options.config): ok")
        print("  listen    \(config.listen.map(\.description).joined(separator: ", "))")
        print("  hostname  \(config.hostname)")
        print("  relay     \(config.mode.rawValue) to \(config.downstreamDescription)")
        print("  domains   \(config.relayDomainsDescription)")
        print("  tls       \(config.tlsCertificate == nil ? "off (no [tls] certificate)" : "STARTTLS with \(config.tlsCertificate!)")")
        print("  audit     \(config.auditPath)")
        if config.mode == .queue || config.fallback == .queue {
            print("  queue     \(config.queueDirectory)\(config.routes.isEmpty ? "" : ", \(config.routes.count) route(s)")")
        }
        print("  clamav    \(config.clamavMode.rawValue)\(config.clamavMode == .embedded ? " (\(config.clamavDatabase))" : "")")
        if let r = config.state.redis, let store = config.state.redisStore(minTimeout: 1) {
            let reachable = (try? store.ping()) != nil
            print("  state     redis \(r) as node \(config.stateNode): \(reachable ? "reachable" : "NOT reachable now (greylisting and limits would use this node's own state)")")
        } else {
            print("  state     embedded (\(config.resolve(config.state.file)))")
        }
        if let m = config.milter { print("  milter    serving on \(m.listen)") }
        for m in config.milters {
            let stages = m.stages.count == InspectionStage.allCases.count ? "every stage" : m.stages.sorted().map(\.rawValue).joined(separator: ", ")
            print("  milters   \(m.label): \(stages), default_action \(m.failOpen ? "accept" : "tempfail")")
        }
        if let p = policy {
            let count = p.rules.count + p.sections.reduce(0) { $0 + $1.rules.count }
            print("  policy    \(count) rule(s), \(p.tables.count) table(s), \(p.sections.count) domain section(s)")
        }
    }
}

/// Shows policy file names the way the user reaches them: relative to the
/// config file as it was given on the command line.
struct PathDisplay {
    let dir: String
    init(configPath: String) {
        let d = (configPath as NSString).deletingLastPathComponent
        dir = d == "." ? "" : d
    }
    func show(_ d: PolicyDiagnostic) -> String {
        var copy = d
        if !dir.isEmpty && !d.file.hasPrefix("/") { copy.file = dir + "/" + d.file }
        return copy.description
    }
}

struct Lookup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look a key up in a table, like postmap -q.",
        discussion: """
            TABLE is a table name declared in the policies (e.g. blocked) or TYPE:PATH \
            (e.g. cidr:rules/blocked.cidr). Prints the entry that matches, where it is, and its \
            value; exits 1 when nothing matches.

            Examples:
              mxgate lookup blocked 192.0.2.7
              mxgate lookup list:rules/partners.list mail.partner.example
            """
    )

    @OptionGroup var options: ConfigOption
    @Argument(help: "Table name or TYPE:PATH.") var table: String
    @Argument(help: "The key: an IP address, domain, address, or text for a regexp table.") var key: String

    func run() throws {
        let config = try options.load()
        let t: Table
        do {
            if table.contains(":") {
                t = try PolicyLoader.loadTable(table, base: config.directory.isEmpty ? "." : config.directory,
                                               rules: config.rulesDirectory)
            } else {
                let policy = try DryRun.loadPolicy(config)
                guard let found = policy.tables[table] else {
                    printError("mxgate lookup: no table named \(table); declared: \(policy.tables.keys.sorted().joined(separator: ", "))")
                    throw ExitCode(2)
                }
                t = found
            }
        } catch let e as PolicyLoadError {
            printError("\(e)")
            throw ExitCode(2)
        }
        switch TableLookup.lookup(t, key) {
        case .some(let line):
            print(line)
        case .none:
            print("\(key): not found in \(t.path)")
            throw ExitCode(1)
        }
    }
}

struct Quarantine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Review held messages and release or delete them.",
        discussion: """
            Messages a `quarantine` rule held are kept in [quarantine] directory until released, \
            deleted, or older than [quarantine] retention. Releases and deletions are written to the \
            audit log.

              mxgate quarantine list
              mxgate quarantine show ID
              mxgate quarantine release ID
              mxgate quarantine delete ID
            """,
        subcommands: [List.self, Show.self, Release.self, Delete.self, Expire.self]
    )

    /// Runs one audited quarantine action and prints its outcome; errors go to stderr with exit 1.
    static func administer(_ options: ConfigOption, _ action: (QuarantineAdmin, AuditWriter) async throws -> String) async throws {
        let config = try options.load()
        try await runAudited(config, tool: "quarantine") { try await action(QuarantineAdmin(config: config), $0) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List held messages, oldest first.")
        @OptionGroup var options: ConfigOption
        @Flag(help: "One JSON object per message.") var json = false

        func run() throws {
            let admin = QuarantineAdmin(config: try options.load())
            let held = admin.list()
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for h in held { print(String(decoding: try enc.encode(h.entry), as: UTF8.self)) }
                return
            }
            guard !held.isEmpty else { print("the quarantine is empty"); return }
            var rows = [["ID", "TIME", "FROM", "TO", "SIZE", "WHY"]]
            for h in held {
                let e = h.entry
                rows.append([e.id, String(e.time.prefix(19)).replacingOccurrences(of: "T", with: " "), e.mailFrom.isEmpty ? "<>" : e.mailFrom,
                             e.rcptTo.joined(separator: ","), String(e.size), e.reason ?? e.rules.joined(separator: ",")])
            }
            printTable(rows)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a held message: why it was held, then the message.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The quarantine ID.") var id: String

        func run() throws {
            let admin = QuarantineAdmin(config: try options.load())
            do {
                let h = try admin.find(id)
                let e = h.entry
                print("id:         \(e.id)")
                print("held:       \(e.time)")
                print("client:     \(e.clientIP) (helo \(e.helo ?? "-"))")
                print("from:       \(e.mailFrom.isEmpty ? "<>" : e.mailFrom)")
                print("to:         \(e.rcptTo.joined(separator: ", "))")
                print("rules:      \(e.rules.joined(separator: ", "))")
                if let r = e.reason { print("reason:     \(r)") }
                if let s = e.spamScore { print("spam score: \(DryRun.formatScore(s))") }
                print("")
                if let data = FileManager.default.contents(atPath: h.messagePath) {
                    FileHandle.standardOutput.write(data)
                }
            } catch {
                printError("mxgate quarantine: \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deliver a held message to the downstream and remove it.",
            usage: "mxgate quarantine release <id> [--allow] [--node <node>] [-c <config>]")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The quarantine ID.") var id: String
        @Flag(help: "Also add its sender to the allow-list ([web] allow_list, default rules/allowed-senders.list); reload to apply.")
        var allow = false
        @Option(help: "Ask the gateway of this [state] node (sharing [state] redis) to release a message it holds.")
        var node: String?

        func run() async throws {
            if let node {
                let config = try options.load()
                let who = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "admin"
                do {
                    try config.requestRelease(id, node: node, by: "\(who) on \(config.stateNode)")
                } catch {
                    printError("mxgate quarantine release: \(error)")
                    throw ExitCode(1)
                }
                print("asked \(node) to release \(id): it does within seconds and writes it to its audit log")
                return
            }
            try await Quarantine.administer(options) { admin, audit in
                var out = ""
                if allow {
                    let list = admin.config.web?.allowList ?? admin.config.rulesDirectory + "/allowed-senders.list"
                    let who = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "admin"
                    out = "; \(try admin.allowSender(id, list: list, by: who, audit: audit)) added to \(list) (send SIGHUP to apply)"
                }
                return "released \(id): \(try await admin.release(id, audit: audit))" + out
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a held message.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The quarantine ID.") var id: String

        func run() async throws {
            try await Quarantine.administer(options) { admin, audit in
                try admin.delete(id, audit: audit)
                return "deleted \(id)"
            }
        }
    }

    struct Expire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete held messages older than [quarantine] retention now (serve does it hourly).")
        @OptionGroup var options: ConfigOption

        func run() async throws {
            try await Quarantine.administer(options) { admin, audit in
                "expired \(admin.expire(retention: admin.config.quarantineRetention, audit: audit).count) message(s)"
            }
        }
    }
}

struct Queue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look at the mail queue and manage it (queue mode and proxy fallback).",
        discussion: """
            Every message mxgate answered 250 for in queue mode stays in [queue] directory until it is \
            delivered, bounced or deleted. Changes go through the running gateway; with none running they \
            are made on disk.

              mxgate queue list               every queued message, oldest first
              mxgate queue summary            messages by destination and age
              mxgate queue show ID            envelope, each recipient's state, headers
              mxgate queue flush [ID]         deliver now instead of at the next retry
              mxgate queue hold ID            keep it, do not deliver
              mxgate queue release ID         deliver a held message again
              mxgate queue delete ID          remove it without a bounce
            """,
        subcommands: [List.self, Summary.self, Show.self, Flush.self, Hold.self, Release.self, Delete.self]
    )

    static func admin(_ options: ConfigOption) throws -> QueueAdmin {
        let config = try options.load()
        do { return try QueueAdmin(config: config) } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }

    static func change(_ options: ConfigOption, _ verb: String, _ id: String?) async throws {
        let admin = try admin(options)
        try await runAudited(admin.config, tool: "queue") { try await admin.change(verb, id, audit: $0) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List queued messages, oldest first.")
        @OptionGroup var options: ConfigOption
        @Flag(help: "One JSON envelope per message.") var json = false

        func run() throws {
            let queued = try Queue.admin(options).list()
            if json {
                let enc = JSONEncoder()
                enc.dateEncodingStrategy = .iso8601
                enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for e in queued { print(String(decoding: try enc.encode(e), as: UTF8.self)) }
                return
            }
            guard !queued.isEmpty else { print("the queue is empty"); return }
            var rows = [["ID", "ARRIVED", "SIZE", "FROM", "TO", "STATE"]]
            for e in queued {
                let state = e.held ? "held" : e.pending.first?.lastReply.map { "deferred: \($0)" } ?? "waiting"
                rows.append([e.id, String(AuditRecord.formatTime(e.arrival).prefix(19)).replacingOccurrences(of: "T", with: " "),
                             String(e.size), e.sender.isEmpty ? "<>" : e.sender,
                             e.pending.map(\.address).joined(separator: ","), state])
            }
            printTable(rows)
        }
    }

    struct Summary: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queued messages by destination domain and age.")
        @OptionGroup var options: ConfigOption
        func run() throws { print(try Queue.admin(options).summary()) }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a queued message: envelope, recipients' state, headers.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The queue ID.") var id: String
        func run() throws {
            do { print(try Queue.admin(options).show(id)) } catch {
                printError("mxgate queue: \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Flush: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Try delivery now: one message, or every message not on hold.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The queue ID (all when left out).") var id: String?
        func run() async throws { try await Queue.change(options, "flush", id) }
    }

    struct Hold: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Keep a message in the queue without delivering it.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The queue ID.") var id: String
        func run() async throws { try await Queue.change(options, "hold", id) }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deliver a held message again (now).")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The queue ID.") var id: String
        func run() async throws { try await Queue.change(options, "release", id) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a message from the queue (no bounce is sent).")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The queue ID.") var id: String
        func run() async throws { try await Queue.change(options, "delete", id) }
    }
}
