import Foundation
import NIOCore
import Policy
import Relay
import SMTPProtocol

/// One configuration problem, printed as `FILE:LINE:COL: message` by
/// `mxgate check` and on a failed reload.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// All errors found in one pass, so an admin fixes them in one go.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// mxgate.toml, validated. Relative paths are already resolved against the
/// file's own directory (DESIGN.md).
public struct GatewayConfig: Sendable {
    public struct Listen: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public enum RelayMode: String, Sendable { case proxy, queue }

    public enum Downstream: Sendable, Equatable {
        case smtp(host: String, port: Int)
        case maildir(String)
    }

    public var file: String
    public var directory: String

    // [server]
    public var listen: [Listen] = [Listen(host: "127.0.0.1", port: 2525)]
    public var hostname: String = GatewayConfig.systemHostname()
    public var maxConnections = 1000
    /// Started as root: bind the listeners, then run as this user.
    public var user: String?
    public var shutdownTimeout: Double = 30
    public var greeting: String = "ESMTP mxgate"

    // [limits]
    public var limits = SMTPLimits()
    public var bareNewline: BareNewlinePolicy = .reject
    public var memoryThreshold = 1 << 20

    // [relay]
    public var mode: RelayMode = .proxy
    public var downstream: Downstream = .maildir("var/mail")
    public var domains: [String] = []
    public var downstreamTLS: DownstreamOptions.TLSMode = .opportunistic
    public var downstreamVerify = false
    public var downstreamCA: String?
    public var connectTimeout: Double = 30
    public var relayCommandTimeout: Double = 300
    public var relayDataTimeout: Double = 600
    public var poolSize = 20
    public var poolIdleTimeout: Double = 60
    /// Where message text spills past `memory_threshold`.
    public var tempDirectory: String = NSTemporaryDirectory()

    /// The audit log cannot be written: "tempfail" new mail (451 at MAIL) or "accept" it.
    public var auditFailClosed = true

    // [metrics]: a Prometheus endpoint, off unless listen is set.
    public var metricsListen: Listen?

    // [tls]
    public var tlsCertificate: String?
    public var tlsKey: String?

    // [audit]
    public var auditPath = "var/audit.log"
    public var auditMaxBytes = 100 * 1024 * 1024
    public var auditKeep = 10

    // [policy]
    public var rulesDirectory = "rules"
    public var policiesDirectory = "policies"

    /// Proxy mode with the downstream unreachable: "none" answers 451,
    /// "queue" accepts into the spool (fsync'd before 250) and delivers later.
    public enum Fallback: String, Sendable { case none, queue }
    public var fallback: Fallback = .none

    // [queue]
    public var queueDirectory = "var/queue"
    public var queueMinBackoff: Double = 300
    public var queueMaxBackoff: Double = 4000
    public var queueLifetime: Double = 5 * 86400
    public var queueDelayWarning: Double?
    public var destinationConcurrency = 20
    public var maxDeliveries = 100
    public var mxPort = 25

    // [routes]: domain (".domain" for subdomains, "*" for all) → destination.
    public var routes: [String: Destination] = [:]

    // [rewrite]
    public var senderRewrite: String?
    public var recipientRewrite: String?
    public var rewriteHeaders = false

    // [quarantine]
    public var quarantineDirectory = "var/quarantine"
    /// Held messages older than this are deleted (seconds; default 30 days).
    public var quarantineRetention: Double = 30 * 86400

    // [dns]
    /// Resolvers as "IP" or "IP:PORT"; empty means the system's (/etc/resolv.conf).
    public var dnsServers: [String] = []
    public var dnsTimeout: Double = 5
    /// Time all DNS list lookups of one message may take together (like
    /// SpamAssassin's rbl_timeout); what is unanswered then counts as not listed.
    public var dnsBudget: Double = 10
    /// `[auth] authserv_id`: the name in our Authentication-Results headers (default: `hostname`).
    public var authservID: String?
    /// `[auth] spf = true`: check SPF for every message, for its
    /// Authentication-Results header, even when no rule looks at the result.
    public var spfAlways = false
    /// `[auth] dkim = true`: verify DKIM signatures of every message, likewise.
    public var dkimAlways = false
    /// `[auth] dmarc = true`: evaluate DMARC for every message (with SPF and DKIM), likewise.
    public var dmarcAlways = false
    /// `[auth] arc = true`: validate every message's ARC chain, likewise.
    public var arcAlways = false
    /// `[auth] trusted_arc_sealers`: ARC sealer domains (d= of ARC-Seal)
    /// whose ARC-Authentication-Results DMARC may take for a message they
    /// forwarded (mailing lists, forwarders you know).
    public var trustedARCSealers: [String] = []
    public var effectiveAuthservID: String { authservID ?? hostname }

