import Audit
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// What the gateway counts for Prometheus ([metrics] listen, off by
/// default): connections, transactions by verdict, downstream and scanner
/// latency, the queue. Recording is a few atomic operations, so sessions
/// record whether or not anything scrapes.
final class GatewayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let connections: Counter
    let openConnections: Gauge
    private let transactions: [String: Counter]
    let relaySeconds: DurationHistogram
    let scanSeconds: DurationHistogram
    let scanFailures: Counter
    let queueDepth: Gauge
    let queueInFlight: Gauge
    private let deliveries: [String: Counter]
    private let stateFailures: [String: Counter]

    static let latencyBuckets: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                                             .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                             .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30)]

    /// "mxgate_NAME_UNIT" with its help line.
    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "mxgate", metricName: metric, unitName: unit, helpText: help)
    }

    init() {
        connections = registry.makeCounter(descriptor: Self.name("connections", "total", "Client connections accepted"))
        openConnections = registry.makeGauge(descriptor: Self.name("connections", "open", "Client connections open now"))
        transactions = Self.counters(registry, Self.name("transactions", "total", "Messages by verdict at end of data"),
                                     label: "verdict", values: AuditRecord.Verdict.allCases.map(\.rawValue))
        relaySeconds = registry.makeDurationHistogram(
            descriptor: Self.name("relay_duration", "seconds", "Handing one message to the downstream or the spool, until its answer"),
            buckets: Self.latencyBuckets)
        scanSeconds = registry.makeDurationHistogram(descriptor: Self.name("scan_duration", "seconds", "One virus scan"),
                                                     buckets: Self.latencyBuckets)
        scanFailures = registry.makeCounter(descriptor: Self.name("scan_failures", "total", "Virus scans that failed (scanner down or timing out)"))
        queueDepth = registry.makeGauge(descriptor: Self.name("queue", "messages", "Messages in the queue"))
        queueInFlight = registry.makeGauge(descriptor: Self.name("queue_deliveries", "in_flight", "Deliveries in progress"))
        deliveries = Self.counters(registry, Self.name("queue_deliveries", "total", "Queue delivery attempts by outcome (per group of recipients)"),
                                   label: "outcome", values: ["delivered", "deferred", "failed", "expired", "bounced"])
        stateFailures = Self.counters(registry, Self.name("state_failures", "total", "Calls to the shared state ([state] redis) that failed, by use"),
                                      label: "use", values: SharedState.Use.allCases.map(\.rawValue))
    }

    /// One counter per label value, all under one metric name.
    private static func counters(_ registry: PrometheusCollectorRegistry, _ name: MetricNameDescriptor, label: String,
                                 values: [String]) -> [String: Counter] {
        Dictionary(uniqueKeysWithValues: values.map { ($0, registry.makeCounter(descriptor: name, labels: [(label, $0)])) })
    }

    func transaction(_ verdict: String) { transactions[verdict]?.increment() }
    func delivery(_ outcome: String) { deliveries[outcome]?.increment() }
    func stateFailure(_ use: SharedState.Use) { stateFailures[use.rawValue]?.increment() }
}

/// GET /metrics over HTTP/1.1 on [metrics] listen; anything else is 404.
enum MetricsServer {
    static func start(host: String, port: Int, group: EventLoopGroup, metrics: GatewayMetrics,
                      refresh: @escaping @Sendable () -> Void) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                ch.pipeline.configureHTTPServerPipeline().flatMap {
                    ch.pipeline.addHandler(Handler(metrics: metrics, refresh: refresh))
                }
            }
            .bind(host: host, port: port).get()
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let metrics: GatewayMetrics
        let refresh: @Sendable () -> Void
        private var path = ""

        init(metrics: GatewayMetrics, refresh: @escaping @Sendable () -> Void) {
            self.metrics = metrics
            self.refresh = refresh
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                path = head.uri
            case .body:
                break
            case .end:
                var body = ByteBuffer()
                var status = HTTPResponseStatus.ok
                if path == "/metrics" || path.hasPrefix("/metrics?") {
                    refresh()
                    body.writeBytes(metrics.registry.emitToBuffer())
                } else {
                    status = .notFound
                    body.writeString("mxgate: metrics are at /metrics\n")
                }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
                headers.add(name: "Content-Length", value: "\(body.readableBytes)")
                headers.add(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
