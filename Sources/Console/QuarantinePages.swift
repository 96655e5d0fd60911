import Audit
import Foundation
import Gateway
import Hummingbird
import MailMessage
import Relay

/// The quarantine: list and search held messages, look at one safely, and
/// (admins) release, delete, allow-list the sender or train the classifier.
/// A held message is shown as text only: its headers, its text parts (HTML
/// reduced to text by the MIME walker, never put in the page) and the names
/// and types of its attachments. The IDs in URLs are checked by
/// QuarantineAdmin.find against the listing, never used as a path.
extension ConsoleServer {
    /// What an admin may do to a held message, by the last path segment.
    enum QuarantineAction: String, CaseIterable {
        case release, allow, delete, spam, ham

        var label: String {
            switch self {
            case .release: return "Release"
            case .allow: return "Release and allow-list sender"
            case .delete: return "Delete"
            case .spam: return "Learn as spam"
            case .ham: return "Learn as ham"
            }
        }
    }

    func quarantineRoutes(_ r: Hummingbird.Router<ConsoleContext>) {
        r.get("/quarantine") { req, ctx in self.quarantineList(req, ctx) }
        r.get("/quarantine/:id") { _, ctx in self.quarantineView(ctx.parameters.get("id") ?? "", ctx) }
        r.post("/quarantine/:id/:action") { _, ctx in
            await self.quarantineChange(ctx.parameters.get("id") ?? "", ctx.parameters.get("action") ?? "", ctx, api: false)
        }
        r.get("/api/quarantine") { req, ctx in self.quarantineListAPI(req) }
        r.get("/api/quarantine/:id") { _, ctx in self.quarantineViewAPI(ctx.parameters.get("id") ?? "") }
        r.post("/api/quarantine/:id/:action") { _, ctx in
            await self.quarantineChange(ctx.parameters.get("id") ?? "", ctx.parameters.get("action") ?? "", ctx, api: true)
        }
    }

    /// Held messages matching the query's `q` (any envelope field, rule or
    /// reason), `from` and `to`, newest first, and whether there are more.
    func heldMessages(_ req: Request) -> (held: [QuarantineAdmin.Held], page: Int, more: Bool) {
        let p = Form.query(req)
        func v(_ k: String) -> String? { p[k].map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.flatMap { $0.isEmpty ? nil : $0 } }
        let q = v("q"), from = v("from"), to = v("to")
        let matching = quarantine.list().reversed().filter { h in
            let e = h.entry
            if let from, !e.mailFrom.lowercased().contains(from) { return false }
            if let to, !e.rcptTo.contains(where: { $0.lowercased().contains(to) }) { return false }
            if let q {
                let fields = [e.id, e.mailFrom, e.clientIP, e.helo ?? "", e.messageID ?? "", e.reason ?? "", e.subject ?? ""] + e.rcptTo + e.rules
                if !fields.contains(where: { $0.lowercased().contains(q) }) { return false }
            }
            return true
        }
        let page = max(0, min(p["page"].flatMap { Int($0) } ?? 0, 100_000))
        let size = 50
        let slice = Array(matching.dropFirst(page * size).prefix(size))
        return (slice, page, matching.count > (page + 1) * size)
    }

    func quarantineList(_ req: Request, _ ctx: ConsoleContext) -> Response {
        let p = Form.query(req)
        func field(_ k: String) -> String { HTML.escape(p[k] ?? "") }
        let (held, page, more) = heldMessages(req)
        let rows = held.map { h -> [String] in
            let e = h.entry
            return [
                HTML.escape(HTML.time(AuditRecord.parseTime(e.time) ?? Date(timeIntervalSince1970: 0))),
                HTML.escape(e.mailFrom.isEmpty ? "<>" : e.mailFrom), HTML.escape(e.rcptTo.joined(separator: ", ")),
                Self.clip(e.subject ?? "", 200), HTML.escape(e.clientIP), e.spamScore.map { String(format: "%.2f", $0) } ?? "-",
                e.rules.map(HTML.escape).joined(separator: "<br>"), HTML.escape(e.reason ?? ""),
                "<a class=\"view\" href=\"/quarantine/\(HTML.component(e.id))\">view</a>",
            ]
        }
        var body = """
            <h1>Quarantine</h1>
            <form class="search" method="get" action="/quarantine">
            <label>Text <input name="q" id="q" value="\(field("q"))" placeholder="subject, rule, reason, address, ID"></label>
            <label>Sender <input name="from" value="\(field("from"))"></label>
            <label>Recipient <input name="to" value="\(field("to"))"></label>
            <label>&nbsp;<button type="submit" id="search">Search</button></label>
            </form>
            """
        body += rows.isEmpty ? "<p class=\"note\" id=\"no-results\">No held messages match.</p>"
            : HTML.table(["Held (UTC)", "From", "To", "Subject", "Client", "Score", "Rules", "Reason", ""], rows, id: "held")
        body += "<div class=\"pager\">"
        if page > 0 { body += "<a href=\"/quarantine?page=\(page - 1)\">newer</a>" }
        if more { body += "<a id=\"older\" href=\"/quarantine?page=\(page + 1)\">older</a>" }
        body += "</div>"
        return Self.html(HTML.page(title: "Quarantine", login: ctx.login, active: "Quarantine", body: body))
    }

