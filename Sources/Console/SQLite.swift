import CSQLite
import Foundation

/// The few calls of SQLite's C API the audit index needs, each statement
/// finalized by its owner. Not Sendable: one `AuditIndex` owns the handle
/// and serializes every use of it.
final class SQLiteDB {
    struct Failure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    private(set) var handle: OpaquePointer?

    init(path: String) throws {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw Failure(message: "\(path): \(message)")
        }
        handle = db
        sqlite3_busy_timeout(db, 5000)
    }

    deinit { sqlite3_close_v2(handle) }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(handle, sql, nil, nil, &err) != SQLITE_OK {
            let message = err.map { String(cString: $0) } ?? "error"
            sqlite3_free(err)
            throw Failure(message: message)
        }
    }

    func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw Failure(message: "\(String(cString: sqlite3_errmsg(handle))) in \(sql)")
        }
        return Statement(stmt, db: self)
    }

    var lastError: String { String(cString: sqlite3_errmsg(handle)) }

    /// One prepared statement; values are bound by position (1-based, as SQLite counts).
    final class Statement {
        private let stmt: OpaquePointer
        private let db: SQLiteDB

        fileprivate init(_ stmt: OpaquePointer, db: SQLiteDB) {
            self.stmt = stmt
            self.db = db
        }

        deinit { sqlite3_finalize(stmt) }

        /// SQLite copies the text (SQLITE_TRANSIENT), so the Swift string may go.
        private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

        func bind(_ values: [Value]) {
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
            for (i, v) in values.enumerated() {
                let n = Int32(i + 1)
                switch v {
                case .null: sqlite3_bind_null(stmt, n)
                case .int(let x): sqlite3_bind_int64(stmt, n, x)
                case .double(let x): sqlite3_bind_double(stmt, n, x)
                case .text(let s): sqlite3_bind_text(stmt, n, s, -1, Self.transient)
                }
            }
        }

        /// Runs a statement that returns no rows.
        func run(_ values: [Value] = []) throws {
            bind(values)
            let rc = sqlite3_step(stmt)
            guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw Failure(message: db.lastError) }
        }

        /// Visits rows while `row` returns true, without keeping them: a
        /// scan that may stop early (free text) or only counts (statistics).
        func each(_ values: [Value] = [], _ row: (Row) throws -> Bool) throws {
            bind(values)
            while true {
                let rc = sqlite3_step(stmt)
                if rc == SQLITE_DONE { return }
                guard rc == SQLITE_ROW else { throw Failure(message: db.lastError) }
                if try !row(Row(stmt: stmt)) { return }
            }
        }

        /// Every row, each read by `row` while it is current.
        func rows<T>(_ values: [Value] = [], _ row: (Row) -> T) throws -> [T] {
            bind(values)
            var out: [T] = []
            while true {
                let rc = sqlite3_step(stmt)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { throw Failure(message: db.lastError) }
                out.append(row(Row(stmt: stmt)))
            }
            return out
        }
    }

    enum Value {
        case null, int(Int64), double(Double), text(String)
        static func optional(_ s: String?) -> Value { s.map(Value.text) ?? .null }
    }

    struct Row {
        let stmt: OpaquePointer
        func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
        func double(_ i: Int32) -> Double? { sqlite3_column_type(stmt, i) == SQLITE_NULL ? nil : sqlite3_column_double(stmt, i) }
        func text(_ i: Int32) -> String? {
            guard let p = sqlite3_column_text(stmt, i) else { return nil }
            return String(cString: p)
        }
    }
}
