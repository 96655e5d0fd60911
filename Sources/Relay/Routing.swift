import Foundation
import MailMessage

/// Where mail for a domain goes from the queue.
public enum Destination: Hashable, Sendable, CustomStringConvertible {
    /// A fixed SMTP host, with its own TLS demands.
    case smtp(host: String, port: Int, tls: DownstreamOptions.TLSMode, verify: Bool)
    /// The domain's MX hosts (RFC 5321 §5.1), looked up through the configured resolver.
    case mx(domain: String, tls: DownstreamOptions.TLSMode, verify: Bool)
    /// Local Maildir delivery.
    case maildir(String)

    /// "host:port", an IPv6 address in brackets. On bytes: Foundation's
    /// `contains` cost thousands of instructions per delivery.
    public static func hostPort(_ host: String, _ port: Int) -> String {
        host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public var description: String {
        switch self {
        case .smtp(let h, let p, _, _): return Self.hostPort(h, p)
        case .mx(let d, _, _): return "mx:\(d)"
        case .maildir(let dir): return "maildir:\(dir)"
        }
    }
}

/// The transport map: per-domain routes from `[routes]`, the default
/// downstream for the accepted domains, and MX lookup for everything else
/// (in practice, bounces to senders elsewhere).
public struct Router: Sendable {
    /// Domain → route; a key starting with "." covers the domain's subdomains.
    public var routes: [String: Destination]
    public var defaultRoute: Destination
    public var localDomains: Set<String>
    /// TLS for MX delivery, where no route says otherwise.
    public var outboundTLS: DownstreamOptions.TLSMode

    public init(routes: [String: Destination], defaultRoute: Destination, localDomains: [String],
                outboundTLS: DownstreamOptions.TLSMode = .opportunistic) {
        self.routes = routes
        self.defaultRoute = defaultRoute
        self.localDomains = Set(localDomains.map { $0.lowercased() })
        self.outboundTLS = outboundTLS
    }

    public func destination(for address: String) -> Destination {
        let domain = address.split(separator: "@").last.map { $0.lowercased() } ?? ""
        if let d = routes[domain] { return d }
        var parts = domain.split(separator: ".")
        while parts.count > 1 {
            parts.removeFirst()
            if let d = routes["." + parts.joined(separator: ".")] { return d }
        }
        if let d = routes["*"] { return d }
        if localDomains.contains(domain) || localDomains.contains(where: { $0.hasPrefix(".") && domain.hasSuffix($0) }) {
            return defaultRoute
        }
        return .mx(domain: domain, tls: outboundTLS, verify: false)
    }
}

/// Address rewriting (like Postfix's canonical and virtual maps): a table of
/// `from to` lines, where `user@old.example user@new.example` maps one
/// address and `@old.example @new.example` maps a whole domain (keeping the
/// local part). The first matching line wins; an exact address beats its domain.
public struct RewriteTable: Sendable {
    private var addresses: [String: String] = [:]
    private var domains: [String: String] = [:]
    public let path: String

    public init(path: String) throws {
        self.path = path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RelayError.local("cannot read rewrite table \(path)")
        }
        var problems: [String] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if fields.isEmpty { continue }
            guard fields.count == 2 else {
                problems.append("\(path):\(i + 1):1: expected 'FROM TO' (an address or @domain each)")
                continue
            }
            let (from, to) = (fields[0].lowercased(), fields[1])
            if from.hasPrefix("@") {
                guard to.hasPrefix("@"), to.count > 1, from.count > 1 else {
                    problems.append("\(path):\(i + 1):1: a domain (@old.example) maps to a domain (@new.example)")
                    continue
                }
                if domains[String(from.dropFirst())] == nil { domains[String(from.dropFirst())] = String(to.dropFirst()) }
            } else {
                guard from.contains("@"), to.contains("@"), !to.hasPrefix("@") else {
                    problems.append("\(path):\(i + 1):1: an address maps to an address (user@new.example)")
                    continue
                }
                if addresses[from] == nil { addresses[from] = to }
            }
        }
        if !problems.isEmpty { throw RelayError.local(problems.joined(separator: "\n")) }
    }

    /// The rewritten address, or nil when no line applies.
    public func rewrite(_ address: String) -> String? {
        if let a = addresses[address.lowercased()] { return a }
        guard let at = address.lastIndex(of: "@") else { return nil }
        let domain = address[address.index(after: at)...].lowercased()
        guard let d = domains[domain] else { return nil }
        return String(address[..<at]) + "@" + d
    }
}

/// Rewriting in the message header ([rewrite] headers = true), as Postfix's
/// canonical maps do: the sender table applies to From, Sender and
/// Reply-To, the recipient table to To and Cc. Display names, comments and
/// folding stay as they are; only the addresses change.
public enum HeaderRewriter {
    static let senderFields: Set<String> = ["from", "sender", "reply-to"]
    static let recipientFields: Set<String> = ["to", "cc"]

    /// The rewritten header section (through its empty line) and how many
    /// bytes of `text` it replaces; nil when nothing changes.
    public static func rewrite(_ text: [UInt8], sender: RewriteTable?, recipient: RewriteTable?) -> (header: [UInt8], replaces: Int)? {
        guard sender != nil || recipient != nil else { return nil }
        guard let end = HeaderSection.bounds(text)?.fieldsEnd, end > 0 else { return nil }
        var out = ""
        var changed = false
        var table: RewriteTable?
        var lineStart = 0
        // Lines split at LF by bytes: a Swift String would take CRLF as one character.
        for j in 0..<end where text[j] == 10 {
            let bytes = text[lineStart...j]
            lineStart = j + 1
            let l = String(decoding: bytes, as: UTF8.self)
            let continued = bytes.first == 32 || bytes.first == 9
            if !continued {
                let name = l.split(separator: ":", maxSplits: 1).first.map { $0.lowercased() } ?? ""
                table = senderFields.contains(name) ? sender : recipientFields.contains(name) ? recipient : nil
            }
            guard let table else {
                out += l
                continue
            }
            let (new, did) = rewriteAddresses(l, table, skipName: !continued)
            out += new
            changed = changed || did
        }
        guard changed else { return nil }
        return (Array(out.utf8), end)
    }

    /// Replaces every `local@domain` the table knows in one header line.
    static func rewriteAddresses(_ line: String, _ table: RewriteTable, skipName: Bool) -> (String, Bool) {
        let chars = Array(line.unicodeScalars)
        var start = 0
        if skipName, let colon = chars.firstIndex(of: ":") { start = colon + 1 }
        func isAddressChar(_ c: Unicode.Scalar) -> Bool {
            c.value > 32 && c.value < 127 && !"<>,;:\"()[] ".unicodeScalars.contains(c)
        }
        var out = String(String.UnicodeScalarView(chars[..<start]))
        var changed = false
        var i = start
        while i < chars.count {
            guard isAddressChar(chars[i]) else {
                out.unicodeScalars.append(chars[i])
                i += 1
                continue
            }
            var j = i
            while j < chars.count && isAddressChar(chars[j]) { j += 1 }
            let token = String(String.UnicodeScalarView(chars[i..<j]))
            if token.contains("@"), let to = table.rewrite(token) {
                out += to
                changed = true
            } else {
                out += token
            }
            i = j
        }
        return (out, changed)
    }
}