    /// What the page and the API show of a held message: parsed, never rendered.
    struct HeldView {
        var headers: [HeaderBlock.Field]
        var text: String
        var attachments: [MIMEPart]
        var problems: [String]
    }

    func heldView(_ h: QuarantineAdmin.Held) -> HeldView? {
        guard let data = FileManager.default.contents(atPath: h.messagePath) else { return nil }
        let bytes = [UInt8](data)
        var walker = MIMEWalker()
        walker.feed(bytes)
        let summary = walker.finish()
        let headers = HeaderBlock(bytes.prefix(256 * 1024)).fields.map { f in
            HeaderBlock.Field(name: f.name, value: EncodedWords.decode(f.value))
        }
        return HeldView(headers: headers, text: summary.text, attachments: summary.attachments, problems: summary.problems)
    }

    /// A header value for the page: a 10,000-character header shows its start and its length.
    static func clip(_ s: String, _ limit: Int = 2000) -> String {
        s.count <= limit ? HTML.escape(s) : HTML.escape(String(s.prefix(limit))) + " <span class=\"note\">… (\(s.count) characters)</span>"
    }

    func quarantineView(_ id: String, _ ctx: ConsoleContext) -> Response {
        let h: QuarantineAdmin.Held
        do { h = try quarantine.find(id) } catch {
            return Self.html(HTML.page(title: "Not found", login: ctx.login, active: "Quarantine", body: "<p class=\"error\">\(HTML.escape(error.description))</p>"), status: .notFound)
        }
        let e = h.entry
        var body = "<h1>Held message <code id=\"held-id\">\(HTML.escape(e.id))</code></h1>"
        var facts: [(String, String)] = [("held", HTML.escape(e.time)), ("from", HTML.escape(e.mailFrom.isEmpty ? "<>" : e.mailFrom)),
                                         ("to", HTML.escape(e.rcptTo.joined(separator: ", "))), ("client", HTML.escape(e.clientIP)),
                                         ("size", "\(e.size) bytes")]
        if let helo = e.helo { facts.append(("helo", HTML.escape(helo))) }
        if let m = e.messageID { facts.append(("message-id", HTML.escape(m))) }
        if let s = e.spamScore { facts.append(("spam score", String(format: "%.2f", s))) }
        if let r = e.reason { facts.append(("reason", HTML.escape(r))) }
        if !e.rules.isEmpty { facts.append(("rules", e.rules.map(HTML.escape).joined(separator: "<br>"))) }
        facts.append(("session", "<a href=\"/why/\(HTML.component(e.session))\">why</a>"))
        body += "<dl class=\"facts\">" + facts.map { "<dt>\(HTML.escape($0.0))</dt><dd>\($0.1)</dd>" }.joined() + "</dl>"
        if ctx.login?.role == .admin, let csrf = ctx.login?.csrf {
            let actions = QuarantineAction.allCases.filter { config.classifier != nil || ($0 != .spam && $0 != .ham) }
            body += "<div class=\"actions\">" + actions.map { a in
                """
                <form method="post" action="/quarantine/\(HTML.component(e.id))/\(a.rawValue)"><input type="hidden" name="csrf" value="\(HTML.escape(csrf))">\
                <button type="submit" id="\(a.rawValue)"\(a == .delete ? " class=\"danger\"" : "")>\(a.label)</button></form>
                """
            }.joined() + "</div>"
        }
        guard let view = heldView(h) else {
            body += "<p class=\"error\">The message file is missing.</p>"
            return Self.html(HTML.page(title: "Held \(e.id)", login: ctx.login, active: "Quarantine", body: body))
        }
        body += "<h2>Headers</h2>" + HTML.table(["Field", "Value"], view.headers.map { [HTML.escape($0.name), Self.clip($0.value)] }, id: "headers")
        if !view.attachments.isEmpty {
            let rows = view.attachments.map { a in
                [HTML.escape(a.filename ?? "(no name)"), HTML.escape(a.contentType), HTML.escape(a.sniffedType ?? "-"), "\(a.size)"]
            }
            body += "<h2>Attachments</h2>" + HTML.table(["Name", "Declared type", "Content looks like", "Bytes"], rows, id: "attachments")
        }
        if !view.problems.isEmpty { body += "<h2>MIME problems</h2><ul>" + view.problems.map { "<li>\(HTML.escape($0))</li>" }.joined() + "</ul>" }
        body += "<h2>Text</h2><p class=\"note\">The text parts as plain text; HTML is reduced to its text and never shown as HTML, and no remote image is fetched.</p>"
        body += "<pre id=\"text\">\(HTML.escape(view.text))</pre>"
        return Self.html(HTML.page(title: "Held \(e.id)", login: ctx.login, active: "Quarantine", body: body))
    }

