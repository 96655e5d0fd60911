import Audit
import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdBcrypt
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Each request's context: the client's address (for the login limiter and
/// the audit record) and, once the guard has checked it, who is asking.
struct ConsoleContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let client: String
    var login: SessionStore.Login?
    var sessionID: String?
    /// Authenticated by an API token, not a cookie: no CSRF token needed.
    var viaToken = false

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        client = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// The review console (`[web]`): served by the gateway process on an
/// event loop of its own, so a slow browser or a long search never delays
/// an SMTP session. Every page's data is also JSON under /api/.
public final class ConsoleServer: Sendable {
    let config: GatewayConfig
    let settings: WebSettings
    let audit: any AuditSink
    let index: AuditIndex
    let users: UsersFile
    let sessions: SessionStore
    let limiter: LoginLimiter
    let logger: Logger
    let quarantine: QuarantineAdmin
    /// The spool's tools, when there is a spool (queue mode, or proxy mode's queue fallback).
    let queue: QueueAdmin?
    /// Applies a changed allow-list: the gateway's SIGHUP reload.
    let reloadPolicy: @Sendable () -> Bool
    private let group: MultiThreadedEventLoopGroup

    public init(config: GatewayConfig, audit: any AuditSink, logger: Logger, reloadPolicy: @escaping @Sendable () -> Bool = { false }) throws {
        guard let settings = config.web else { throw UsersFile.Failure(message: "[web] listen is not set") }
        self.config = config
        self.settings = settings
        self.audit = audit
        self.logger = logger
        index = try AuditIndex(path: settings.index, auditPath: config.auditPath)
        users = UsersFile(path: settings.users)
        _ = try users.load()  // a broken users file stops the start, with its line
        sessions = SessionStore(lifetime: settings.sessionLifetime)
        limiter = LoginLimiter(attempts: settings.loginAttempts, window: settings.loginWindow)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        queue = config.mode == .queue || config.fallback == .queue ? try QueueAdmin(config: config) : nil
        quarantine = QuarantineAdmin(config: config, spool: config.mode == .queue ? queue?.spool : nil)
        self.reloadPolicy = reloadPolicy
    }

    /// Serves until the task is cancelled; `onListening` gets the bound address.
    public func run(onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        let indexer = Task.detached { [index, logger] in
            while !Task.isCancelled {
                do { try index.update() } catch { logger.warning("console: audit index: \(error)") }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        defer { indexer.cancel() }
        let router = Router(context: ConsoleContext.self)
        router.add(middleware: SecurityHeaders())
        router.add(middleware: Guard(console: self))
        routes(router)
        let server: HTTPServerBuilder
        if settings.tls, let cert = config.tlsCertificate, let key = config.tlsKey {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: tls)
        } else {
            server = .http1()
        }
        let scheme = settings.tls ? "https" : "http"
        let app = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(settings.listen.host, port: settings.listen.port), serverName: nil),
            onServerRunning: { channel in
                let addr = channel.localAddress
                let host = addr?.ipAddress ?? "?"
                onListening("\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(addr?.port ?? 0)/")
            },
            eventLoopGroupProvider: .shared(group), logger: logger)
        try await app.run()
    }

    func routes(_ r: Router<ConsoleContext>) {
        r.get("/static/console.css") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "max-age=3600"],
                     body: .init(byteBuffer: ByteBuffer(string: HTML.stylesheet)))
        }
        r.get("/login") { req, ctx in self.loginPage(error: nil, next: Form.query(req)["next"]) }
        r.post("/login") { req, ctx in try await self.login(req, ctx) }
        r.post("/logout") { req, ctx in
            if let id = ctx.sessionID { self.sessions.end(id) }
            self.record(ctx, "logout", ok: true)
            return Self.redirect("/login", clearCookie: true, secure: self.settings.tls)
        }
        r.get("/") { req, ctx in try self.searchPage(req, ctx) }
        r.get("/why/:session") { req, ctx in try self.whyPage(ctx.parameters.get("session") ?? "", ctx) }
        r.get("/api/whoami") { _, ctx in
            Self.json(["user": ctx.login?.user ?? "", "role": ctx.login?.role.rawValue ?? ""])
        }
        r.get("/api/search") { req, ctx in try self.searchAPI(req, ctx) }
        r.get("/api/why/:session") { req, ctx in try self.whyAPI(ctx.parameters.get("session") ?? "", ctx) }
        quarantineRoutes(r)
        queueRoutes(r)
        statsRoutes(r)
    }

    // MARK: login

    func loginPage(error: String?, next: String?, status: HTTPResponse.Status = .ok) -> Response {
        let target = Self.safeNext(next)
        let body = """
            <form class="login" method="post" action="/login">
            <h1>Log in</h1>
            \(error.map { "<p class=\"error\" id=\"login-error\">\(HTML.escape($0))</p>" } ?? "")
            <input type="hidden" name="next" value="\(HTML.escape(target))">
            <label>User <input name="user" id="user" autocomplete="username" required></label>
            <label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
            <button type="submit" id="login">Log in</button>
            </form>
            """
        return Self.html(HTML.page(title: "Log in", login: nil, body: body), status: status)
    }

    private func login(_ req: Request, _ ctx: ConsoleContext) async throws -> Response {
        var req = req
        let form = Form.parse(try await req.collectBody(upTo: 16 * 1024))
        let name = form["user"] ?? ""
        if let wait = limiter.wait(ctx.client) {
            record(ctx, "login refused for \(name): too many failed logins", ok: false, user: name)
            var r = loginPage(error: "Too many failed logins from your address: wait \(wait) seconds.", next: form["next"], status: .tooManyRequests)
            r.headers[.retryAfter] = String(wait)
            return r
        }
        let user = (try? users.load())?.first { $0.name == name }
        // A missing user still costs a bcrypt check, so timing does not tell which names exist.
        let ok = Bcrypt.verify(form["password"] ?? "", hash: user?.passwordHash ?? Self.dummyHash) && user != nil
        guard ok, let user else {
            limiter.failed(ctx.client)
            record(ctx, "failed login for \(name)", ok: false, user: name)
            return loginPage(error: "Wrong user name or password.", next: form["next"], status: .unauthorized)
        }
        limiter.succeeded(ctx.client)
        let (id, _) = sessions.create(user: user.name, role: user.role)
        record(ctx, "login", ok: true, user: user.name)
        var r = Self.redirect(Self.safeNext(form["next"]), clearCookie: false, secure: settings.tls)
        var cookie = "mxgate_session=\(id); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(settings.sessionLifetime))"
        if settings.tls { cookie += "; Secure" }
        r.headers[.setCookie] = cookie
        return r
    }

    private static let dummyHash = Bcrypt.hash("not a password of anyone", cost: 12)

    /// Only a path on this server, never another site (an open redirect).
    static func safeNext(_ next: String?) -> String {
        guard let n = next, n.hasPrefix("/"), !n.hasPrefix("//"), !n.contains("\\"), !n.contains("\r"), !n.contains("\n") else { return "/" }
        return n
    }

    /// An audit record of what a console user did (event "console").
    func record(_ ctx: ConsoleContext, _ what: String, ok: Bool, user: String? = nil, reason: String? = nil) {
        let who = user ?? ctx.login?.user ?? "-"
        audit.record(AuditRecord(event: .console, session: "web", clientIP: ctx.client, verdict: ok ? .accepted : .rejected,
                                 reply: "\(who): \(what)", reason: reason))
    }

    // MARK: responses

    static func html(_ s: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func redirect(_ to: String, clearCookie: Bool, secure: Bool) -> Response {
        var r = Response(status: .seeOther, headers: [.location: to])
        if clearCookie { r.headers[.setCookie] = "mxgate_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" + (secure ? "; Secure" : "") }
        return r
    }

    static func apiError(_ message: String, status: HTTPResponse.Status) -> Response { json(["error": message], status: status) }
}