    // [clamav]
    public enum ClamAVMode: String, Sendable { case off, clamd, embedded }
    public var clamavMode: ClamAVMode = .off
    /// clamd's LocalSocket path, or "HOST:PORT" of its TCPSocket.
    public var clamdSocket: String?
    public var clamdAddress: String?
    public var clamavTimeout: Double = 60
    /// Idle clamd sessions (IDSESSION) kept open for the next scans.
    public var clamdPoolSize = 8
    /// How often the embedded engine's signature folder is checked for
    /// changes (freshclam updates); 0 turns the check off (SIGHUP still reloads).
    public var clamavWatchInterval: Double = 60
    /// Scanner down or timing out: "tempfail" (fail closed, the default) or "accept".
    public var clamavFailOpen = false
    /// Signature folder for mode = "embedded" (freshclam's is /var/lib/clamav).
    public var clamavDatabase = "/var/lib/clamav"

    /// `[classifier]`, when a model file is set.
    public var classifier: ClassifierSettings?
    /// `[[scorers]]`: external spam scorers, asked in order at end of data.
    public var scorers: [ScorerSettings] = []
    /// `[web]`: the review console, when `listen` is set.
    public var web: WebSettings?
    /// `[state]`: where greylist, limits and greet-wait memory live (embedded unless `redis` is set).
    public var state = StateSettings()
    /// `[greylist]`: what the policy's `greylist` action waits for.
    public var greylist = GreylistSettings()
    /// `[milter]`: serve the milter protocol to an MTA, when `listen` is set.
    public var milter: MilterServerSettings?
    /// `[[milters]]`: milters mxgate asks, in order, at each stage.
    public var milters: [MilterClientSettings] = []

    // [geoip]
    public var geoipDatabase: String?
    public var geoipASNDatabase: String?

    public init(file: String) {
        self.file = file
        self.directory = (file as NSString).deletingLastPathComponent
    }

    public static func systemHostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    /// Reads and validates a config file; throws `ConfigErrors` listing every problem.
    public static func load(_ path: String) throws -> GatewayConfig {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        guard let data = FileManager.default.contents(atPath: absolute) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: 0, column: 0, message: "cannot read the file")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: 1, column: 1, message: "the file is not UTF-8")])
        }
        return try parse(text, file: path, absolutePath: absolute)
    }

    public static func parse(_ text: String, file: String, absolutePath: String) throws -> GatewayConfig {
        let root: TOMLTable
        do {
            root = try TOMLParser.parse(text)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: file, line: error.position.line, column: error.position.column, message: error.message)])
        }
        var config = GatewayConfig(file: absolutePath)
        var reader = ConfigReader(file: file)
        reader.read(root, into: &config)
        if !reader.errors.isEmpty { throw ConfigErrors(errors: reader.errors) }
        return config
    }

    /// Resolves a path from the file against the file's directory.
    public func resolve(_ p: String) -> String {
        if p.hasPrefix("/") { return p }
        var base = directory
        if base.isEmpty { base = "." }
        return (base as NSString).appendingPathComponent(p)
    }

    public var relayDomainsDescription: String { domains.joined(separator: ", ") }
}

/// Walks the TOML tree section by section, checking names and types and
/// remembering where each key was written.
struct ConfigReader {
    let file: String
    var errors: [ConfigError] = []

    init(file: String) { self.file = file }

    mutating func error(_ pos: TOMLPosition, _ message: String) {
        errors.append(ConfigError(file: file, line: pos.line, column: pos.column, message: message))
    }