    static func entryJSON(_ e: QuarantineEntry) -> [String: Any] {
        ["id": e.id, "time": e.time, "session": e.session, "client_ip": e.clientIP, "helo": e.helo ?? NSNull(),
         "mail_from": e.mailFrom, "rcpt_to": e.rcptTo, "message_id": e.messageID ?? NSNull(), "size": e.size,
         "rules": e.rules, "reason": e.reason ?? NSNull(), "spam_score": e.spamScore ?? NSNull(), "subject": e.subject ?? NSNull()]
    }

    func quarantineListAPI(_ req: Request) -> Response {
        let (held, page, more) = heldMessages(req)
        return Self.json(["messages": held.map { Self.entryJSON($0.entry) }, "page": page, "more": more])
    }

    func quarantineViewAPI(_ id: String) -> Response {
        let h: QuarantineAdmin.Held
        do { h = try quarantine.find(id) } catch { return Self.apiError(error.description, status: .notFound) }
        var o = Self.entryJSON(h.entry)
        if let v = heldView(h) {
            o["headers"] = v.headers.map { ["name": $0.name, "value": $0.value] }
            o["text"] = v.text
            o["attachments"] = v.attachments.map { ["name": $0.filename ?? NSNull(), "type": $0.contentType, "sniffed": $0.sniffedType ?? NSNull(), "size": $0.size] as [String: Any] }
            o["problems"] = v.problems
        }
        return Self.json(o)
    }

    /// Viewers read; everything that changes something is for admins.
    func adminOnly(_ ctx: ConsoleContext, _ what: String, api: Bool) -> Response? {
        guard ctx.login?.role != .admin else { return nil }
        record(ctx, "\(what) refused: not an admin", ok: false)
        if api { return Self.apiError("only an admin may do that", status: .forbidden) }
        return Self.html(HTML.page(title: "Refused", login: ctx.login, body: "<p class=\"error\">Only an admin may do that.</p>"), status: .forbidden)
    }

    func quarantineChange(_ id: String, _ verb: String, _ ctx: ConsoleContext, api: Bool) async -> Response {
        guard let action = QuarantineAction(rawValue: verb) else {
            return api ? Self.apiError("unknown action \(verb)", status: .notFound)
                : Self.html(HTML.page(title: "Not found", login: ctx.login, body: "<p class=\"error\">No such action.</p>"), status: .notFound)
        }
        if let refused = adminOnly(ctx, "quarantine \(verb) \(id)", api: api) { return refused }
        let who = "\(ctx.login?.user ?? "-") (console)"
        let result: Result<String, Error>
        do {
            switch action {
            case .release:
                result = .success("released: " + (try await quarantine.release(id, audit: audit, reason: "released by \(who)")))
            case .allow:
                let address = try quarantine.allowSender(id, list: settings.allowList, by: who, audit: audit)
                let released = try await quarantine.release(id, audit: audit, reason: "released by \(who)")
                let reloaded = reloadPolicy()
                result = .success("released: \(released); \(address) allow-listed in \(settings.allowList)" + (reloaded ? "" : " (the reload failed: see the gateway's log)"))
            case .delete:
                try quarantine.delete(id, audit: audit, reason: "deleted by \(who)")
                result = .success("deleted")
            case .spam, .ham:
                result = .success(try quarantine.learn(id, spam: action == .spam, by: who, audit: audit))
            }
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let s):
            record(ctx, "quarantine \(verb) \(id): \(s)", ok: true)
            if api { return Self.json(["id": id, "action": verb, "result": s]) }
            return Self.html(HTML.page(title: "Done", login: ctx.login, active: "Quarantine", body: """
                <p class="note" id="result">\(HTML.escape(id)): \(HTML.escape(s))</p><p><a href="/quarantine">Back to the quarantine</a></p>
                """))
        case .failure(let e):
            record(ctx, "quarantine \(verb) \(id) failed", ok: false, reason: "\(e)")
            let notFound = (e as? QuarantineAdmin.AdminError).map { if case .release = $0 { return false } else { return true } } ?? false
            let status: HTTPResponse.Status = notFound ? .notFound : .internalServerError
            if api { return Self.apiError("\(e)", status: status) }
            return Self.html(HTML.page(title: "Failed", login: ctx.login, active: "Quarantine", body: """
                <p class="error" id="result">\(HTML.escape(id)): \(HTML.escape("\(e)"))</p><p><a href="/quarantine">Back to the quarantine</a></p>
                """), status: status)
        }
    }
}
