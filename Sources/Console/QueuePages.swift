import Audit
import Foundation
import Gateway
import Hummingbird
import Relay

/// The queue (queue mode, or proxy mode's queue fallback): what `mxgate
/// queue` shows and does. Changes go through QueueAdmin, so the running
/// gateway's queue manager, which owns the envelopes, makes them; queue IDs
/// are checked by `Spool.validID` before anything is looked up.
extension ConsoleServer {
    enum QueueVerb: String, CaseIterable { case hold, release, flush, delete }

    func queueRoutes(_ r: Hummingbird.Router<ConsoleContext>) {
        r.get("/queue") { _, ctx in self.queueList(ctx) }
        r.get("/queue/:id") { _, ctx in self.queueShow(ctx.parameters.get("id") ?? "", ctx) }
        r.post("/queue/flush") { _, ctx in await self.queueChange("flush", nil, ctx, api: false) }
        r.post("/queue/:id/:verb") { _, ctx in
            await self.queueChange(ctx.parameters.get("verb") ?? "", ctx.parameters.get("id") ?? "", ctx, api: false)
        }
        r.get("/api/queue") { _, _ in self.queueListAPI() }
        r.get("/api/queue/:id") { _, ctx in self.queueShowAPI(ctx.parameters.get("id") ?? "") }
        r.post("/api/queue/flush") { _, ctx in await self.queueChange("flush", nil, ctx, api: true) }
        r.post("/api/queue/:id/:verb") { _, ctx in
            await self.queueChange(ctx.parameters.get("verb") ?? "", ctx.parameters.get("id") ?? "", ctx, api: true)
        }
    }

    static let noQueue = "This gateway has no queue: [relay] mode is proxy without fallback = \"queue\"."

    func queueList(_ ctx: ConsoleContext) -> Response {
        guard let queue else {
            return Self.html(HTML.page(title: "Queue", login: ctx.login, active: "Queue", body: "<h1>Queue</h1><p class=\"note\">\(Self.noQueue)</p>"))
        }
        let envelopes = queue.list()
        let rows = envelopes.map { env -> [String] in
            let last = env.recipients.compactMap(\.lastReply).last ?? ""
            return [
                "<a class=\"show\" href=\"/queue/\(HTML.component(env.id))\">\(HTML.escape(env.id))</a>", HTML.escape(HTML.time(env.arrival)),
                HTML.escape(env.sender.isEmpty ? "<>" : env.sender), HTML.escape(env.pending.map(\.address).joined(separator: ", ")),
                "\(env.size)", env.held ? "<span class=\"verdict tempfailed\">held</span>" : HTML.escape(HTML.time(env.nextAttempt)),
                HTML.escape(last),
            ]
        }
        var body = "<h1>Queue</h1><p>\(envelopes.count) message\(envelopes.count == 1 ? "" : "s") queued.</p>"
        if ctx.login?.role == .admin, let csrf = ctx.login?.csrf {
            body += "<div class=\"actions\">" + Self.verbForm("/queue/flush", "flush", "Flush: deliver every message now", csrf) + "</div>"
        }
        body += rows.isEmpty ? "<p class=\"note\" id=\"empty\">The queue is empty.</p>"
            : HTML.table(["Queue ID", "Arrived (UTC)", "From", "Pending recipients", "Bytes", "Next attempt", "Last reply"], rows, id: "queue")
        body += "<h2>By destination and age</h2><pre id=\"summary\">\(HTML.escape(queue.summary()))</pre>"
        return Self.html(HTML.page(title: "Queue", login: ctx.login, active: "Queue", body: body))
    }

    static func verbForm(_ action: String, _ id: String, _ label: String, _ csrf: String) -> String {
        """
        <form method="post" action="\(action)"><input type="hidden" name="csrf" value="\(HTML.escape(csrf))">\
        <button type="submit" id="\(id)"\(id == "delete" ? " class=\"danger\"" : "")>\(HTML.escape(label))</button></form>
        """
    }

