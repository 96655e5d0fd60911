import CClamAV
import Foundation

/// libclamav in-process: the signature database is loaded and compiled once
/// (at start-up or reload, never on an event loop) into an engine that is
/// then only read, so concurrent scans share it. A reload builds a new
/// engine and the runtime swaps it whole.
public final class EmbeddedScanner: @unchecked Sendable {
    // The engine is immutable after cl_engine_compile; libclamav allows
    // concurrent scans with one compiled engine.
    private let engine: OpaquePointer
    public let signatures: UInt32
    public let directory: String

    /// cl_init must run once per process, before any engine exists.
    private static let initialized: Result<Void, ScanError> = {
        let rc = cl_init(UInt32(CL_INIT_DEFAULT))
        return rc == CL_SUCCESS ? .success(()) : .failure(ScanError("cl_init: \(String(cString: cl_strerror(rc)))"))
    }()

    public init(databaseDirectory: String) throws {
        try Self.initialized.get()
        guard let e = cl_engine_new() else { throw ScanError("cannot create a ClamAV engine") }
        var sigs: UInt32 = 0
        // CL_DB_STDOPT (a macro Swift cannot import): phishing, phishing URLs, bytecode.
        var rc = cl_load(databaseDirectory, e, &sigs, UInt32(CL_DB_PHISHING | CL_DB_PHISHING_URLS | CL_DB_BYTECODE))
        guard rc == CL_SUCCESS else {
            cl_engine_free(e)
            throw ScanError("cannot load ClamAV signatures from \(databaseDirectory): \(String(cString: cl_strerror(rc)))")
        }
        rc = cl_engine_compile(e)
        guard rc == CL_SUCCESS else {
            cl_engine_free(e)
            throw ScanError("cannot compile ClamAV signatures: \(String(cString: cl_strerror(rc)))")
        }
        engine = e
        signatures = sigs
        directory = databaseDirectory
    }

    deinit { cl_engine_free(engine) }

    /// All parsers on (mail, archives, documents), as clamscan scans by default.
    private static func options() -> cl_scan_options {
        cl_scan_options(general: 0, parse: ~UInt32(0), heuristic: 0, mail: 0, dev: 0)
    }

    /// Scans bytes in memory.
    public func scan(bytes: UnsafeRawBufferPointer) throws -> ScanResult {
        guard let map = cl_fmap_open_memory(bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, bytes.count) else {
            throw ScanError("cannot map the message for scanning")
        }
        defer { cl_fmap_close(map) }
        var virname: UnsafePointer<CChar>?
        var scanned: UInt = 0
        var opts = Self.options()
        let rc = cl_scanmap_callback(map, "message.eml", &virname, &scanned, engine, &opts, nil)
        return try Self.result(rc, virname)
    }

    /// Scans an open file (a message spilled to disk) without reading it into memory.
    public func scan(fileDescriptor fd: Int32) throws -> ScanResult {
        var virname: UnsafePointer<CChar>?
        var scanned: UInt = 0
        var opts = Self.options()
        let rc = cl_scandesc(fd, "message.eml", &virname, &scanned, engine, &opts)
        return try Self.result(rc, virname)
    }

    private static func result(_ rc: cl_error_t, _ virname: UnsafePointer<CChar>?) throws -> ScanResult {
        switch rc {
        case CL_CLEAN: return .clean
        case CL_VIRUS: return .infected(virname.map { String(cString: $0) } ?? "unknown")
        default: throw ScanError("ClamAV: \(String(cString: cl_strerror(rc)))")
        }
    }
}
