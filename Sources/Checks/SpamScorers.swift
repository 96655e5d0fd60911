import Foundation
import MailMessage

/// What an external scorer said of a message: its total, its own
/// threshold, its action (rspamd) and each rule that scored.
public struct ExternalVerdict: Sendable, Equatable {
    public var score: Double
    public var required: Double?
    public var action: String?
    public var symbols: [String: Double]
}

/// The envelope the scorers are told (rspamd's request headers; spamd
/// learns it from the message only).
public struct ScorerEnvelope: Sendable {
    public var clientIP: String
    public var helo: String?
    public var mailFrom: String
    public var recipients: [String]
    public var hostname: String?
    public init(clientIP: String, helo: String?, mailFrom: String, recipients: [String], hostname: String?) {
        self.clientIP = clientIP
        self.helo = helo
        self.mailFrom = mailFrom
        self.recipients = recipients
        self.hostname = hostname
    }
}

/// Where a scorer listens, and how long one exchange with it may take.
public struct ScorerEndpoint: Sendable {
    public var host: String
    public var port: Int
    public var timeout: Double
    public init(host: String, port: Int, timeout: Double) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    func connect() throws -> BlockingSocket { try BlockingSocket.connect(host: host, port: port, timeout: timeout) }
}

/// rspamd's normal worker: POST /checkv2 with the envelope in headers
/// (rspamd's "protocol" documentation), JSON back.
public struct RspamdClient: Sendable {
    public let endpoint: ScorerEndpoint
    public init(_ endpoint: ScorerEndpoint) { self.endpoint = endpoint }

    public func check(_ message: [UInt8], _ env: ScorerEnvelope) throws -> ExternalVerdict {
        let s = try endpoint.connect()
        defer { s.close() }
        var head = "POST /checkv2 HTTP/1.0\r\nContent-Length: \(message.count)\r\nIP: \(env.clientIP)\r\nFrom: \(env.mailFrom)\r\n"
        if let h = env.helo { head += "Helo: \(h)\r\n" }
        if let h = env.hostname { head += "Hostname: \(h)\r\n" }
        for r in env.recipients { head += "Rcpt: \(r)\r\n" }
        head += "\r\n"
        try s.write(Array(head.utf8.filter { $0 != 0 }))
        try s.write(message)
        let reply = try s.readToEnd()
        guard let split = ByteSearch.firstIndex(of: [13, 10, 13, 10], in: reply) else { throw BlockingSocket.Failure("rspamd sent no HTTP reply") }
        let status = String(decoding: reply[..<split], as: UTF8.self).split(separator: " ").dropFirst().first.map(String.init) ?? ""
        guard status == "200" else { throw BlockingSocket.Failure("rspamd answered HTTP \(status.isEmpty ? "?" : status)") }
        let body = Data(reply[(split + 4)...])
        guard let json = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let score = json["score"] as? Double else {
            throw BlockingSocket.Failure("rspamd's answer is not the JSON of /checkv2")
        }
        var symbols: [String: Double] = [:]
        for (name, v) in json["symbols"] as? [String: Any] ?? [:] {
            if let d = v as? [String: Any], let sc = d["score"] as? Double, sc != 0 { symbols[name] = sc }
        }
        return ExternalVerdict(score: score, required: json["required_score"] as? Double, action: json["action"] as? String, symbols: symbols)
    }

}

/// SpamAssassin's spamd: the SPAMC/1.5 protocol's REPORT command
/// (spamd(1); the "Spam:" header and the report's score lines).
public struct SpamdClient: Sendable {
    public let endpoint: ScorerEndpoint
    public init(_ endpoint: ScorerEndpoint) { self.endpoint = endpoint }

    public func check(_ message: [UInt8], _ env: ScorerEnvelope) throws -> ExternalVerdict {
        let s = try endpoint.connect()
        defer { s.close() }
        // spamd reads exactly Content-length bytes; CRLF as received.
        try s.write(Array("REPORT SPAMC/1.5\r\nContent-length: \(message.count)\r\n\r\n".utf8))
        try s.write(message)
        s.shutdownWrite()
        return try Self.parse(String(decoding: try s.readToEnd(), as: UTF8.self))
    }

    static func parse(_ reply: String) throws -> ExternalVerdict {
        let lines = reply.components(separatedBy: .newlines)  // the headers end in CRLF, the report in LF
        guard let first = lines.first, first.hasPrefix("SPAMD/") else { throw BlockingSocket.Failure("spamd sent no SPAMD reply") }
        guard first.contains(" 0 EX_OK") else { throw BlockingSocket.Failure("spamd answered \(first.prefix(80))") }
        guard let spam = lines.first(where: { $0.hasPrefix("Spam:") }) else { throw BlockingSocket.Failure("spamd's reply has no Spam: line") }
        // Spam: True ; 15.2 / 5.0
        let nums = spam.split(separator: ";").last?.split(separator: "/").map { Double($0.trimmingCharacters(in: .whitespaces)) } ?? []
        guard nums.count == 2, let score = nums[0] else { throw BlockingSocket.Failure("spamd's Spam: line is malformed") }
        var symbols: [String: Double] = [:]
        // Report lines: " 1.2 RULE_NAME            description" (after the "pts rule name" header).
        for line in lines {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let pts = Double(parts[0]), pts != 0,
                  parts[1].allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) else { continue }
            symbols[String(parts[1]), default: 0] += pts
        }
        return ExternalVerdict(score: score, required: nums[1], action: nil, symbols: symbols)
    }
}
