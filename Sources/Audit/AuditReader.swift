import Foundation

/// Which records `mxgate log` shows. Address filters match case-insensitively
/// on the whole address or, when given as "@domain" or "domain", on its domain.
public struct AuditFilter: Sendable {
    public var since: Date?
    public var verdict: AuditRecord.Verdict?
    public var clientIP: String?
    public var from: String?
    public var to: String?
    /// Only records whose SPF result (MAIL FROM identity) is this one.
    public var spf: String?
    /// Only records with a DKIM signature of this result ("none": no signature).
    public var dkim: String?
    /// Only records whose DMARC result is this one.
    public var dmarc: String?
    /// Only records whose ARC result is this one.
    public var arc: String?

    public init(since: Date? = nil, verdict: AuditRecord.Verdict? = nil, clientIP: String? = nil, from: String? = nil, to: String? = nil) {
        self.since = since
        self.verdict = verdict
        self.clientIP = clientIP
        self.from = from
        self.to = to
    }

    public func matches(_ r: AuditRecord) -> Bool {
        if let since, r.time < since { return false }
        if let verdict, r.verdict != verdict { return false }
        if let clientIP, r.clientIP != clientIP { return false }
        if let from, !Self.addressMatches(r.mailFrom ?? "", from) { return false }
        if let to, !r.rcptTo.contains(where: { Self.addressMatches($0, to) }) { return false }
        if let spf, r.auth?.spf?.result != spf.lowercased() { return false }
        if let dkim {
            guard let sigs = r.auth?.dkim else { return false }
            let want = dkim.lowercased()
            if want == "none" ? !sigs.isEmpty : !sigs.contains(where: { $0.result == want }) { return false }
        }
        if let dmarc, r.auth?.dmarc?.result != dmarc.lowercased() { return false }
        if let arc, r.auth?.arc?.result != arc.lowercased() { return false }
        return true
    }

    static func addressMatches(_ address: String, _ pattern: String) -> Bool {
        let a = address.lowercased(), p = pattern.lowercased()
        if a == p { return true }
        if p == "<>" { return a.isEmpty }
        let domainPattern = p.hasPrefix("@") ? String(p.dropFirst()) : p
        if !p.contains("@") || p.hasPrefix("@"), let at = a.lastIndex(of: "@") {
            return a[a.index(after: at)...] == domainPattern
        }
        return false
    }

    /// Parses "90s", "15m", "1h", "2d", "1w".
    public static func parseDuration(_ s: String) -> TimeInterval? {
        guard let unit = s.last, let n = Double(s.dropLast()), n >= 0 else { return nil }
        switch unit {
        case "s": return n
        case "m": return n * 60
        case "h": return n * 3600
        case "d": return n * 86400
        case "w": return n * 604800
        default: return nil
        }
    }
}

/// Reads the audit log and its rotated predecessors, oldest first.
public struct AuditReader: Sendable {
    public let path: String
    public init(path: String) { self.path = path }

    /// The files holding records, oldest first: path.N … path.1, path.
    public func files() -> [String] {
        let fm = FileManager.default
        var rotated: [(Int, String)] = []
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        for name in (try? fm.contentsOfDirectory(atPath: dir.isEmpty ? "." : dir)) ?? [] {
            guard name.hasPrefix(base + "."), let n = Int(name.dropFirst(base.count + 1)) else { continue }
            rotated.append((n, dir.isEmpty ? name : dir + "/" + name))
        }
        var out = rotated.sorted { $0.0 > $1.0 }.map(\.1)
        if fm.fileExists(atPath: path) { out.append(path) }
        return out
    }

    /// Every record passing the filter; lines that do not parse are reported
    /// through `onBadLine` (file, line number) and skipped.
    public func records(matching filter: AuditFilter, onBadLine: (String, Int) -> Void = { _, _ in }) -> [AuditRecord] {
        var out: [AuditRecord] = []
        let decoder = JSONDecoder()
        for file in files() {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            var lineNo = 0
            for line in data.split(separator: 10, omittingEmptySubsequences: false) {
                lineNo += 1
                if line.isEmpty { continue }
                guard let r = try? decoder.decode(AuditRecord.self, from: Data(line)) else {
                    onBadLine(file, lineNo)
                    continue
                }
                if filter.matches(r) { out.append(r) }
            }
        }
        return out
    }
}

