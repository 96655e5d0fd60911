import Audit
import Foundation
import Hummingbird

/// The search page, a message's "why", and their JSON twins.
extension ConsoleServer {
    /// The query from the URL; the time window defaults to the last hour.
    func query(_ req: Request) throws -> AuditQuery {
        let p = Form.query(req)
        func v(_ k: String) -> String? {
            guard let s = p[k]?.trimmingCharacters(in: .whitespaces), !s.isEmpty else { return nil }
            return s
        }
        var q = AuditQuery()
        let now = Date()
        if let w = v("window") {
            guard let d = AuditFilter.parseDuration(w) else { throw AuditQuery.Invalid(message: "window '\(w)' is not a duration such as 15m, 1h, 2d") }
            q.since = now.addingTimeInterval(-d)
        } else if v("since") == nil {
            q.since = now.addingTimeInterval(-3600)
        }
        if let s = v("since") {
            guard let d = Self.parseTime(s) else { throw AuditQuery.Invalid(message: "since '\(s)' is not a time (2026-12-01T10:00 or 2026-12-01)") }
            q.since = d
        }
        if let s = v("until") {
            guard let d = Self.parseTime(s) else { throw AuditQuery.Invalid(message: "until '\(s)' is not a time") }
            q.until = d
        }
        if let s = v("verdict") {
            guard let verdict = AuditRecord.Verdict(rawValue: s) else { throw AuditQuery.Invalid(message: "verdict '\(s)' is not one of \(AuditRecord.Verdict.allCases.map(\.rawValue).joined(separator: ", "))") }
            q.verdict = verdict
        }
        q.sender = v("from")
        q.recipient = v("to")
        q.client = v("client")
        q.rule = v("rule")
        q.messageID = v("message_id")
        q.spf = v("spf")
        q.dkim = v("dkim")
        q.dmarc = v("dmarc")
        q.text = v("q")
        q.country = v("country")
        if let page = v("page").flatMap(Int.init), page >= 0, page < 100_000 { q.page = page }
        if let size = v("size").flatMap(Int.init), size > 0 { q.pageSize = min(size, 500) }
        return q
    }

