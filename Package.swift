// swift-tools-version: 6.1
import PackageDescription

/// scripts/fuzz.sh sets MXGATE_FUZZ: mxgate-fuzz then has libFuzzer's entry point instead of its corpus replayer.
let fuzzing = Context.environment["MXGATE_FUZZ"] != nil

let package = Package(
    name: "mxgate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mxgate", targets: ["mxgate"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        // DKIM's hashes and signatures (SHA-256, RSA, Ed25519).
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // The review console: HTTP server and bcrypt password hashes.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        // Tests only: reads the OpenSPF conformance suites (YAML).
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
    ],
    targets: [
        // The I/O-free SMTP core: parser, replies, framing, session state machine.
        .target(
            name: "SMTPProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        // The milter protocol (version 6), I/O-free: packets, commands, responses, negotiation.
        .target(name: "MilterProtocol"),
        // RFC 5322 message handling: header parsing, trace headers.
        .target(name: "MailMessage"),
        // Verdicts and the per-stage decision seam (relay gate first).
        .target(name: "Policy", dependencies: ["SMTPProtocol", "MailMessage", "Heuristics"]),
        // C libraries, each behind a thin Swift wrapper in Checks that owns every pointer.
        .systemLibrary(name: "CUnbound", providers: [.apt(["libunbound-dev"])]),
        .systemLibrary(name: "CMaxMindDB", providers: [.apt(["libmaxminddb-dev"])]),
        .systemLibrary(name: "CClamAV", providers: [.apt(["libclamav-dev"])]),
        // Facts from outside the session: DNS (libunbound) and GeoIP (libmaxminddb).
        .target(
            name: "Checks",
            dependencies: [
                "Policy", "MailMessage", "Threads", "CUnbound", "CMaxMindDB", "CClamAV",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Sender authentication: SPF (RFC 7208) over any DNS source, DKIM (RFC 6376).
        .target(name: "Auth", dependencies: [
            "Checks", "Policy", "MailMessage",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CryptoExtras", package: "swift-crypto"),
        ]),
        // Heuristic signals (phishing links, look-alike senders, header anomalies, risky attachments), I/O-free.
        .target(name: "Heuristics", dependencies: ["MailMessage"]),
        // The statistical spam classifier: features, online logistic regression, its model file.
        .target(name: "Classifier", dependencies: ["MailMessage", "Heuristics", "CChecksum", "Threads"]),
        // Long-lived helper threads, named for top -H and gdb.
        .target(name: "Threads"),
        // Audit records, the writer with rotation, and the reader used by `mxgate log`.
        .target(name: "Audit", dependencies: ["Threads"]),
        // CRC-32C (hardware where there is one) for the spool's file footer.
        .target(name: "CChecksum"),
        // Outbound SMTP client, proxy relay, Maildir delivery.
        .target(
            name: "Relay",
            dependencies: [
                "SMTPProtocol", "MailMessage", "CChecksum", "Audit", "Threads",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Composition: config, listeners, TLS, sessions wired to policy, relay and audit.
        .target(
            name: "Gateway",
            dependencies: [
                "SMTPProtocol", "MailMessage", "Policy", "Relay", "Audit", "Checks", "Auth", "Threads", "Classifier", "Heuristics", "State", "MilterProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        // Shared state ([state]): greylist, limits, greet-wait memory, the classifier's model; embedded or Redis (hiredis).
        .target(name: "State", dependencies: [
            "CHiredis", "Classifier",
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
        ]),
        // The review console ([web]): audit search over an SQLite index, "why", quarantine, statistics, queue, API.
        .target(
            name: "Console",
            dependencies: [
                "Gateway", "Audit", "Policy", "Relay", "Threads", "CSQLite", "MailMessage", "SMTPProtocol",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "mxgate",
            dependencies: [
                "Gateway", "Audit", "Relay", "Checks", "Classifier", "Console", "State",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // bench/: the rule engine's cost per message with large tables (not a test).
        .executableTarget(name: "policy-bench", dependencies: ["Gateway", "Policy", "SMTPProtocol", "MailMessage"]),
        .executableTarget(name: "content-bench", dependencies: ["Gateway", "Policy", "SMTPProtocol", "MailMessage"]),
        // libFuzzer targets (scripts/fuzz.sh); a plain build replays corpora.
        .executableTarget(
            name: "mxgate-fuzz",
            dependencies: ["SMTPProtocol", "MailMessage", "Policy", "Auth", "Heuristics", "Classifier", "MilterProtocol",
                           .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: fuzzing ? [.define("FUZZING"), .unsafeFlags(["-parse-as-library"])] : []
        ),
        // bench/dkim.sh: DKIM verification's CPU per message.
        .executableTarget(name: "auth-bench", dependencies: ["Auth", "Checks"]),
        // bench/classifier.sh: the classifier's and the heuristics' cost per message, the model's size.
        .executableTarget(name: "classifier-bench", dependencies: ["Classifier", "Heuristics", "MailMessage"]),
        .executableTarget(name: "clamd-bench", dependencies: ["Checks", "Relay", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(
            name: "SMTPProtocolTests",
            dependencies: ["SMTPProtocol", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "ClassifierTests", dependencies: ["Classifier", "MailMessage"]),
        .testTarget(name: "MilterProtocolTests", dependencies: ["MilterProtocol"]),
        .testTarget(name: "HeuristicsTests", dependencies: ["Heuristics", "MailMessage"]),
        .testTarget(
            name: "AuthTests",
            dependencies: ["Auth", "Checks", "Policy", .product(name: "Yams", package: "Yams")],
            exclude: ["Signers"],
            resources: [.copy("Suites"), .copy("Data")]
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: ["Gateway", "Policy", "Audit", "MailMessage", "Relay", "Threads", "Checks", "State", "SMTPProtocol"],
            exclude: ["Golden"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