    static let sections: [String: Set<String>] = [
        "server": ["listen", "hostname", "max_connections", "shutdown_timeout", "greeting", "user"],
        "limits": ["command_line_length", "text_line_length", "recipients", "message_size", "errors",
                   "command_timeout", "data_timeout", "bare_newline", "memory_threshold", "data_deadline", "greet_wait",
                   "stress_timeout", "header_size", "max_received"],
        "relay": ["mode", "downstream", "domains", "tls", "tls_verify", "tls_ca", "connect_timeout",
                  "command_timeout", "data_timeout", "pool_size", "pool_idle_timeout", "temp_directory", "fallback"],
        "tls": ["certificate", "key"],
        "audit": ["path", "max_size", "keep", "on_error"],
        "policy": ["rules", "policies"],
        "queue": ["directory", "min_backoff", "max_backoff", "lifetime", "delay_warning", "destination_concurrency",
                  "max_deliveries", "mx_port"],
        "routes": [],
        "rewrite": ["sender", "recipient", "headers"],
        "quarantine": ["directory", "retention"],
        "dns": ["servers", "timeout", "budget"],
        "auth": ["authserv_id", "spf", "dkim", "dmarc", "arc", "trusted_arc_sealers"],
        "geoip": ["database", "asn_database"],
        "metrics": ["listen"],
        "web": ConfigReader.webKeys,
        "state": ConfigReader.stateKeys,
        "greylist": ConfigReader.greylistKeys,
        "classifier": ConfigReader.classifierKeys,
        "scorers": ConfigReader.scorerKeys,
        "milter": ConfigReader.milterServerKeys,
        "milters": ConfigReader.milterClientKeys,
        "clamav": ["mode", "socket", "address", "timeout", "on_error", "database", "pool_size", "watch_interval"],
    ]