/// Renders records as an aligned table for people.
public enum AuditTable {
    /// One record in full, a field a line, for `mxgate log --detail`.
    public static func detail(_ r: AuditRecord) -> String {
        var lines: [(String, String)] = [
            ("time", AuditRecord.formatTime(r.time)), ("session", r.session), ("event", r.event.rawValue),
            ("verdict", r.verdict.rawValue), ("reply", r.reply),
            ("client", r.clientIP + (r.clientPort.map { " port \($0)" } ?? "")),
        ]
        if let h = r.helo { lines.append(("helo", h)) }
        if r.tls { lines.append(("tls", "yes")) }
        if let f = r.mailFrom { lines.append(("from", f.isEmpty ? "<>" : f)) }
        if !r.rcptTo.isEmpty { lines.append(("to", r.rcptTo.joined(separator: ", "))) }
        if let m = r.messageID { lines.append(("message-id", m)) }
        if let s = r.size { lines.append(("size", String(s))) }
        for rule in r.rules { lines.append(("rule", rule)) }
        for (name, score) in r.symbols.sorted(by: { $0.key < $1.key }) { lines.append(("symbol", "\(name) \(score)")) }
        if let s = r.spamScore { lines.append(("spam score", String(s))) }
        if let v = r.virus { lines.append(("virus", v)) }
        lines += r.auth?.summary ?? []
        if let relay = r.relay { lines.append(("relay", relay)) }
        if let reason = r.reason { lines.append(("reason", reason)) }
        for w in r.warnings { lines.append(("warning", w)) }
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { "\($0.0.padding(toLength: width, withPad: " ", startingAt: 0))  \($0.1)" }.joined(separator: "\n") + "\n"
    }

    public static func render(_ records: [AuditRecord], header: Bool = true) -> String {
        let cols = ["TIME", "VERDICT", "CLIENT", "FROM", "TO", "RULES", "REPLY"]
        var rows: [[String]] = header ? [cols] : []
        for r in records {
            let time = AuditRecord.formatTime(r.time).replacingOccurrences(of: "T", with: " ").prefix(19)
            rows.append([
                String(time), r.verdict.rawValue, r.clientIP, r.mailFrom.map { $0.isEmpty ? "<>" : $0 } ?? "-",
                r.rcptTo.isEmpty ? "-" : r.rcptTo.joined(separator: ","),
                r.rules.isEmpty ? "-" : r.rules.joined(separator: ","), r.reply,
            ])
        }
        guard !rows.isEmpty else { return "" }
        var widths = Array(repeating: 0, count: cols.count)
        for row in rows { for (i, c) in row.enumerated() where i < cols.count - 1 { widths[i] = max(widths[i], c.count) } }
        return rows.map { row in
            row.enumerated().map { i, c in i < cols.count - 1 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0) : c }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}

/// Follows the live audit file for `mxgate log --follow`, noticing rotation
/// (the file shrinks or is replaced) and starting over on the new file.
public struct AuditTail: Sendable {
    public let path: String
    private var offset: UInt64 = 0
    private var inode: UInt64 = 0
    private var partial: [UInt8] = []

    public init(path: String) { self.path = path }

    public mutating func skipToEnd() {
        var st = stat()
        if stat(path, &st) == 0 {
            offset = UInt64(st.st_size)
            inode = UInt64(st.st_ino)
        }
    }

    public mutating func poll() -> [AuditRecord] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        if UInt64(st.st_ino) != inode || UInt64(st.st_size) < offset {
            inode = UInt64(st.st_ino)
            offset = 0
            partial = []
        }
        guard UInt64(st.st_size) > offset, let h = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? h.close() }
        try? h.seek(toOffset: offset)
        let data = h.readDataToEndOfFile()
        offset += UInt64(data.count)
        partial += data
        var out: [AuditRecord] = []
        let decoder = JSONDecoder()
        while let nl = partial.firstIndex(of: 10) {
            let line = Data(partial[..<nl])
            partial.removeSubrange(...nl)
            if let r = try? decoder.decode(AuditRecord.self, from: line) { out.append(r) }
        }
        return out
    }
}
