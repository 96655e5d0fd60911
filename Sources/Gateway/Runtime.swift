import Checks
import Classifier
import Foundation
import Logging
import MailMessage
import NIOCore
import NIOPosix
import NIOSSL
import Policy
import Relay
import SMTPProtocol

/// The configured virus scanner.
enum VirusScanner: Sendable {
    case clamd(ClamdClient)
    case embedded(EmbeddedEngine)
}

/// Everything built from one configuration that a reload replaces as a
/// whole. A session takes the runtime current at its start and keeps it to
/// the end, so a reload never changes the rules under an open transaction.
final class Runtime: Sendable {
    let config: GatewayConfig
    let gate: RelayGate
    let policy: PolicySet
    /// Where accepted mail goes ([relay] mode and downstream).
    let delivery: any Delivery
    /// Where the policy's `quarantine` puts a message.
    let quarantine: QuarantineDelivery
    /// Reverse DNS and GeoIP, set up only when the policy uses them.
    let checks: ClientChecks
    /// The analyzers the policy needs, stage by stage.
    let inspector: Inspector
    /// The virus scanner, when [clamav] is configured.
    let scanner: VirusScanner?
    let sslContext: NIOSSLContext?
    let limits: SMTPLimits
    /// The spool, in queue mode and for proxy mode's fallback.
    let queue: QueueService?
    /// The statistical classifier, when [classifier] names a model (one per process, kept across reloads).
    let classifier: SharedClassifier?
    /// Envelope rewriting ([rewrite]), applied to what is relayed, after the policy (as a milter: asked of the MTA).
    let rewriter: EnvelopeRewriter
    init(config: GatewayConfig, group: EventLoopGroup, queue: QueueService? = nil, state: SharedState? = nil) throws {
        self.queue = queue
        let rewriter: EnvelopeRewriter
        do {
            rewriter = EnvelopeRewriter(sender: try config.senderRewrite.map { try RewriteTable(path: $0) },
                                        recipient: try config.recipientRewrite.map { try RewriteTable(path: $0) },
                                        headers: config.rewriteHeaders)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "[rewrite] \(error)")])
        }
        self.rewriter = rewriter
        self.config = config
        self.gate = RelayGate(domains: config.domains)
        self.policy = try Runtime.loadPolicy(config)
        self.quarantine = QuarantineDelivery(store: QuarantineStore(directory: config.quarantineDirectory))
        self.checks = try Runtime.makeChecks(config, policy: policy)
        self.scanner = try Runtime.makeScanner(config)
        self.classifier = try Runtime.openClassifier(config)
        classifier?.watch { why in Logger(label: "mxgate.classifier").error("classifier: \(why)") }
        self.inspector = Inspector.live(policy: policy, config: config, checks: checks, scanner: scanner, classifier: classifier,
                                        state: state)
        self.limits = config.limits
        let spool = queue.map { QueueDelivery(queue: $0, rewriter: rewriter) }
        switch config.downstream {
        case _ where config.mode == .queue && spool != nil:
            delivery = spool!
        case .maildir(let dir):
            delivery = LocalMaildirDelivery(maildir: MaildirDelivery(root: dir), hostname: config.hostname)
        case .smtp(let host, let port):
            let pool = try DownstreamPool(options: config.downstreamOptions(host: host, port: port), group: group,
                                          maxIdle: config.poolSize, idleTimeout: config.poolIdleTime)
            delivery = ProxyDelivery(pool: pool, rewriter: rewriter, fallback: config.fallback == .queue ? spool : nil)
        }
        sslContext = try Runtime.makeServerTLS(config)
    }

    /// The server-side TLS context, read from the PEM files each time so a
    /// renewed certificate is picked up on reload. TLS 1.2 and later only.
    static func makeServerTLS(_ config: GatewayConfig) throws -> NIOSSLContext? {
        guard let certPath = config.tlsCertificate, let keyPath = config.tlsKey else { return nil }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certPath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            tls.minimumTLSVersion = .tlsv12
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0,
                                                    message: "cannot load TLS certificate \(certPath) / key \(keyPath): \(error)")])
        }
    }

    /// Loads policies/ and the tables they use; errors name FILE:LINE:COL.
    static func loadPolicy(_ config: GatewayConfig) throws(PolicyLoadError) -> PolicySet {
        let identity = GatewayIdentity(hostname: config.hostname, domains: config.domains,
                                       addresses: config.listen.map(\.host).filter { IPAddress($0) != nil })
        let policy = try PolicyLoader.load(policies: config.policiesDirectory, base: config.directory.isEmpty ? "." : config.directory,
                                           rules: config.rulesDirectory,
                                           identity: identity)
        // A rule on GeoIP facts without a database would silently never match.
        if policy.needsGeoIP && config.geoipDatabase == nil && config.geoipASNDatabase == nil {
            let rule = (policy.rules + policy.sections.flatMap(\.rules)).first { $0.condition.usesGeoIP }!
            let parts = rule.name.split(separator: ":")
            throw PolicyLoadError(diagnostics: [PolicyDiagnostic(
                file: parts.dropLast().joined(separator: ":"), line: Int(parts.last ?? "") ?? 0, column: 1,
                message: "country and asn need a GeoIP database: set [geoip] database (and asn_database) in \((config.file as NSString).lastPathComponent)")])
        }
        if policy.needsVirusScan && config.clamavMode == .off {
            let rule = (policy.rules + policy.sections.flatMap(\.rules)).first { $0.condition.usesVirusScan }!
            let parts = rule.name.split(separator: ":")
            throw PolicyLoadError(diagnostics: [PolicyDiagnostic(
                file: parts.dropLast().joined(separator: ":"), line: Int(parts.last ?? "") ?? 0, column: 1,
                message: "virus needs a scanner: set [clamav] mode = \"clamd\" and its socket or address in \((config.file as NSString).lastPathComponent)")])
        }
        return policy
    }

    /// clamd, or libclamav with its engine compiled here (start-up and
    /// reload run off the event loops).
    static func makeScanner(_ config: GatewayConfig) throws -> VirusScanner? {
        switch config.clamavMode {
        case .off:
            return nil
        case .clamd:
            if let path = config.clamdSocket {
                return .clamd(ClamdClient(address: .unix(path), timeout: config.clamavTimeout, poolSize: config.clamdPoolSize))
            }
            if let a = config.clamdAddress, let (h, p) = ConfigReader.parseHostPort(a) {
                return .clamd(ClamdClient(address: .tcp(host: h, port: p), timeout: config.clamavTimeout, poolSize: config.clamdPoolSize))
            }
            return nil
        case .embedded:
            do {
                return .embedded(try EmbeddedEngine(databaseDirectory: config.clamavDatabase))
            } catch {
                throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "[clamav] \(error)")])
            }
        }
    }

    /// The process's classifier for [classifier] model; a model file that
    /// cannot be read stops start-up (and a reload) with its name and why.
    static func openClassifier(_ config: GatewayConfig) throws -> SharedClassifier? {
        guard let k = config.classifier else { return nil }
        do {
            return try SharedClassifier.open(config.classifierStore(), dimensionBits: k.dimensionBits)
        } catch {
            throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "[classifier] \(error)")])
        }
    }

    /// Opens the resolver and GeoIP databases the policy needs.
    static func makeChecks(_ config: GatewayConfig, policy: PolicySet) throws -> ClientChecks {
        var resolver: DNSResolver?
        if policy.needsDNS || !policy.dnsLists.isEmpty || AuthChecks(policy: policy, config: config).any {
            let servers = config.dnsServers.compactMap(ConfigReader.parseResolver)
            do {
                resolver = try DNSResolver(servers: servers, timeout: config.dnsTimeout)
            } catch {
                throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "DNS: \(error)")])
            }
        }
        do {
            let geo = try config.geoipDatabase.map { try GeoIPDatabase(path: $0) }
            let asn = try config.geoipASNDatabase.map { try GeoIPDatabase(path: $0) }
            return ClientChecks(resolver: resolver, geo: geo, asnDatabase: asn)
        } catch {
            resolver?.close()
            throw ConfigErrors(errors: [ConfigError(file: config.file, line: 0, column: 0, message: "\(error)")])
        }
    }

    func shutdown() async {
        (checks.resolver as? DNSResolver)?.close()
        if case .clamd(let c)? = scanner { c.close() }
        await delivery.shutdown()
    }
}

extension Runtime {
    /// How far into the text the end of data looks for the end of the header section.
    var headerSectionLimit: Int { max(64 * 1024, limits.headerSize + 4) }

    /// [limits] header_size and max_received, on a whole message (SMTP or milter).
    func headerLimitRefusal(_ headers: HeaderBlock, headerBytes: Int, bodySize: Int) -> SMTPReply? {
        let limit = limits.headerSize
        if !headers.complete && bodySize > limit && headerBytes > limit {
            return SMTPReply(552, "5.3.4", "Message header section larger than \(limit) bytes")
        }
        let hops = headers.count("Received")
        if hops > limits.maxReceived {
            return SMTPReply(554, "5.4.6", "Too many hops (\(hops) Received headers): is there a mail loop?")
        }
        return nil
    }
}
