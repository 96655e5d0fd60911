import CChecksum
import Foundation

/// Where the classifier's model lives. The embedded file is the default;
/// the shared-state backend (Redis) comes later behind the same interface,
/// so nothing above this knows which one it has.
public protocol ModelStore: Sendable {
    /// For messages: the file or the server.
    var location: String { get }
    /// The stored model; nil when none has been written yet.
    func load() throws -> LogisticModel?
    /// Read, change and write back as one step that no other writer (the
    /// gateway, `mxgate learn`, a release) interleaves with.
    func update(dimensionBits: Int, _ change: (inout LogisticModel) throws -> Void) throws -> LogisticModel
    /// Changes whenever the stored model does: a reader compares it to know when to load again.
    func version() -> String?
}

/// A model that cannot be read: named, with why, for `mxgate check` and start-up.
public struct ModelStoreError: Error, CustomStringConvertible, Sendable {
    public var location: String
    public var message: String
    public var description: String { "classifier model \(location): \(message)" }
    public init(location: String, message: String) {
        self.location = location
        self.message = message
    }
}

/// One file, replaced whole: written to a temporary file beside it,
/// fsync'd, renamed over the old one, and the folder fsync'd, so a crash or
/// a kill during a write leaves the previous model, never half of one. A
/// CRC-32C footer catches a file damaged some other way. Writers serialise
/// on an flock(2) of `PATH.lock`.
///
/// Layout (little-endian): "MXGCLF01", dimension bits (u32), spam and ham
/// learnt (u64 each), bias (f64), count of weights (u64) then (index u32,
/// weight f32) for each non-zero one, count of learnt messages (u64) then
/// (digest 2×u64, step f32, class u8) each, CRC-32C of all before it (u32).
public struct ModelFile: ModelStore {
    public let path: String
    public var location: String { path }
    static let magic = Array("MXGCLF01".utf8)

    public init(path: String) { self.path = path }

    public func version() -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return "\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }

    public func load() throws -> LogisticModel? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelStoreError(location: path, message: "cannot be read (permissions?)")
        }
        return try Self.decode([UInt8](data), location: path)
    }

    public func update(dimensionBits: Int, _ change: (inout LogisticModel) throws -> Void) throws -> LogisticModel {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let lock = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw ModelStoreError(location: path, message: "cannot open \(path).lock: \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { throw ModelStoreError(location: path, message: "cannot lock: \(String(cString: strerror(errno)))") }
        var model = try load() ?? LogisticModel(dimensionBits: dimensionBits)
        try change(&model)
        try write(Self.encode(model))
        return model
    }

    private func write(_ bytes: [UInt8]) throws {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ModelStoreError(location: path, message: "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var ok = bytes.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; return false }
                off += n
            }
            return true
        }
        ok = ok && fsync(fd) == 0
        let why = String(cString: strerror(errno))
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw ModelStoreError(location: path, message: "cannot write: \(why)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func encode(_ m: LogisticModel) -> [UInt8] {
        var out = magic
        out.reserveCapacity(64 + m.nonZero * 8 + m.learned.count * 21)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        put(UInt32(m.dimensionBits))
        put(UInt64(m.spamLearned))
        put(UInt64(m.hamLearned))
        put(m.bias.bitPattern)
        put(UInt64(m.nonZero))
        for (i, w) in m.weights.enumerated() where w != 0 {
            put(UInt32(i))
            put(w.bitPattern)
        }
        put(UInt64(m.learned.count))
        for (d, e) in m.learned.sorted(by: { $0.key < $1.key }) {
            put(d.a)
            put(d.b)
            put(e.step.bitPattern)
            out.append(e.spam ? 1 : 0)
        }
        let crc = out.withUnsafeBytes { mx_crc32c(0, $0.baseAddress!, $0.count) }
        put(crc)
        return out
    }

    public static func decode(_ b: [UInt8], location: String) throws -> LogisticModel {
        func fail(_ why: String) -> ModelStoreError { ModelStoreError(location: location, message: why) }
        guard b.count >= 8 + 4 + 8 * 4 + 4, b.starts(with: magic) else {
            throw fail("not a mxgate classifier model (wrong header); move it away and learn again")
        }
        let body = b.count - 4
        let crc = b.withUnsafeBytes { mx_crc32c(0, $0.baseAddress!, body) }
        var pos = 8
        func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
            let size = MemoryLayout<T>.size
            guard pos + size <= b.count else { throw fail("truncated") }
            var v: T = 0
            for k in 0..<size { v |= T(b[pos + k]) << (8 * k) }
            pos += size
            return v
        }
        let stored = b.withUnsafeBytes { raw in UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: body, as: UInt32.self)) }
        guard stored == crc else { throw fail("checksum mismatch: the file is damaged; restore it or learn again") }
        let bits = Int(try get(UInt32.self))
        guard (12...26).contains(bits) else { throw fail("bad dimension \(bits)") }
        var m = LogisticModel(dimensionBits: bits)
        m.spamLearned = Int(try get(UInt64.self))
        m.hamLearned = Int(try get(UInt64.self))
        m.bias = Double(bitPattern: try get(UInt64.self))
        let nw = try get(UInt64.self)
        guard nw <= UInt64(1 << bits), pos + Int(nw) * 8 <= body else { throw fail("truncated weights") }
        for _ in 0..<nw {
            let i = Int(try get(UInt32.self))
            let w = Float(bitPattern: try get(UInt32.self))
            guard i < m.weights.count else { throw fail("weight index out of range") }
            m.weights[i] = w
        }
        let nl = try get(UInt64.self)
        guard pos + Int(nl) * 21 <= body else { throw fail("truncated message list") }
        m.learned.reserveCapacity(Int(nl))
        for _ in 0..<nl {
            let d = MessageFeatures.Digest(a: try get(UInt64.self), b: try get(UInt64.self))
            let step = Float(bitPattern: try get(UInt32.self))
            let spam = b[pos] == 1
            pos += 1
            m.learned[d] = LogisticModel.Entry(spam: spam, step: step)
        }
        return m
    }
}
