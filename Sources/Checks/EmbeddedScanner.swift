import CClamAV
import Foundation
import Synchronization

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
        if let dir = Self.scratch { _ = cl_engine_set_str(e, CL_ENGINE_TMPDIR, dir) }
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

    /// Where libclamav writes what it unpacks. It makes a folder per scan and
    /// writes every MIME part of a message into it, so on a disk file system
    /// (a journalled /tmp) that cost about 1 ms a message, a third of all the
    /// checks; in memory (/dev/shm) the same files cost next to nothing, and
    /// they live only for the scan. A private folder (mkdtemp, mode 0700),
    /// removed at exit. An admin's TMPDIR is obeyed instead, and without a
    /// writable /dev/shm libclamav keeps its default.
    static let scratch: String? = {
        guard ProcessInfo.processInfo.environment["TMPDIR"] == nil, access("/dev/shm", W_OK | X_OK) == 0 else { return nil }
        var template = Array("/dev/shm/mxgate-clamav.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { return nil }
        // By exit time `scratch` holds the folder; libclamav has removed each scan's files.
        atexit { if let p = EmbeddedScanner.scratch { _ = rmdir(p) } }
        return String(cString: made)
    }()

    /// All parsers on (mail, archives, documents), as clamscan scans by default.
    private static func options() -> cl_scan_options {
        cl_scan_options(general: 0, parse: ~UInt32(0), heuristic: 0, mail: 0, dev: 0)
    }

    /// The largest message `isBounded` can pass.
    public static let boundedLimit = 32 * 1024

    /// Whether scanning `bytes` costs no more than reading them: small,
    /// text only (no control byte but TAB, CR, LF and FF, so no archive,
    /// Office file or executable sent raw), and nothing libclamav would
    /// decode and unpack (base64, uuencode's "begin" lines, yEnc, BinHex,
    /// a PDF). Such a scan is short enough to run on the caller's thread,
    /// where handing it to a worker and back cost as much as the scan; a
    /// message this says no to can still be anything (an archive bomb
    /// included), and goes to a worker thread. One pass; ASCII case folded.
    public static func isBounded(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= boundedLimit else { return false }
        let n = bytes.count
        @inline(__always) func lower(_ i: Int) -> UInt8 { bytes[i] >= 65 && bytes[i] <= 90 ? bytes[i] | 0x20 : bytes[i] }
        @inline(__always) func has(_ word: StaticString, at i: Int) -> Bool {
            let w = UnsafeRawBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            guard i + w.count <= n else { return false }
            for k in 0..<w.count where lower(i + k) != w[k] { return false }
            return true
        }
        for i in 0..<n {
            let b = bytes[i]
            if b < 32 {
                if b == 9 || b == 10 || b == 13 || b == 12 { continue }
                return false
            }
            switch b | 0x20 {
            case 98:  // b
                if has("base64", at: i) || has("binhex", at: i) { return false }
                if (i == 0 || bytes[i - 1] == 10) && has("begin", at: i) { return false }
            case 61:  // =
                if has("=ybegin", at: i) { return false }
            case 37:  // %
                if has("%pdf", at: i) { return false }
            default: break
            }
        }
        return true
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

/// The embedded engine as the gateway holds it: compiled once, then
/// replaced whole when the signature folder changes (freshclam writes new
/// files and renames them into place). Scans in flight keep the engine they
/// started with; a folder caught mid-update fails to load, the old engine
/// stays, and the next check tries again.
public final class EmbeddedEngine: Sendable {
    public let directory: String
    private let state: Mutex<(scanner: EmbeddedScanner, fingerprint: [String], failed: [String]?)>

    public init(databaseDirectory: String) throws {
        directory = databaseDirectory
        let print = Self.fingerprint(databaseDirectory)
        state = Mutex((try EmbeddedScanner(databaseDirectory: databaseDirectory), print, nil))
    }

    /// The engine to scan with now.
    public var scanner: EmbeddedScanner { state.withLock { $0.scanner } }

    public enum Reload: Sendable {
        case unchanged
        case reloaded(signatures: UInt32)
        /// The folder changed but does not load; the old engine stays. Reported once per change.
        case failed(String)
    }

    /// Compares the folder with what the engine was built from and rebuilds
    /// it if it differs. Blocking: call it off the event loops.
    public func reloadIfChanged() -> Reload {
        let print = Self.fingerprint(directory)
        let (same, alreadyFailed) = state.withLock { ($0.fingerprint == print, $0.failed == print) }
        if same || alreadyFailed { return .unchanged }
        do {
            let fresh = try EmbeddedScanner(databaseDirectory: directory)
            state.withLock { $0 = (fresh, print, nil) }
            return .reloaded(signatures: fresh.signatures)
        } catch {
            state.withLock { $0.failed = print }
            return .failed("\(error)")
        }
    }

    /// Name, size, modification time and inode of every file in the folder:
    /// a rename into place changes the inode even when size and time match.
    static func fingerprint(_ directory: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        return names.compactMap { name in
            var st = stat()
            guard stat(directory + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            return "\(name):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec):\(st.st_ino)"
        }
    }
}
