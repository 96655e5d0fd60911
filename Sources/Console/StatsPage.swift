import Audit
import Foundation
import Hummingbird

/// Statistics: decisions by verdict per hour and per day, the rules that
/// refuse most, the clients and sender domains refused most, the spam score
/// distribution. Charts are SVG drawn here (presentation attributes only,
/// so the page's Content-Security-Policy needs no inline styles or
/// scripts); the numbers come from AuditStats, as `mxgate log --stats`'s do.
extension ConsoleServer {
    func statsRoutes(_ r: Hummingbird.Router<ConsoleContext>) {
        r.get("/stats") { req, ctx in try self.statsPage(req, ctx) }
        r.get("/api/stats") { req, _ in try self.statsAPI(req) }
    }

    /// The window: `window` (default 1d), or `since`/`until`.
    func statsWindow(_ req: Request) throws -> (Date, Date) {
        let p = Form.query(req)
        func v(_ k: String) -> String? { p[k].flatMap { $0.isEmpty ? nil : $0 } }
        let now = Date()
        var since = now.addingTimeInterval(-86400), until = now
        if let w = v("window") {
            guard let d = AuditFilter.parseDuration(w) else { throw AuditQuery.Invalid(message: "window '\(w)' is not a duration such as 1h, 1d, 7d") }
            since = now.addingTimeInterval(-d)
        }
        if let s = v("since") {
            guard let d = Self.parseTime(s) else { throw AuditQuery.Invalid(message: "since '\(s)' is not a time") }
            since = d
        }
        if let s = v("until") {
            guard let d = Self.parseTime(s) else { throw AuditQuery.Invalid(message: "until '\(s)' is not a time") }
            until = d
        }
        return (since, until)
    }

    func statsAPI(_ req: Request) throws -> Response {
        do {
            let (since, until) = try statsWindow(req)
            return Self.json(try index.stats(since: since, until: until).json())
        } catch let e as AuditQuery.Invalid {
            return Self.apiError(e.message, status: .badRequest)
        }
    }

    func statsPage(_ req: Request, _ ctx: ConsoleContext) throws -> Response {
        let window = Form.query(req)["window"] ?? ""
        var body = """
            <h1>Statistics</h1>
            <form class="search" method="get" action="/stats">
            <label>Window <input name="window" id="window" value="\(HTML.escape(window))" placeholder="1d (default), 7d, 30d"></label>
            <label>&nbsp;<button type="submit">Show</button></label>
            </form>
            """
        let stats: AuditStats
        do {
            let (since, until) = try statsWindow(req)
            stats = try index.stats(since: since, until: until)
        } catch let e as AuditQuery.Invalid {
            body += "<p class=\"error\">\(HTML.escape(e.message))</p>"
            return Self.html(HTML.page(title: "Statistics", login: ctx.login, active: "Statistics", body: body), status: .badRequest)
        }
        let totals = AuditStats.verdictOrder.map { "\(HTML.verdictBadge($0)) \(stats.byVerdict[$0] ?? 0)" }.joined(separator: " &nbsp; ")
        body += "<p id=\"totals\">\(stats.decisions) decisions from \(HTML.escape(HTML.time(stats.since))) to \(HTML.escape(HTML.time(stats.until))) UTC: \(totals)</p>"
        body += "<h2>By hour (UTC)</h2>" + SVGChart.stacked(Self.series(stats.hourly, step: 3600, since: stats.since, until: stats.until, limit: 168, format: "HH"), id: "chart-hourly")
        body += "<h2>By day (UTC)</h2>" + SVGChart.stacked(Self.series(stats.daily, step: 86400, since: stats.since, until: stats.until, limit: 92, format: "MM-dd"), id: "chart-daily")
        body += "<div class=\"charts\">"
        for (title, counts, id) in [("Top refusing rules", stats.refusingRules, "top-rules"), ("Top refused clients", stats.refusedClients, "top-clients"),
                                    ("Top refused sender domains", stats.refusedSenderDomains, "top-domains")] {
            body += "<section><h2>\(title)</h2>" + (counts.isEmpty ? "<p class=\"note\">None in this window.</p>" : SVGChart.horizontal(AuditStats.top(counts, 10), id: id)) + "</section>"
        }
        body += "<section><h2>Spam score (transactions)</h2>"
            + SVGChart.histogram(stats.scores.enumerated().map { (AuditStats.binLabel($0.offset), $0.element) }, id: "chart-scores") + "</section></div>"
        return Self.html(HTML.page(title: "Statistics", login: ctx.login, active: "Statistics", body: body))
    }

    /// Every bucket of the window in order, empty ones included, at most the last `limit`.
    static func series(_ buckets: [Int: [String: Int]], step: Int, since: Date, until: Date, limit: Int, format: String) -> [(String, [String: Int])] {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = format
        var start = Int(since.timeIntervalSince1970.rounded(.down))
        start -= start % step
        let end = Int(until.timeIntervalSince1970.rounded(.up))
        start = max(start, end - end % step - (limit - 1) * step)
        return stride(from: start, to: end, by: step).map { t in (f.string(from: Date(timeIntervalSince1970: Double(t))), buckets[t] ?? [:]) }
    }
}