    /// "2026-12-01T10:00:00Z", "2026-12-01T10:00" (UTC) or "2026-12-01".
    static func parseTime(_ s: String) -> Date? {
        if let d = AuditRecord.parseTime(s) { return d }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm", "yyyy-MM-dd"] {
            f.dateFormat = format
            if let d = f.date(from: s) { return d }
        }
        return nil
    }

    func searchPage(_ req: Request, _ ctx: ConsoleContext) throws -> Response {
        let p = Form.query(req)
        func field(_ k: String) -> String { HTML.escape(p[k] ?? "") }
        var results = ""
        var status = HTTPResponse.Status.ok
        do {
            let q = try query(req)
            let page = try index.search(q)
            let rows = page.records.map { r -> [String] in
                [
                    HTML.escape(HTML.time(r.time)), HTML.verdictBadge(r.verdict), HTML.escape(r.clientIP),
                    HTML.escape(r.mailFrom.map { $0.isEmpty ? "<>" : $0 } ?? "-"), HTML.escape(r.rcpt.isEmpty ? "-" : r.rcpt),
                    r.rules.map(HTML.escape).joined(separator: "<br>"), HTML.escape(r.reply),
                    "<a class=\"why\" href=\"/why/\(HTML.component(r.session))\">why</a>",
                ]
            }
            results = rows.isEmpty ? "<p class=\"note\" id=\"no-results\">No records match in this window.</p>"
                : HTML.table(["Time (UTC)", "Verdict", "Client", "From", "To", "Rules", "Reply", ""], rows, id: "results")
            var pager = "<div class=\"pager\">"
            var base = Form.query(req).filter { $0.key != "page" }.map { "\(HTML.component(String($0.key)))=\(HTML.component(String($0.value)))" }
            base.sort()
            let prefix = "/?" + base.joined(separator: "&") + (base.isEmpty ? "" : "&")
            if q.page > 0 { pager += "<a href=\"\(HTML.escape(prefix))page=\(q.page - 1)\">newer</a>" }
            if page.more { pager += "<a id=\"older\" href=\"\(HTML.escape(prefix))page=\(q.page + 1)\">older</a>" }
            results += pager + "</div>"
        } catch let e as AuditQuery.Invalid {
            results = "<p class=\"error\">\(HTML.escape(e.message))</p>"
            status = .badRequest
        }
        let verdict = p["verdict"] ?? ""
        let options = ([""] + AuditRecord.Verdict.allCases.map(\.rawValue)).map {
            "<option value=\"\($0)\"\($0 == verdict ? " selected" : "")>\($0.isEmpty ? "any" : $0)</option>"
        }.joined()
        let body = """
            <h1>Audit search</h1>
            <form class="search" method="get" action="/">
            <label>Window <input name="window" value="\(field("window"))" placeholder="1h (default), 15m, 2d"></label>
            <label>Since (UTC) <input name="since" value="\(field("since"))" placeholder="2026-12-01T10:00"></label>
            <label>Until (UTC) <input name="until" value="\(field("until"))"></label>
            <label>Sender <input name="from" id="from" value="\(field("from"))" placeholder="user@domain or domain"></label>
            <label>Recipient <input name="to" id="to" value="\(field("to"))"></label>
            <label>Client IP or network <input name="client" value="\(field("client"))" placeholder="192.0.2.0/24"></label>
            <label>Verdict <select name="verdict" id="verdict">\(options)</select></label>
            <label>Rule or symbol <input name="rule" value="\(field("rule"))"></label>
            <label>Message-ID <input name="message_id" value="\(field("message_id"))"></label>
            <label>SPF <input name="spf" value="\(field("spf"))" placeholder="pass, fail, …"></label>
            <label>DKIM <input name="dkim" value="\(field("dkim"))"></label>
            <label>DMARC <input name="dmarc" value="\(field("dmarc"))"></label>
            <label>Country <input name="country" value="\(field("country"))" placeholder="DE, US, … (GeoIP)"></label>
            <label>Text <input name="q" id="q" value="\(field("q"))"></label>
            <label>&nbsp;<button type="submit" id="search">Search</button></label>
            </form>
            \(results)
            """
        return Self.html(HTML.page(title: "Search", login: ctx.login, active: "Search", body: body), status: status)
    }

    func searchAPI(_ req: Request, _ ctx: ConsoleContext) throws -> Response {
        do {
            let page = try index.search(try query(req))
            let recs: [[String: Any]] = page.records.map { r in
                var o: [String: Any] = [
                    "id": r.id, "time": AuditRecord.formatTime(r.time), "event": r.event, "session": r.session,
                    "verdict": r.verdict, "client_ip": r.clientIP, "rcpt_to": r.rcpt.isEmpty ? [] : r.rcpt.components(separatedBy: ", "),
                    "rules": r.rules, "reply": r.reply,
                ]
                o["mail_from"] = r.mailFrom ?? NSNull()
                o["message_id"] = r.messageID ?? NSNull()
                o["spam_score"] = r.score ?? NSNull()
                o["virus"] = r.virus ?? NSNull()
                return o
            }
            return Self.json(["records": recs, "page": page.page, "size": page.pageSize, "more": page.more])
        } catch let e as AuditQuery.Invalid {
            return Self.apiError(e.message, status: .badRequest)
        }
    }

    // MARK: why

    /// Session ids are what the gateway writes (letters and digits); anything else is refused, not searched.
    static func validSession(_ s: String) -> Bool { !s.isEmpty && s.count <= 64 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") } }

    func whyPage(_ session: String, _ ctx: ConsoleContext) throws -> Response {
        guard Self.validSession(session) else {
            return Self.html(HTML.page(title: "Not found", login: ctx.login, body: "<p class=\"error\">No such session.</p>"), status: .notFound)
        }
        let records = try index.session(session)
        guard !records.isEmpty else {
            return Self.html(HTML.page(title: "Not found", login: ctx.login, body: "<p class=\"error\">No records of session \(HTML.escape(session)) (the index may still be catching up, or the log was rotated away).</p>"), status: .notFound)
        }
        var body = "<h1>Why: session <code id=\"session\">\(HTML.escape(session))</code></h1>"
        body += "<p>\(records.count) record\(records.count == 1 ? "" : "s") of this session, oldest first.</p>"
        for (n, (_, r)) in records.enumerated() {
            body += "<section class=\"record\" id=\"record-\(n)\"><h2>\(HTML.escape(HTML.time(r.time))) · \(HTML.escape(r.event.rawValue)) · \(HTML.verdictBadge(r.verdict.rawValue))</h2>"
            body += "<dl class=\"facts\">" + Self.facts(r).map { "<dt>\(HTML.escape($0.0))</dt><dd>\($0.1)</dd>" }.joined() + "</dl>"
            if !r.rules.isEmpty {
                body += "<h3>Rules that fired</h3>" + HTML.table(["Rule (file:line name)", "Because"],
                                                                  r.rules.map { [HTML.escape($0), HTML.escape(r.because[$0] ?? "")] }, id: "rules-\(n)")
            }
            if !r.symbols.isEmpty {
                let rows = r.symbols.sorted { abs($0.value) > abs($1.value) }.map { [HTML.escape($0.key), HTML.escape(String(format: "%+.2f", $0.value))] }
                body += "<h3>Symbols</h3>" + HTML.table(["Symbol", "Score"], rows, id: "symbols-\(n)")
            }
            if !r.signals.isEmpty { body += "<h3>Heuristic signals</h3><p>\(r.signals.map(HTML.escape).joined(separator: ", "))</p>" }
            if !r.warnings.isEmpty { body += "<h3>Warnings</h3><ul>" + r.warnings.map { "<li>\(HTML.escape($0))</li>" }.joined() + "</ul>" }
            body += "</section>"
        }
        return Self.html(HTML.page(title: "Why \(session)", login: ctx.login, active: "Search", body: body))
    }

    /// The facts of one record, a label and escaped HTML each.
    static func facts(_ r: AuditRecord) -> [(String, String)] {
        var f: [(String, String)] = [("reply", "<code>\(HTML.escape(r.reply))</code>"), ("client", HTML.escape(r.clientIP + (r.clientPort.map { " port \($0)" } ?? "")))]
        if let h = r.helo { f.append(("helo", HTML.escape(h))) }
        f.append(("tls", r.tls ? "yes" : "no"))
        if let m = r.mailFrom { f.append(("from", HTML.escape(m.isEmpty ? "<>" : m))) }
        if !r.rcptTo.isEmpty { f.append(("to", HTML.escape(r.rcptTo.joined(separator: ", ")))) }
        if let m = r.messageID { f.append(("message-id", "<a href=\"/?window=30d&amp;message_id=\(HTML.component(m))\">\(HTML.escape(m))</a>")) }
        if let s = r.size { f.append(("size", "\(s) bytes")) }
        if let s = r.spamScore { f.append(("spam score", String(format: "%.2f", s))) }
        if let c = r.classifier { f.append(("classifier", String(format: "spam probability %.3f", c))) }
        if let v = r.virus { f.append(("virus", HTML.escape(v))) }
        if let c = r.country { f.append(("country", HTML.escape(c))) }
        if let g = r.greylist { f.append(("greylist", HTML.escape("\(g.outcome) after \(g.waited)s: \(g.triplet)"))) }
        for (k, v) in r.auth?.summary ?? [] { f.append((k, HTML.escape(v))) }
        if let relay = r.relay { f.append(("downstream / queue", HTML.escape(relay))) }
        if let reason = r.reason { f.append(("reason", HTML.escape(reason))) }
        return f
    }

    func whyAPI(_ session: String, _ ctx: ConsoleContext) throws -> Response {
        guard Self.validSession(session) else { return Self.apiError("not a session id", status: .badRequest) }
        let records = try index.session(session)
        guard !records.isEmpty else { return Self.apiError("no records of session \(session)", status: .notFound) }
        let lines = records.compactMap { try? JSONSerialization.jsonObject(with: Data($0.1.jsonBytes())) }
        return Self.json(["session": session, "records": lines])
    }
}
