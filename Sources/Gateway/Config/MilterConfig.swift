import Foundation

/// A milter socket as Sendmail and Postfix write it: `inet:HOST:PORT` (or
/// Sendmail's `inet:PORT@HOST`, `inet6:PORT@HOST`) and `unix:PATH` (or
/// `local:PATH`). Admins copy these between main.cf, sendmail.mc and ours.
public enum MilterSocket: Sendable, Equatable, CustomStringConvertible {
    case inet(host: String, port: Int)
    case unix(String)

    public var description: String {
        switch self {
        case .inet(let h, let p): return h.contains(":") ? "inet:[\(h)]:\(p)" : "inet:\(h):\(p)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    /// Nil when it is none of the forms above.
    public static func parse(_ text: String) -> MilterSocket? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let kind = text[..<colon].lowercased()
        let rest = String(text[text.index(after: colon)...])
        switch kind {
        case "unix", "local":
            return rest.isEmpty ? nil : .unix(rest)
        case "inet", "inet6":
            if let at = rest.firstIndex(of: "@") {
                // Sendmail's PORT@HOST.
                guard let port = Int(rest[..<at]), (0...65535).contains(port) else { return nil }
                let host = String(rest[rest.index(after: at)...])
                return host.isEmpty ? nil : .inet(host: host, port: port)
            }
            guard let (h, p) = ConfigReader.parseHostPort(rest) else { return nil }
            return .inet(host: h, port: p)
        default:
            return nil
        }
    }
}

/// `[milter]`: mxgate serving the milter protocol to an MTA (Postfix's
/// `smtpd_milters`), each MTA connection judged like an SMTP session.
public struct MilterServerSettings: Sendable, Equatable {
    public var listen: MilterSocket
    /// An MTA connection that sends nothing for this long is closed (the
    /// MTA's SMTP client may be idle that long between commands).
    public var timeout: Double = 600
    /// A unix socket's permissions: the owner and its group (put the MTA's user in it).
    public var socketMode: mode_t = 0o660
}

/// One `[[milters]]` entry: a milter mxgate asks, as Postfix's
/// `smtpd_milters` with its `milter_*_timeout` and `milter_default_action`.
public struct MilterClientSettings: Sendable, Equatable {
    public var name: String
    public var socket: MilterSocket
    /// Stages whose answers count as they happen; the connection opens at
    /// the first of them and earlier stages are sent then. `data` only: one
    /// short connection per message.
    public var stages: Set<InspectionStage> = Set(InspectionStage.allCases)
    public var connectTimeout: Double = 30
    public var commandTimeout: Double = 30
    /// For each body chunk and the end of the message (where scanners work).
    public var contentTimeout: Double = 300
    /// The milter is down, slow or breaks the protocol: tempfail (the default) or carry on without it.
    public var failOpen = false

    public var label: String { "\(name) (\(socket))" }
}

extension ConfigReader {
    static let milterServerKeys: Set<String> = ["listen", "timeout", "socket_mode"]
    static let milterClientKeys: Set<String> = ["name", "socket", "stages", "connect_timeout", "command_timeout",
                                                "content_timeout", "default_action"]

    mutating func readMilterServer(_ s: inout Section, _ c: inout GatewayConfig) {
        guard let l = string(&s, "listen") else {
            error(s.table.keyPositions["timeout"] ?? TOMLPosition(line: 1, column: 1),
                  "[milter] needs listen = \"inet:127.0.0.1:8891\" or \"unix:/run/mxgate/milter.sock\"")
            return
        }
        guard let socket = MilterSocket.parse(l) else {
            error(s.table["listen"]!.position, "[milter] listen must be inet:HOST:PORT or unix:PATH, not \"\(l)\"")
            return
        }
        var m = MilterServerSettings(listen: socket)
        if case .unix(let p) = socket { m.listen = .unix(c.resolve(p)) }
        if let d = duration(&s, "timeout") { m.timeout = d }
        if let text = string(&s, "socket_mode") {
            if let mode = mode_t(text, radix: 8), mode <= 0o777 { m.socketMode = mode } else {
                error(s.table["socket_mode"]!.position, "[milter] socket_mode must be octal permissions such as \"0660\", not \"\(text)\"")
            }
        }
        c.milter = m
    }

    /// `[[milters]]`: an array of tables, each checked like a section.
    mutating func readMilterClients(_ node: TOMLNode, _ c: inout GatewayConfig) {
        guard case .array(let items) = node.value else {
            error(node.position, "milters must be written as [[milters]] tables")
            return
        }
        for item in items {
            guard case .table(let t) = item.value else {
                error(item.position, "each [[milters]] entry must be a table")
                continue
            }
            for k in t.keys where !Self.milterClientKeys.contains(k) {
                error(t.keyPositions[k] ?? item.position,
                      "unknown key '\(k)' in [[milters]]; known keys are \(Self.milterClientKeys.sorted().joined(separator: ", "))")
            }
            var s = Section(name: "milters", table: t)
            guard let text = string(&s, "socket") else {
                error(item.position, "[[milters]] needs socket = \"inet:127.0.0.1:8891\" or \"unix:/run/opendkim/opendkim.sock\"")
                continue
            }
            guard var socket = MilterSocket.parse(text) else {
                error(t["socket"]!.position, "[[milters]] socket must be inet:HOST:PORT or unix:PATH, not \"\(text)\"")
                continue
            }
            if case .unix(let p) = socket { socket = .unix(c.resolve(p)) }
            let name = string(&s, "name") ?? "milter\(c.milters.count + 1)"
            if c.milters.contains(where: { $0.name == name }) { error(t["name"]?.position ?? item.position, "[[milters]] name \"\(name)\" is used twice") }
            var m = MilterClientSettings(name: name, socket: socket)
            if let list = stringArray(&s, "stages") {
                var stages = Set<InspectionStage>()
                for st in list {
                    if let v = InspectionStage(rawValue: st) { stages.insert(v) } else {
                        error(t["stages"]!.position, "[[milters]] stages: \"\(st)\" is not one of connect, helo, mail, rcpt, data")
                    }
                }
                if stages.isEmpty { error(t["stages"]!.position, "[[milters]] stages is empty") } else { m.stages = stages }
            }
            if let d = duration(&s, "connect_timeout") { m.connectTimeout = d }
            if let d = duration(&s, "command_timeout") { m.commandTimeout = d }
            if let d = duration(&s, "content_timeout") { m.contentTimeout = d }
            if let v = choice(&s, "default_action", ["tempfail", "accept"]) { m.failOpen = v == "accept" }
            c.milters.append(m)
        }
    }
}