/// application/x-www-form-urlencoded bodies and cookies, parsed by hand
/// (a few fields each).
enum Form {
    static func parse(_ buffer: ByteBuffer) -> [String: String] {
        parse(String(buffer: buffer))
    }

    static func parse(_ s: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in s.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ x: Substring) -> String { x.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            guard let k = kv.first else { continue }
            let key = decode(k)
            if out[key] == nil { out[key] = kv.count > 1 ? decode(kv[1]) : "" }
        }
        return out
    }

    /// A URL's query, decoded as browsers encode GET forms ("+" is a space).
    static func query(_ req: Request) -> [String: String] { parse(req.uri.query ?? "") }

    static func cookie(_ header: String?, _ name: String) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == name { return String(kv[1]) }
        }
        return nil
    }
}

/// Headers on every answer: no scripts, frames, remote content or
/// referrers; the browser must not guess content types.
struct SecurityHeaders: RouterMiddleware {
    typealias Context = ConsoleContext
    func handle(_ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response) async throws -> Response {
        var r = try await next(request, context)
        r.headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        r.headers[.xContentTypeOptions] = "nosniff"
        r.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        // same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on
        // the console's own form posts, and the origin check could not tell them from forgeries.
        r.headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        return r
    }
}

/// No page or API answers without a valid session cookie or API token
/// (but the login page and the stylesheet); every POST from a cookie
/// session carries the session's CSRF token and, when the browser says
/// where it comes from, this server's own origin.
struct Guard: RouterMiddleware {
    typealias Context = ConsoleContext
    let console: ConsoleServer

