import Foundation

/// `[web]`: the review console. Off unless `listen` is set; it serves on
/// its own event loop, so a slow browser never holds an SMTP session up.
public struct WebSettings: Sendable, Equatable {
    public var listen: GatewayConfig.Listen
    /// HTTPS with the `[tls]` certificate (and Secure cookies).
    public var tls = false
    /// Users, roles, bcrypt hashes and API token hashes (`mxgate web user add`).
    public var users: String
    /// The audit search index beside the log (SQLite); rebuilt from the log when missing.
    public var index: String
    /// How long a login lasts without use.
    public var sessionLifetime: Double = 8 * 3600
    /// Failed logins a client may make per `loginWindow` before it must wait.
    public var loginAttempts = 5
    public var loginWindow: Double = 300
    /// The list "release and allow-list" appends the sender to; default the
    /// shipped policy's `rules/allowed-senders.list`.
    public var allowList = ""

    public init(listen: GatewayConfig.Listen, users: String, index: String) {
        self.listen = listen
        self.users = users
        self.index = index
    }
}

extension ConfigReader {
    static let webKeys: Set<String> = ["listen", "tls", "users", "index", "session_lifetime", "login_attempts", "login_window", "allow_list"]

    mutating func readWeb(_ s: inout Section, _ c: inout GatewayConfig) {
        guard let l = string(&s, "listen") else {
            if !s.table.keys.isEmpty { error(s.table.keyPositions.values.first ?? TOMLPosition(line: 1, column: 1), "[web] needs listen = \"HOST:PORT\", such as \"127.0.0.1:8025\"") }
            return
        }
        guard let (h, p) = Self.parseHostPort(l) else {
            error(s.table["listen"]!.position, "[web] listen must be HOST:PORT, such as \"127.0.0.1:8025\"")
            return
        }
        var w = WebSettings(listen: GatewayConfig.Listen(host: h, port: p), users: "var/web-users", index: "")
        if let b = bool(&s, "tls") { w.tls = b }
        if let u = string(&s, "users") { w.users = u }
        if let i = string(&s, "index") { w.index = i }
        if let d = duration(&s, "session_lifetime") { w.sessionLifetime = d }
        if let n = integer(&s, "login_attempts") { w.loginAttempts = n }
        if let d = duration(&s, "login_window") { w.loginWindow = d }
        if let a = string(&s, "allow_list") { w.allowList = a }
        c.web = w
    }
}