    func queueShow(_ id: String, _ ctx: ConsoleContext) -> Response {
        guard let queue else { return Self.html(HTML.page(title: "Queue", login: ctx.login, active: "Queue", body: "<p class=\"note\">\(Self.noQueue)</p>"), status: .notFound) }
        let text: String
        do { text = try queue.show(id) } catch {
            return Self.html(HTML.page(title: "Not found", login: ctx.login, active: "Queue", body: "<p class=\"error\">\(HTML.escape("\(error)"))</p>"), status: .notFound)
        }
        var body = "<h1>Queued message <code id=\"queue-id\">\(HTML.escape(id))</code></h1>"
        if ctx.login?.role == .admin, let csrf = ctx.login?.csrf {
            body += "<div class=\"actions\">" + [("hold", "Hold"), ("release", "Release"), ("flush", "Deliver now"), ("delete", "Delete")].map {
                Self.verbForm("/queue/\(HTML.component(id))/\($0.0)", $0.0, $0.1, csrf)
            }.joined() + "</div>"
        }
        body += "<pre id=\"envelope\">\(HTML.escape(text))</pre>"
        return Self.html(HTML.page(title: "Queued \(id)", login: ctx.login, active: "Queue", body: body))
    }

    static func envelopeJSON(_ env: QueuedEnvelope) -> [String: Any] {
        ["id": env.id, "arrival": AuditRecord.formatTime(env.arrival), "sender": env.sender, "size": env.size,
         "message_id": env.messageID ?? NSNull(), "origin": env.origin, "held": env.held,
         "next_attempt": AuditRecord.formatTime(env.nextAttempt),
         "recipients": env.recipients.map { r in
             ["address": r.address, "status": r.status.rawValue, "attempts": r.attempts, "last_reply": r.lastReply ?? NSNull()] as [String: Any]
         }]
    }

    func queueListAPI() -> Response {
        guard let queue else { return Self.apiError(Self.noQueue, status: .notFound) }
        return Self.json(["messages": queue.list().map(Self.envelopeJSON)])
    }

    func queueShowAPI(_ id: String) -> Response {
        guard let queue else { return Self.apiError(Self.noQueue, status: .notFound) }
        do { return Self.json(Self.envelopeJSON(try queue.find(id))) } catch { return Self.apiError("\(error)", status: .notFound) }
    }

    func queueChange(_ verb: String, _ id: String?, _ ctx: ConsoleContext, api: Bool) async -> Response {
        func answer(_ text: String, ok: Bool, status: HTTPResponse.Status) -> Response {
            if api { return ok ? Self.json(["id": id.map { $0 as Any } ?? NSNull(), "action": verb, "result": text] as [String: Any]) : Self.apiError(text, status: status) }
            return Self.html(HTML.page(title: ok ? "Done" : "Failed", login: ctx.login, active: "Queue", body: """
                <p class="\(ok ? "note" : "error")" id="result">\(HTML.escape(text))</p><p><a href="/queue">Back to the queue</a></p>
                """), status: status)
        }
        guard QueueVerb(rawValue: verb) != nil else { return answer("unknown action \(verb)", ok: false, status: .notFound) }
        if let refused = adminOnly(ctx, "queue \(verb) \(id ?? "all")", api: api) { return refused }
        guard let queue else { return answer(Self.noQueue, ok: false, status: .notFound) }
        do {
            let result = try await queue.change(verb, id, audit: audit)
            record(ctx, "queue \(verb) \(id ?? "all"): \(result)", ok: true)
            return answer(result, ok: true, status: .ok)
        } catch let e as QueueAdmin.AdminError {
            record(ctx, "queue \(verb) \(id ?? "all") failed", ok: false, reason: e.description)
            switch e {
            case .badID, .notFound: return answer(e.description, ok: false, status: .notFound)
            case .refused: return answer(e.description, ok: false, status: .conflict)
            }
        } catch {
            record(ctx, "queue \(verb) \(id ?? "all") failed", ok: false, reason: "\(error)")
            return answer("\(error)", ok: false, status: .internalServerError)
        }
    }
}