    func handle(_ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response) async throws -> Response {
        var ctx = context
        let path = request.uri.path
        let api = path.hasPrefix("/api/")
        if path == "/login" || path == "/static/console.css" {
            if request.method == .post, let origin = request.headers[.origin], !sameOrigin(origin, request) {
                return ConsoleServer.html(HTML.page(title: "Refused", login: nil, body: "<p class=\"error\">Cross-site request refused.</p>"), status: .forbidden)
            }
            return try await next(request, ctx)
        }
        if let auth = request.headers[.authorization], auth.hasPrefix("Bearer ") {
            let token = String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            let hash = UsersFile.sha256(token)
            guard let user = (try? console.users.load())?.first(where: { u in u.tokenHash.map { constantTimeEquals($0, hash) } ?? false }) else {
                console.record(ctx, "refused API token", ok: false)
                return ConsoleServer.apiError("invalid token", status: .unauthorized)
            }
            ctx.login = SessionStore.Login(user: user.name, role: user.role, csrf: "", expires: .distantFuture)
            ctx.viaToken = true
            return try await next(request, ctx)
        }
        guard let id = Form.cookie(request.headers[.cookie], "mxgate_session"), var login = console.sessions.find(id) else {
            if api { return ConsoleServer.apiError("log in first, or send Authorization: Bearer TOKEN", status: .unauthorized) }
            let target = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
            return ConsoleServer.redirect("/login?next=\(HTML.component(target))", clearCookie: false, secure: false)
        }
        // The users file is the truth for who may do what: a deleted user's
        // login ends, and a changed role applies, at the next request.
        guard let current = (try? console.users.load())?.first(where: { $0.name == login.user }) else {
            console.sessions.endAll(user: login.user)
            if api { return ConsoleServer.apiError("log in first, or send Authorization: Bearer TOKEN", status: .unauthorized) }
            return ConsoleServer.redirect("/login", clearCookie: true, secure: console.settings.tls)
        }
        login.role = current.role
        ctx.login = login
        ctx.sessionID = id
        if request.method != .get && request.method != .head {
            if let origin = request.headers[.origin], !sameOrigin(origin, request) {
                console.record(ctx, "cross-site \(request.method) \(path) refused", ok: false)
                return ConsoleServer.html(HTML.page(title: "Refused", login: login, body: "<p class=\"error\">Cross-site request refused.</p>"), status: .forbidden)
            }
            // The CSRF token comes in a header (scripts) or as a form field.
            if let t = request.headers[HTTPField.Name("X-CSRF-Token")!] {
                guard constantTimeEquals(t, login.csrf) else { return ConsoleServer.apiError("bad CSRF token", status: .forbidden) }
                ctx.viaToken = true
            } else {
                var buffered = request
                let form = Form.parse(try await buffered.collectBody(upTo: 1 << 20))
                guard constantTimeEquals(form["csrf"] ?? "", login.csrf) else {
                    console.record(ctx, "\(request.method) \(path) without the session's CSRF token refused", ok: false)
                    return ConsoleServer.html(HTML.page(title: "Refused", login: login, body: "<p class=\"error\">The form is stale or not from this console: reload the page and try again.</p>"), status: .forbidden)
                }
                return try await next(buffered, ctx)
            }
        }
        return try await next(request, ctx)
    }

    private func sameOrigin(_ origin: String, _ request: Request) -> Bool {
        guard let host = request.head.authority else { return false }
        return origin == "http://\(host)" || origin == "https://\(host)"
    }
}
