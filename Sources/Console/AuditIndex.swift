import Audit
import CSQLite
import Foundation
import Policy

/// The console's search index over the audit log: one row per record with
/// the fields people search by, and where the record's line is (the
/// file's inode, offset and length), so the JSON lines stay the record of
/// truth and the index stays small. Kept up to date by `update()`, which
/// reads each log file from where it stopped (rotation renames a file, its
/// inode stays), and rebuilt from the logs when its file is missing.
/// SQLite's handle is not shared between threads: one lock serializes it.
public final class AuditIndex: @unchecked Sendable {
    public let path: String
    public let auditPath: String
    private let db: SQLiteDB
    private let lock = NSLock()
    private let insert: SQLiteDB.Statement
    private let insertRcpt: SQLiteDB.Statement
    private let fileOffset: SQLiteDB.Statement

    static let schemaVersion: Int64 = 2

    public init(path: String, auditPath: String) throws {
        self.path = path
        self.auditPath = auditPath
        db = try SQLiteDB(path: path)
        // An index written by an older mxgate (other columns) is dropped and rebuilt from the log.
        let version = try db.prepare("PRAGMA user_version").rows { $0.int(0) }.first ?? 0
        if version != Self.schemaVersion {
            try db.exec("DROP TABLE IF EXISTS rcpts; DROP TABLE IF EXISTS records; DROP TABLE IF EXISTS files; PRAGMA user_version = \(Self.schemaVersion);")
        }
        try db.exec("""
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = NORMAL;
            CREATE TABLE IF NOT EXISTS files (ino INTEGER PRIMARY KEY, offset INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS records (
                id INTEGER PRIMARY KEY, time REAL NOT NULL, event TEXT NOT NULL, session TEXT NOT NULL,
                verdict TEXT NOT NULL, client_ip TEXT NOT NULL, ip_key TEXT, mail_from TEXT, from_domain TEXT,
                rcpt TEXT NOT NULL, message_id TEXT, rules TEXT NOT NULL, symbols TEXT NOT NULL, reply TEXT NOT NULL,
                score REAL, spf TEXT, dkim TEXT, dmarc TEXT, virus TEXT, country TEXT,
                ino INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS rcpts (record INTEGER NOT NULL, address TEXT NOT NULL, domain TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS records_time ON records(time);
            CREATE INDEX IF NOT EXISTS records_session ON records(session);
            CREATE INDEX IF NOT EXISTS records_ip ON records(ip_key, time);
            CREATE INDEX IF NOT EXISTS records_from ON records(mail_from, time);
            CREATE INDEX IF NOT EXISTS records_from_domain ON records(from_domain, time);
            CREATE INDEX IF NOT EXISTS records_msgid ON records(message_id);
            CREATE INDEX IF NOT EXISTS records_country ON records(country, time);
            CREATE INDEX IF NOT EXISTS records_ino ON records(ino);
            CREATE INDEX IF NOT EXISTS rcpts_address ON rcpts(address);
            CREATE INDEX IF NOT EXISTS rcpts_domain ON rcpts(domain);
            CREATE INDEX IF NOT EXISTS rcpts_record ON rcpts(record);
            """)
        insert = try db.prepare("""
            INSERT INTO records (time, event, session, verdict, client_ip, ip_key, mail_from, from_domain, rcpt, message_id,
                                 rules, symbols, reply, score, spf, dkim, dmarc, virus, country, ino, offset, length)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        insertRcpt = try db.prepare("INSERT INTO rcpts (record, address, domain) VALUES (?, ?, ?)")
        fileOffset = try db.prepare("SELECT offset FROM files WHERE ino = ?")
    }

    // MARK: keeping up with the log

    /// Indexes what the log files hold beyond what was indexed, and forgets
    /// the records of files rotation has deleted. Returns how many records
    /// were added; lines that do not parse are skipped (and counted in `skipped`).
    @discardableResult
    public func update() throws -> (added: Int, skipped: Int) {
        let files = AuditReader(path: auditPath).files()
        var seen: [Int64] = []
        var added = 0, skipped = 0
        for file in files {
            var st = stat()
            guard stat(file, &st) == 0 else { continue }
            let ino = Int64(bitPattern: UInt64(st.st_ino))
            seen.append(ino)
            var offset = try lock.withLock { () in
                try fileOffset.rows([.int(ino)]) { $0.int(0) }.first ?? 0
            }
            if offset > Int64(st.st_size) {
                // A new file with the inode of one deleted: start it over.
                try lock.withLock { try forget(ino) }
                offset = 0
            }
            guard Int64(st.st_size) > offset else { continue }
            let r = try index(file: file, ino: ino, from: offset)
            added += r.added
            skipped += r.skipped
        }
        try lock.withLock { () in
            let known = try db.prepare("SELECT ino FROM files").rows { $0.int(0) }
            for ino in known where !seen.contains(ino) { try forget(ino) }
        }
        return (added, skipped)
    }

    private func forget(_ ino: Int64) throws {
        try db.prepare("DELETE FROM rcpts WHERE record IN (SELECT id FROM records WHERE ino = ?)").run([.int(ino)])
        try db.prepare("DELETE FROM records WHERE ino = ?").run([.int(ino)])
        try db.prepare("DELETE FROM files WHERE ino = ?").run([.int(ino)])
    }

    /// Reads whole lines from `offset` on, in batches of one transaction each.
    private func index(file: String, ino: Int64, from start: Int64) throws -> (added: Int, skipped: Int) {
        guard let h = FileHandle(forReadingAtPath: file) else { return (0, 0) }
        defer { try? h.close() }
        try h.seek(toOffset: UInt64(start))
        var offset = start
        var pending: [UInt8] = []
        var added = 0, skipped = 0
        let decoder = JSONDecoder()
        while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty {
            pending += chunk
            var lines: [(AuditRecord?, Int64, Int)] = []
            var lineStart = 0
            while let nl = pending[lineStart...].firstIndex(of: 10) {
                let line = pending[lineStart..<nl]
                if !line.isEmpty {
                    lines.append((try? decoder.decode(AuditRecord.self, from: Data(line)), offset + Int64(lineStart), line.count))
                }
                lineStart = nl + 1
            }
            pending.removeFirst(lineStart)
            offset += Int64(lineStart)
            let end = offset
            try lock.withLock { () in
                try db.exec("BEGIN")
                do {
                    for (record, at, length) in lines {
                        guard let record else { skipped += 1; continue }
                        try add(record, ino: ino, offset: at, length: length)
                        added += 1
                    }
                    try db.prepare("INSERT INTO files (ino, offset) VALUES (?, ?) ON CONFLICT(ino) DO UPDATE SET offset = excluded.offset")
                        .run([.int(ino), .int(end)])
                    try db.exec("COMMIT")
                } catch {
                    try? db.exec("ROLLBACK")
                    throw error
                }
            }
        }
        return (added, skipped)
    }

    private func add(_ r: AuditRecord, ino: Int64, offset: Int64, length: Int) throws {
        let from = r.mailFrom?.lowercased()
        try insert.run([
            .double(r.time.timeIntervalSince1970), .text(r.event.rawValue), .text(r.session), .text(r.verdict.rawValue),
            .text(r.clientIP), .optional(IPKey.key(r.clientIP)), .optional(from), .optional(from.map(Self.domain)),
            .text(r.rcptTo.joined(separator: ", ")), .optional(r.messageID), .text(r.rules.joined(separator: "\n")),
            .text(r.symbols.keys.sorted().joined(separator: "\n")), .text(r.reply), r.spamScore.map(SQLiteDB.Value.double) ?? .null,
            .optional(r.auth?.spf?.result), .optional(r.auth?.dkim.map { $0.isEmpty ? "none" : $0.map(\.result).joined(separator: ",") }),
            .optional(r.auth?.dmarc?.result), .optional(r.virus), .optional(r.country?.uppercased()), .int(ino), .int(offset), .int(Int64(length)),
        ])
        let id = sqlite3_last_insert_rowid(db.handle)
        for a in r.rcptTo {
            let l = a.lowercased()
            try insertRcpt.run([.int(id), .text(l), .text(Self.domain(l))])
        }
    }

    static func domain(_ address: String) -> String {
        guard let at = address.lastIndex(of: "@") else { return "" }
        return String(address[address.index(after: at)...])
    }

    // MARK: searching

    /// Records matching the query, newest first, one page of them.
    public func search(_ q: AuditQuery) throws -> AuditPage {
        var clauses: [String] = []
        var values: [SQLiteDB.Value] = []
        if let since = q.since { clauses.append("time >= ?"); values.append(.double(since.timeIntervalSince1970)) }
        if let until = q.until { clauses.append("time < ?"); values.append(.double(until.timeIntervalSince1970)) }
        if let v = q.verdict { clauses.append("verdict = ?"); values.append(.text(v.rawValue)) }
        if let s = q.sender?.lowercased(), !s.isEmpty {
            if s == "<>" {
                clauses.append("mail_from = ''")
            } else if s.hasPrefix("@") || !s.contains("@") {
                clauses.append("from_domain = ?"); values.append(.text(s.hasPrefix("@") ? String(s.dropFirst()) : s))
            } else {
                clauses.append("mail_from = ?"); values.append(.text(s))
            }
        }
        if let r = q.recipient?.lowercased(), !r.isEmpty {
            if r.hasPrefix("@") || !r.contains("@") {
                clauses.append("id IN (SELECT record FROM rcpts WHERE domain = ?)"); values.append(.text(r.hasPrefix("@") ? String(r.dropFirst()) : r))
            } else {
                clauses.append("id IN (SELECT record FROM rcpts WHERE address = ?)"); values.append(.text(r))
            }
        }
        if let c = q.client, !c.isEmpty {
            guard let range = IPKey.range(c) else { throw AuditQuery.Invalid(message: "'\(c)' is not an IP address or network") }
            clauses.append("ip_key BETWEEN ? AND ?"); values += [.text(range.lower), .text(range.upper)]
        }
        if let rule = q.rule, !rule.isEmpty {
            clauses.append("(instr(rules, ?) > 0 OR instr(symbols, ?) > 0)"); values += [.text(rule), .text(rule)]
        }
        if let m = q.messageID, !m.isEmpty {
            let id = m.hasPrefix("<") ? m : "<\(m)>"
            clauses.append("(message_id = ? OR message_id = ?)"); values += [.text(id), .text(m)]
        }
        for (name, column) in [(q.spf, "spf"), (q.dkim, "dkim"), (q.dmarc, "dmarc")] {
            if let v = name?.lowercased(), !v.isEmpty { clauses.append("instr(\(column), ?) > 0"); values.append(.text(v)) }
        }
        if let session = q.session, !session.isEmpty { clauses.append("session = ?"); values.append(.text(session)) }
        if let c = q.country?.uppercased(), !c.isEmpty { clauses.append("country = ?"); values.append(.text(c)) }
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let size = max(1, min(q.pageSize, 500))
        let text = q.text.map { $0.lowercased() }.flatMap { $0.isEmpty ? nil : $0 }
        // Free text looks at the lines themselves, so it pages over what the other conditions leave.
        let sql = "SELECT \(IndexedRecord.columns) FROM records \(whereSQL) ORDER BY time DESC, id DESC"
        var out: [IndexedRecord] = []
        var more = false
        try lock.withLock { () in
            if text == nil {
                let rows = try db.prepare(sql + " LIMIT ? OFFSET ?").rows(values + [.int(Int64(size + 1)), .int(Int64(q.page * size))], IndexedRecord.init)
                more = rows.count > size
                out = Array(rows.prefix(size))
                return
            }
            var skip = q.page * size
            let lines = LineReader(auditPath: auditPath)
            try db.prepare(sql).each(values) { r in
                let row = IndexedRecord(r)
                guard let line = lines.line(row), line.lowercased().contains(text!) else { return true }
                if skip > 0 { skip -= 1; return true }
                if out.count == size { more = true; return false }
                out.append(row)
                return true
            }
        }
        return AuditPage(records: out, page: q.page, pageSize: size, more: more)
    }

    /// The full record behind an index row, read from its log file.
    public func record(_ row: IndexedRecord) -> AuditRecord? {
        guard let line = LineReader(auditPath: auditPath).line(row) else { return nil }
        return try? JSONDecoder().decode(AuditRecord.self, from: Data(line.utf8))
    }

    /// Every record of one SMTP session, oldest first.
    public func session(_ id: String) throws -> [(IndexedRecord, AuditRecord)] {
        var q = AuditQuery()
        q.session = id
        q.pageSize = 500
        return try search(q).records.reversed().compactMap { row in record(row).map { (row, $0) } }
    }

    /// One row by its index id.
    public func row(_ id: Int64) throws -> IndexedRecord? {
        try lock.withLock { () in
            try db.prepare("SELECT \(IndexedRecord.columns) FROM records WHERE id = ?")
                .rows([.int(id)], IndexedRecord.init).first
        }
    }

    /// The statistics of a time window, counted from the index's columns by
    /// the same AuditStats that `mxgate log --stats` feeds from the log.
    public func stats(since: Date, until: Date) throws -> AuditStats {
        var stats = AuditStats(since: since, until: until)
        let events = AuditStats.decisionEvents.sorted().map { "'\($0)'" }.joined(separator: ", ")
        try lock.withLock { () throws in
            try db.prepare("""
                SELECT time, event, verdict, rules, client_ip, mail_from, score FROM records
                WHERE time >= ? AND time < ? AND event IN (\(events))
                """).each([.double(since.timeIntervalSince1970), .double(until.timeIntervalSince1970)]) { r in
                stats.add(time: Date(timeIntervalSince1970: r.double(0) ?? 0), event: r.text(1) ?? "", verdict: r.text(2) ?? "",
                          rules: (r.text(3) ?? "").split(separator: "\n").map(String.init), clientIP: r.text(4) ?? "",
                          mailFrom: r.text(5), spamScore: r.double(6))
                return true
            }
        }
        return stats
    }

    public var count: Int {
        (try? lock.withLock { try db.prepare("SELECT count(*) FROM records").rows { Int($0.int(0)) }.first ?? 0 }) ?? 0
    }
}

/// What the search form asks. Address filters match the whole address or,
/// given as "@domain" or "domain", its domain; `client` is an address or a
/// CIDR network; `rule` matches rule and symbol names; `text` any part of the line.
public struct AuditQuery: Sendable {
    public var since: Date?
    public var until: Date?
    public var sender: String?
    public var recipient: String?
    public var client: String?
    public var verdict: AuditRecord.Verdict?
    public var rule: String?
    public var messageID: String?
    public var spf: String?
    public var dkim: String?
    public var dmarc: String?
    public var text: String?
    public var session: String?
    /// The client's ISO country code, when GeoIP knew it.
    public var country: String?
    public var page = 0
    public var pageSize = 50

    public init() {}

    public struct Invalid: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }
}

public struct AuditPage: Sendable {
    public var records: [IndexedRecord]
    public var page: Int
    public var pageSize: Int
    public var more: Bool
}

/// A search hit: what a results table shows, and where the full line is.
public struct IndexedRecord: Sendable {
    public var id: Int64
    public var time: Date
    public var event: String
    public var session: String
    public var verdict: String
    public var clientIP: String
    public var mailFrom: String?
    public var rcpt: String
    public var messageID: String?
    public var rules: [String]
    public var reply: String
    public var score: Double?
    public var virus: String?
    var ino: Int64
    var offset: Int64
    var length: Int

    /// What `init(_:)` reads, in its order.
    static let columns = "id, time, event, session, verdict, client_ip, mail_from, rcpt, message_id, rules, reply, score, virus, ino, offset, length"

    init(_ r: SQLiteDB.Row) {
        id = r.int(0)
        time = Date(timeIntervalSince1970: r.double(1) ?? 0)
        event = r.text(2) ?? ""
        session = r.text(3) ?? ""
        verdict = r.text(4) ?? ""
        clientIP = r.text(5) ?? ""
        mailFrom = r.text(6)
        rcpt = r.text(7) ?? ""
        messageID = r.text(8)
        rules = (r.text(9) ?? "").split(separator: "\n").map(String.init)
        reply = r.text(10) ?? ""
        score = r.double(11)
        virus = r.text(12)
        ino = r.int(13)
        offset = r.int(14)
        length = Int(r.int(15))
    }
}

/// Reads one record's line back from whichever log file now has its inode.
struct LineReader {
    let auditPath: String

    func line(_ row: IndexedRecord) -> String? {
        for file in AuditReader(path: auditPath).files() {
            var st = stat()
            guard stat(file, &st) == 0, Int64(bitPattern: UInt64(st.st_ino)) == row.ino else { continue }
            guard let h = FileHandle(forReadingAtPath: file) else { return nil }
            defer { try? h.close() }
            guard (try? h.seek(toOffset: UInt64(row.offset))) != nil, let data = try? h.read(upToCount: row.length) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        return nil
    }
}

/// IP addresses as 32 hex digits of Policy's 128-bit form (IPv4 as
/// ::ffff:a.b.c.d), so that a CIDR network is one range of an index in
/// either family.
enum IPKey {
    static func hex(_ v: UInt128) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 32 - s.count) + s
    }

    static func key(_ ip: String) -> String? { IPAddress(ip).map { hex($0.value) } }

    /// The lowest and highest key of an address or network ("192.0.2.0/24", "2001:db8::/32").
    static func range(_ text: String) -> (lower: String, upper: String)? {
        CIDR(text).map { (hex($0.network), hex($0.lastValue)) }
    }
}