    mutating func read(_ root: TOMLTable, into c: inout GatewayConfig) {
        for key in root.keys {
            let node = root[key]!
            let pos = root.keyPositions[key] ?? node.position
            guard let known = Self.sections[key] else {
                error(pos, "unknown section [\(key)]; known sections are \(Self.sections.keys.sorted().map { "[\($0)]" }.joined(separator: ", "))")
                continue
            }
            if key == "scorers" {
                readScorers(node, &c)
                continue
            }
            if key == "milters" {
                readMilterClients(node, &c)
                continue
            }
            guard case .table(let t) = node.value else {
                error(pos, "'\(key)' must be a table ([\(key)])")
                continue
            }
            for k in t.keys where !known.contains(k) && key != "routes" {
                error(t.keyPositions[k] ?? t[k]!.position, "unknown key '\(k)' in [\(key)]; known keys are \(known.sorted().joined(separator: ", "))")
            }
            var s = Section(name: key, table: t)
            switch key {
            case "server": readServer(&s, &c)
            case "limits": readLimits(&s, &c)
            case "relay": readRelay(&s, &c)
            case "tls":
                c.tlsCertificate = string(&s, "certificate").map(c.resolve)
                c.tlsKey = string(&s, "key").map(c.resolve)
                if (c.tlsCertificate == nil) != (c.tlsKey == nil), let p = t.keyPositions[c.tlsCertificate == nil ? "key" : "certificate"] {
                    error(p, "[tls] needs both certificate and key")
                }
            case "audit":
                if let p = string(&s, "path") { c.auditPath = p }
                if let n = size(&s, "max_size") { c.auditMaxBytes = n }
                if let n = integer(&s, "keep", min: 0) { c.auditKeep = n }
                if let v = choice(&s, "on_error", ["tempfail", "accept"]) { c.auditFailClosed = v == "tempfail" }
            case "policy":
                if let p = string(&s, "rules") { c.rulesDirectory = p }
                if let p = string(&s, "policies") { c.policiesDirectory = p }
            case "queue":
                if let p = string(&s, "directory") { c.queueDirectory = p }
                if let d = duration(&s, "min_backoff") { c.queueMinBackoff = d }
                if let d = duration(&s, "max_backoff") { c.queueMaxBackoff = d }
                if let d = duration(&s, "lifetime") { c.queueLifetime = d }
                if let d = duration(&s, "delay_warning", zero: true) { c.queueDelayWarning = d > 0 ? d : nil }
                if let n = integer(&s, "destination_concurrency") { c.destinationConcurrency = n }
                if let n = integer(&s, "max_deliveries") { c.maxDeliveries = n }
                if let n = integer(&s, "mx_port") { c.mxPort = n }
                if c.queueMaxBackoff < c.queueMinBackoff, let p = t.keyPositions["max_backoff"] {
                    error(p, "[queue] max_backoff is shorter than min_backoff")
                }
            case "routes":
                readRoutes(t, &c)
            case "metrics":
                if let l = string(&s, "listen") {
                    if let (h, p) = Self.parseHostPort(l) {
                        c.metricsListen = GatewayConfig.Listen(host: h, port: p)
                    } else {
                        error(t["listen"]!.position, "[metrics] listen must be HOST:PORT, such as \"127.0.0.1:9125\"")
                    }
                }
            case "rewrite":
                c.senderRewrite = string(&s, "sender").map(c.resolve)
                c.recipientRewrite = string(&s, "recipient").map(c.resolve)
                if let b = bool(&s, "headers") { c.rewriteHeaders = b }
            case "classifier":
                readClassifier(&s, &c)
            case "web":
                readWeb(&s, &c)
            case "state":
                readState(&s, &c)
            case "greylist":
                readGreylist(&s, &c)
            case "milter":
                readMilterServer(&s, &c)
            case "quarantine":
                if let p = string(&s, "directory") { c.quarantineDirectory = p }
                if let d = duration(&s, "retention") { c.quarantineRetention = d }
            case "auth":
                if let id = string(&s, "authserv_id") { c.authservID = id }
                if let b = bool(&s, "spf") { c.spfAlways = b }
                if let b = bool(&s, "dkim") { c.dkimAlways = b }
                if let b = bool(&s, "dmarc") { c.dmarcAlways = b }
                if let b = bool(&s, "arc") { c.arcAlways = b }
                if let list = stringArray(&s, "trusted_arc_sealers") {
                    c.trustedARCSealers = list.map { $0.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: ".")) }
                }
            case "dns":
                if let list = stringArray(&s, "servers") {
                    for (i, item) in list.enumerated() where Self.parseResolver(item) == nil {
                        if case .array(let items) = t["servers"]!.value { error(items[i].position, "[dns] servers: '\(item)' is not IP or IP:PORT") }
                    }
                    c.dnsServers = list
                }
                if let d = duration(&s, "timeout") { c.dnsTimeout = d }
                if let d = duration(&s, "budget") { c.dnsBudget = d }
            case "clamav":
                if let m = choice(&s, "mode", ["off", "clamd", "embedded"]) {
                    c.clamavMode = GatewayConfig.ClamAVMode(rawValue: m)!
                }
                if let d = string(&s, "database") { c.clamavDatabase = c.resolve(d) }
                c.clamdSocket = string(&s, "socket").map(c.resolve)
                if let a = string(&s, "address") {
                    if Self.parseHostPort(a) == nil { error(t["address"]!.position, "[clamav] address must be HOST:PORT, not \"\(a)\"") }
                    c.clamdAddress = a
                }
                if let d = duration(&s, "timeout") { c.clamavTimeout = d }
                if let n = integer(&s, "pool_size", min: 0) { c.clamdPoolSize = n }
                if let d = duration(&s, "watch_interval", zero: true) { c.clamavWatchInterval = d }
                if let e = choice(&s, "on_error", ["tempfail", "accept"]) { c.clamavFailOpen = e == "accept" }
                if c.clamavMode == .clamd && c.clamdSocket == nil && c.clamdAddress == nil, let p = root.keyPositions["clamav"] {
                    error(p, "[clamav] mode = \"clamd\" needs socket = \"/run/clamav/clamd.ctl\" or address = \"127.0.0.1:3310\"")
                }
            case "geoip":
                c.geoipDatabase = string(&s, "database").map(c.resolve)
                c.geoipASNDatabase = string(&s, "asn_database").map(c.resolve)
            default: break
            }
        }
        c.auditPath = c.resolve(c.auditPath)
        c.rulesDirectory = c.resolve(c.rulesDirectory)
        c.policiesDirectory = c.resolve(c.policiesDirectory)
        c.queueDirectory = c.resolve(c.queueDirectory)
        c.quarantineDirectory = c.resolve(c.quarantineDirectory)
        if var w = c.web {
            w.users = c.resolve(w.users)
            w.index = w.index.isEmpty ? c.auditPath + ".index" : c.resolve(w.index)
            w.allowList = w.allowList.isEmpty ? c.rulesDirectory + "/allowed-senders.list" : c.resolve(w.allowList)
            if w.tls && c.tlsCertificate == nil, let p = root.keyPositions["web"] {
                error(p, "[web] tls = true needs the [tls] certificate and key")
            }
            c.web = w
        }
        if case .maildir(let d) = c.downstream { c.downstream = .maildir(c.resolve(d)) }
        if c.domains.isEmpty {
            let pos = root.keyPositions["relay"] ?? TOMLPosition(line: 1, column: 1)
            error(pos, "[relay] domains is empty: every recipient would be refused; list the domains this gateway accepts mail for")
        }
    }

    struct Section {
        var name: String
        var table: TOMLTable
    }

    mutating func node(_ s: inout Section, _ key: String) -> TOMLNode? { s.table[key] }

    mutating func string(_ s: inout Section, _ key: String) -> String? {
        guard let n = s.table[key] else { return nil }
        guard case .string(let v) = n.value else {
            error(n.position, "[\(s.name)] \(key) must be a string, not \(n.value.typeName)")
            return nil
        }
        return v
    }

    mutating func bool(_ s: inout Section, _ key: String) -> Bool? {
        guard let n = s.table[key] else { return nil }
        guard case .bool(let v) = n.value else {
            error(n.position, "[\(s.name)] \(key) must be true or false, not \(n.value.typeName)")
            return nil
        }
        return v
    }

    mutating func integer(_ s: inout Section, _ key: String, min: Int = 1) -> Int? {
        guard let n = s.table[key] else { return nil }
        guard case .integer(let v) = n.value else {
            error(n.position, "[\(s.name)] \(key) must be an integer, not \(n.value.typeName)")
            return nil
        }
        guard v >= min else {
            error(n.position, "[\(s.name)] \(key) must be at least \(min)")
            return nil
        }
        return v
    }

    /// A byte count: an integer, or a string like "25M", "512K", "1G".
    mutating func size(_ s: inout Section, _ key: String) -> Int? {
        guard let n = s.table[key] else { return nil }
        switch n.value {
        case .integer(let v) where v > 0: return v
        case .string(let str):
            if let v = Self.parseSize(str) { return v }
        default: break
        }
        error(n.position, "[\(s.name)] \(key) must be a positive size such as 26214400 or \"25M\"")
        return nil
    }

    /// A size above zero (Policy's `parseSize`: 26214400, 25M, 1.5G).
    static func parseSize(_ str: String) -> Int? {
        Policy.parseSize(str).flatMap { $0 > 0 ? $0 : nil }
    }

    /// Seconds: a number, or a string like "30s", "5m", "1h".
    /// `zero` allows "0s" where zero means "off".
    mutating func duration(_ s: inout Section, _ key: String, zero: Bool = false) -> Double? {
        guard let n = s.table[key] else { return nil }
        let least = zero ? 0.0 : Double.leastNonzeroMagnitude
        switch n.value {
        case .integer(let v) where Double(v) >= least: return Double(v)
        case .float(let v) where v >= least: return v
        case .string(let str):
            let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
            if str.hasSuffix("ms"), let v = Double(str.dropLast(2)), v / 1000 >= least { return v / 1000 }
            if let u = str.last, let m = units[u], let v = Double(str.dropLast()), v >= least { return v * m }
        default: break
        }
        error(n.position, "[\(s.name)] \(key) must be a \(zero ? "" : "positive ")duration such as 300, \"5m\" or \"30d\"")
        return nil
    }

    mutating func stringArray(_ s: inout Section, _ key: String) -> [String]? {
        guard let n = s.table[key] else { return nil }
        guard case .array(let items) = n.value else {
            error(n.position, "[\(s.name)] \(key) must be an array of strings, not \(n.value.typeName)")
            return nil
        }
        var out: [String] = []
        for item in items {
            guard case .string(let v) = item.value else {
                error(item.position, "[\(s.name)] \(key) must contain only strings, not \(item.value.typeName)")
                continue
            }
            out.append(v)
        }
        return out
    }

    mutating func choice(_ s: inout Section, _ key: String, _ allowed: [String]) -> String? {
        guard let v = string(&s, key) else { return nil }
        guard allowed.contains(v) else {
            error(s.table[key]!.position, "[\(s.name)] \(key) must be one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", ")), not \"\(v)\"")
            return nil
        }
        return v
    }

    mutating func readServer(_ s: inout Section, _ c: inout GatewayConfig) {
        if let list = stringArray(&s, "listen") {
            var out: [GatewayConfig.Listen] = []
            for (i, item) in list.enumerated() {
                if let l = Self.parseHostPort(item) {
                    out.append(GatewayConfig.Listen(host: l.0, port: l.1))
                } else if case .array(let items) = s.table["listen"]!.value {
                    error(items[i].position, "[server] listen: '\(item)' is not HOST:PORT (use [::1]:25 for IPv6)")
                }
            }
            if out.isEmpty && errors.isEmpty { error(s.table["listen"]!.position, "[server] listen needs at least one address") }
            c.listen = out
        }
        if let h = string(&s, "hostname") {
            if h.isEmpty || h.contains(" ") { error(s.table["hostname"]!.position, "[server] hostname must be a host name") } else { c.hostname = h }
        }
        if let n = integer(&s, "max_connections") { c.maxConnections = n }
        if let d = duration(&s, "shutdown_timeout") { c.shutdownTimeout = d }
        if let g = string(&s, "greeting") { c.greeting = g }
        if let u = string(&s, "user") {
            if getpwnam(u) == nil { error(s.table["user"]!.position, "[server] user: no such user '\(u)'") }
            c.user = u
        }
    }

    mutating func readLimits(_ s: inout Section, _ c: inout GatewayConfig) {
        if let n = integer(&s, "command_line_length", min: 512) { c.limits.commandLineLength = n }
        if let n = integer(&s, "text_line_length", min: 1000) { c.limits.textLineLength = n }
        if let n = integer(&s, "recipients", min: 100) { c.limits.recipients = n }
        if let n = size(&s, "message_size") { c.limits.messageSize = n }
        if let n = integer(&s, "errors") { c.limits.errors = n }
        if let d = duration(&s, "command_timeout") { c.limits.commandTimeout = d }
        if let d = duration(&s, "data_timeout") { c.limits.dataBlockTimeout = d }
        if let d = duration(&s, "data_deadline") { c.limits.dataDeadline = d }
        if let n = size(&s, "header_size") { c.limits.headerSize = n }
        if let n = integer(&s, "max_received") { c.limits.maxReceived = n }
        if let d = duration(&s, "greet_wait", zero: true) { c.limits.greetWait = d }
        if let d = duration(&s, "stress_timeout") { c.limits.stressTimeout = d }
        if let v = choice(&s, "bare_newline", ["reject", "normalize"]) { c.bareNewline = BareNewlinePolicy(rawValue: v)! }
        if let n = size(&s, "memory_threshold") { c.memoryThreshold = n }
    }

    /// `"example.org" = "10.0.0.5:25"`, `= "mx"`, `= "maildir:DIR"`, or an
    /// inline table `{ downstream = "…", tls = "required", tls_verify = true }`.
    mutating func readRoutes(_ t: TOMLTable, _ c: inout GatewayConfig) {
        for key in t.keys {
            let node = t[key]!
            let pos = t.keyPositions[key] ?? node.position
            let domain = key.lowercased()
            if domain != "*" && (try? AddressParser.parseMailbox("x@" + (domain.hasPrefix(".") ? String(domain.dropFirst()) : domain))) == nil {
                error(pos, "[routes] '\(key)' is not a domain (quote it: \"example.org\" = \"HOST:PORT\"); \".example.org\" covers subdomains, \"*\" every domain")
                continue
            }
            var target: String?
            var tls = c.downstreamTLS
            var verify = false
            switch node.value {
            case .string(let v):
                target = v
            case .table(let inline):
                var s = Section(name: "routes.\(key)", table: inline)
                for k in inline.keys where !["downstream", "tls", "tls_verify"].contains(k) {
                    error(inline.keyPositions[k] ?? pos, "unknown key '\(k)' in route \(key); known keys are downstream, tls, tls_verify")
                }
                target = string(&s, "downstream")
                if target == nil { error(pos, "route \(key) needs downstream = \"HOST:PORT\" or \"mx\"") }
                if let v = choice(&s, "tls", ["none", "opportunistic", "required"]) { tls = .init(rawValue: v)! }
                if let v = bool(&s, "tls_verify") { verify = v }
            default:
                error(node.position, "route \(key) must be \"HOST:PORT\", \"mx\", \"maildir:DIR\" or { downstream = …, tls = … }")
            }
            guard let target else { continue }
            if target == "mx" {
                c.routes[domain] = .mx(domain: domain, tls: tls, verify: verify)
            } else if target.hasPrefix("maildir:"), target.count > 8 {
                c.routes[domain] = .maildir(c.resolve(String(target.dropFirst(8))))
            } else if let (h, p) = Self.parseHostPort(target) {
                c.routes[domain] = .smtp(host: h, port: p, tls: tls, verify: verify)
            } else {
                error(node.position, "route \(key): '\(target)' is not HOST:PORT, \"mx\" or \"maildir:DIR\"")
            }
        }
    }

    mutating func readRelay(_ s: inout Section, _ c: inout GatewayConfig) {
        if let m = choice(&s, "mode", ["proxy", "queue"]) {
            c.mode = GatewayConfig.RelayMode(rawValue: m)!
        }
        if let f = choice(&s, "fallback", ["none", "queue"]) { c.fallback = GatewayConfig.Fallback(rawValue: f)! }
        if let d = string(&s, "downstream") {
            if d.hasPrefix("maildir:") {
                let dir = String(d.dropFirst("maildir:".count))
                if dir.isEmpty { error(s.table["downstream"]!.position, "[relay] downstream \"maildir:\" needs a directory") }
                c.downstream = .maildir(dir)
            } else if let (h, p) = Self.parseHostPort(d) {
                c.downstream = .smtp(host: h, port: p)
            } else {
                error(s.table["downstream"]!.position, "[relay] downstream must be \"HOST:PORT\" or \"maildir:DIR\", not \"\(d)\"")
            }
        }
        if let list = stringArray(&s, "domains") {
            for (i, d) in list.enumerated() {
                let bare = d.hasPrefix(".") ? String(d.dropFirst()) : d
                if (try? AddressParser.parseMailbox("x@" + bare)) == nil, case .array(let items) = s.table["domains"]!.value {
                    error(items[i].position, "[relay] domains: '\(d)' is not a domain name")
                }
            }
            c.domains = list.map { $0.lowercased() }
        }
        if let t = choice(&s, "tls", ["none", "opportunistic", "required"]) { c.downstreamTLS = .init(rawValue: t)! }
        if let v = bool(&s, "tls_verify") { c.downstreamVerify = v }
        if let ca = string(&s, "tls_ca") { c.downstreamCA = c.resolve(ca) }
        if let d = duration(&s, "connect_timeout") { c.connectTimeout = d }
        if let d = duration(&s, "command_timeout") { c.relayCommandTimeout = d }
        if let d = duration(&s, "data_timeout") { c.relayDataTimeout = d }
        if let n = integer(&s, "pool_size", min: 0) { c.poolSize = n }
        if let d = duration(&s, "pool_idle_timeout") { c.poolIdleTimeout = d }
        if let t = string(&s, "temp_directory") { c.tempDirectory = c.resolve(t) }
    }

    /// "192.0.2.53", "192.0.2.53:5353", "::1", "[::1]:5353" → (ip, port).
    static func parseResolver(_ s: String) -> (String, Int)? {
        if let (h, p) = parseHostPort(s), h.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }) { return (h, p) }
        if s.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }), s.contains(".") || s.contains(":") { return (s, 53) }
        return nil
    }

    /// "host:port", "[v6]:port".
    static func parseHostPort(_ s: String) -> (String, Int)? {
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (0...65535).contains(p), !host.isEmpty else { return nil }
            return (host, p)
        }
        guard let colon = s.lastIndex(of: ":") else { return nil }
        let host = String(s[..<colon])
        guard !host.isEmpty, !host.contains(":"), let p = Int(s[s.index(after: colon)...]), (0...65535).contains(p) else { return nil }
        return (host, p)
    }
}
