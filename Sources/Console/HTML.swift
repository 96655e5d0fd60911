import Audit
import Foundation

/// Pages are built as strings, and everything that came from mail or a
/// client goes through `escape` first: a Subject holding `<script>`, a NUL
/// or ten thousand characters shows as inert text. The Content-Security-
/// Policy the server sends forbids scripts and remote content anyway.
enum HTML {
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\n", "\t": out.unicodeScalars.append(scalar)
            default:
                // Control characters (NUL included) and lone bidi overrides show as a visible mark.
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value) {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// A value for a URL query or path segment.
    static func component(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
    }

    static func time(_ d: Date) -> String {
        String(AuditRecord.formatTime(d).replacingOccurrences(of: "T", with: " ").prefix(19))
    }

    /// The frame of every page: title, the navigation for the user's role, the logout form.
    static func page(title: String, login: SessionStore.Login?, active: String = "", body: String) -> String {
        var nav = ""
        if let login {
            let links = [("/", "Search"), ("/quarantine", "Quarantine"), ("/stats", "Statistics"), ("/queue", "Queue")]
            nav = "<nav>" + links.map { href, name in
                "<a href=\"\(href)\"\(active == name ? " class=\"active\"" : "")>\(name)</a>"
            }.joined() + """
                <form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="\(escape(login.csrf))">\
                <span>\(escape(login.user)) (\(login.role.rawValue))</span> <button type="submit" id="logout">Log out</button></form></nav>
                """
        }
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title)) · mxgate</title><link rel="stylesheet" href="/static/console.css"></head>
            <body><header><a class="brand" href="/">mxgate</a>\(nav)</header><main>
            \(body)
            </main></body></html>
            """
    }

    static func table(_ headers: [String], _ rows: [[String]], id: String? = nil) -> String {
        var s = "<table\(id.map { " id=\"\($0)\"" } ?? "")><thead><tr>" + headers.map { "<th>\(escape($0))</th>" }.joined() + "</tr></thead><tbody>"
        for r in rows { s += "<tr>" + r.map { "<td>\($0)</td>" }.joined() + "</tr>" }
        return s + "</tbody></table>"
    }

    static func verdictBadge(_ v: String) -> String { "<span class=\"verdict \(escape(v))\">\(escape(v))</span>" }

    static let stylesheet = """
        body{font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
        header{display:flex;align-items:center;gap:1.5em;background:#1d2330;color:#fff;padding:.6em 1.2em}
        header a{color:#cfd6e4;text-decoration:none}header a.active,header a:hover{color:#fff}
        .brand{font-weight:bold;color:#fff!important;font-size:1.1em}
        nav{display:flex;gap:1.2em;align-items:center;flex:1}.logout{margin-left:auto;display:flex;gap:.6em;align-items:center}
        main{padding:1.2em;max-width:1400px}
        table{border-collapse:collapse;width:100%;background:#fff;margin:.6em 0}
        th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ec;vertical-align:top;overflow-wrap:anywhere;word-break:break-word}
        th{background:#eef0f4;font-weight:600}
        form.search{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.5em;background:#fff;padding:.8em;border:1px solid #e3e6ec}
        form.search label{display:flex;flex-direction:column;font-size:.85em;color:#555}
        input,select,button{font:inherit;padding:.3em .45em}
        button{cursor:pointer}
        .verdict,a.why{white-space:nowrap}
        .verdict{padding:.1em .45em;border-radius:3px;font-size:.85em;color:#fff;background:#6b7280}
        .verdict.accepted{background:#2f7d32}.verdict.rejected{background:#b3261e}.verdict.tempfailed{background:#b26a00}
        .verdict.quarantined{background:#6a3fb5}.verdict.discarded{background:#455a64}
        .error{background:#fde8e7;border:1px solid #f5b5b0;padding:.6em;color:#8a1c14}
        .note{background:#e8f1fd;border:1px solid #b0cdf5;padding:.6em}
        pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #e3e6ec;padding:.6em}
        dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;background:#fff;padding:.8em;border:1px solid #e3e6ec}
        dl.facts dt{color:#555}dl.facts dd{margin:0;overflow-wrap:anywhere}
        .login{max-width:340px;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #e3e6ec;display:flex;flex-direction:column;gap:.7em}
        .pager{display:flex;gap:1em;margin:.5em 0}
        svg.chart{width:100%;height:auto;background:#fff;border:1px solid #e3e6ec;font-family:"DejaVu Sans",sans-serif}
        .charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em}
        .actions{display:flex;gap:.6em;margin:.8em 0;flex-wrap:wrap}button.danger{color:#8a1c14}
        """
}