/// Server-drawn SVG charts; every label goes through HTML.escape.
enum SVGChart {
    static let colors = ["accepted": "#2f7d32", "rejected": "#b3261e", "tempfailed": "#b26a00", "quarantined": "#6a3fb5", "discarded": "#455a64"]

    /// Stacked bars of counts by verdict, with a legend.
    static func stacked(_ series: [(String, [String: Int])], id: String) -> String {
        let width = 900.0, height = 220.0, left = 40.0, bottom = 24.0
        let maxTotal = max(1, series.map { $0.1.values.reduce(0, +) }.max() ?? 1)
        let slot = (width - left) / Double(max(series.count, 1))
        var s = "<svg id=\"\(id)\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height + 20))\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">"
        s += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width)\" y2=\"\(height - bottom)\" stroke=\"#999\"/>"
        s += "<text x=\"\(left - 4)\" y=\"12\" text-anchor=\"end\" font-size=\"11\">\(maxTotal)</text><text x=\"\(left - 4)\" y=\"\(height - bottom)\" text-anchor=\"end\" font-size=\"11\">0</text>"
        let labelEvery = max(1, series.count / 24)
        for (i, (label, counts)) in series.enumerated() {
            let x = left + Double(i) * slot
            var y = height - bottom
            for v in AuditStats.verdictOrder {
                guard let c = counts[v], c > 0 else { continue }
                let h = (height - bottom - 8) * Double(c) / Double(maxTotal)
                y -= h
                s += "<rect x=\(q(x + 1)) y=\(q(y)) width=\(q(max(1, slot - 2))) height=\(q(h)) fill=\"\(colors[v]!)\"><title>\(HTML.escape(label)) \(v): \(c)</title></rect>"
            }
            if i % labelEvery == 0 {
                s += "<text x=\(q(x + slot / 2)) y=\(q(height - 8)) text-anchor=\"middle\" font-size=\"10\">\(HTML.escape(label))</text>"
            }
        }
        var lx = left
        for v in AuditStats.verdictOrder {
            s += "<rect x=\(q(lx)) y=\(q(height + 6)) width=\"10\" height=\"10\" fill=\"\(colors[v]!)\"/><text x=\(q(lx + 14)) y=\(q(height + 15)) font-size=\"11\">\(v)</text>"
            lx += 110
        }
        return s + "</svg>"
    }

    /// One horizontal bar per name, longest first.
    static func horizontal(_ items: [(String, Int)], id: String) -> String {
        let width = 440.0, row = 22.0, labelWidth = 250.0
        let maxCount = max(1, items.map(\.1).max() ?? 1)
        var s = "<svg id=\"\(id)\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(row * Double(items.count) + 4))\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (i, (name, count)) in items.enumerated() {
            let y = Double(i) * row
            let w = (width - labelWidth - 50) * Double(count) / Double(maxCount)
            let shown = name.count > 40 ? String(name.prefix(39)) + "…" : name
            s += "<text x=\(q(labelWidth - 6)) y=\(q(y + 15)) text-anchor=\"end\" font-size=\"11\"><title>\(HTML.escape(name))</title>\(HTML.escape(shown))</text>"
            s += "<rect x=\(q(labelWidth)) y=\(q(y + 4)) width=\(q(max(1, w))) height=\"14\" fill=\"#b3261e\"/>"
            s += "<text x=\(q(labelWidth + w + 4)) y=\(q(y + 15)) font-size=\"11\">\(count)</text>"
        }
        return s + "</svg>"
    }

    /// Vertical bars, one per bin.
    static func histogram(_ bins: [(String, Int)], id: String) -> String {
        let width = 440.0, height = 180.0, bottom = 20.0
        let maxCount = max(1, bins.map(\.1).max() ?? 1)
        let slot = width / Double(max(bins.count, 1))
        var s = "<svg id=\"\(id)\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (i, (label, count)) in bins.enumerated() {
            let h = (height - bottom - 16) * Double(count) / Double(maxCount)
            let x = Double(i) * slot
            s += "<rect x=\(q(x + 2)) y=\(q(height - bottom - h)) width=\(q(slot - 4)) height=\(q(h)) fill=\"#1f5fa8\"><title>\(HTML.escape(label)): \(count)</title></rect>"
            s += "<text x=\(q(x + slot / 2)) y=\(q(height - bottom - h - 3)) text-anchor=\"middle\" font-size=\"10\">\(count)</text>"
            s += "<text x=\(q(x + slot / 2)) y=\(q(height - 6)) text-anchor=\"middle\" font-size=\"10\">\(HTML.escape(label))</text>"
        }
        return s + "</svg>"
    }

    /// A quoted attribute value with one decimal.
    private static func q(_ v: Double) -> String { "\"" + String(format: "%.1f", v) + "\"" }
}
