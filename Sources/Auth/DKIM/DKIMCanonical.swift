import Crypto

/// The canonicalization algorithms of RFC 6376 §3.4.
enum DKIMCanonical: String, Sendable {
    case simple, relaxed

    /// One header field (name, colon, value with its folds, final CRLF
    /// included) as it enters the hash, with its CRLF (§3.4.1, §3.4.2).
    func header(_ field: ArraySlice<UInt8>) -> [UInt8] {
        if self == .simple { return Array(field) }
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return Array(field) }
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        // Name in lower case, without white space before the colon.
        for b in field[field.startIndex..<colon] where b != 32 && b != 9 { out.append(b >= 65 && b <= 90 ? b + 32 : b) }
        out.append(UInt8(ascii: ":"))
        // Value unfolded, runs of WSP as one space, none at the start or end.
        var pendingSpace = false
        var started = false
        for b in field[(colon + 1)...] {
            if b == 13 || b == 10 { continue }
            if b == 32 || b == 9 {
                pendingSpace = true
                continue
            }
            if pendingSpace && started { out.append(32) }
            pendingSpace = false
            started = true
            out.append(b)
        }
        out += [13, 10]
        return out
    }
}

/// Canonicalizes a message body as it streams past and hashes it (§3.4.3,
/// §3.4.4, §3.7), at most `limit` octets (`l=`). Empty lines at the end are
/// held back until something follows them, so none is hashed at the end.
/// The canonical text collects in a buffer hashed 16 KB at a time: one
/// SHA-256 update per line cost more than the canonicalization itself.
final class DKIMBodyHasher {
    let canonical: DKIMCanonical
    let limit: Int?
    private var hash: SHA256Stream
    private(set) var hashed = 0
    /// Canonical text not yet hashed.
    private var out: [UInt8] = []
    /// Relaxed: white space read since the line's last other byte (one space, if more follows).
    private var pendingSpace = false
    private var sawCR = false
    /// The current line has canonical bytes in `out` already.
    private var lineStarted = false
    /// Empty lines read and not yet written: only a line with text after them lets them in.
    private var emptyLines = 0
    private var anyLine = false
    private static let flushAt = 16 * 1024

    init(_ canonical: DKIMCanonical, limit: Int?) {
        self.canonical = canonical
        self.limit = limit
        hash = SHA256Stream()
        out.reserveCapacity(Self.flushAt + 1024)
    }

    /// Each piece is canonicalized into a buffer sized for the worst case,
    /// written through a raw pointer with the state in locals: appending to
    /// arrays byte by byte paid a uniqueness check per byte, more than the
    /// canonicalization itself.
    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        canonicalize(bytes, atEnd: false)
    }

    /// `atEnd`: the body is over, so a CR held back is text and an
    /// unterminated last line gets its CRLF.
    private func canonicalize(_ bytes: UnsafeRawBufferPointer, atEnd: Bool) {
        // Every byte read writes at most one; what was held back (empty
        // lines, a space, a CR) and the last line's CRLF at most 2 * emptyLines + 4 more.
        let capacity = bytes.count + 2 * emptyLines + 8
        let relaxed = canonical == .relaxed
        var pendingSpace = self.pendingSpace, sawCR = self.sawCR, lineStarted = self.lineStarted
        var emptyLines = self.emptyLines, anyLine = self.anyLine
        let chunk = [UInt8](unsafeUninitializedCapacity: capacity) { w, n in
            @inline(__always) func text(_ c: UInt8) {
                if relaxed && (c == 32 || c == 9) {
                    pendingSpace = true
                    return
                }
                if !lineStarted {
                    for _ in 0..<emptyLines { w[n] = 13; w[n + 1] = 10; n += 2 }
                    emptyLines = 0
                    lineStarted = true
                }
                if pendingSpace { w[n] = 32; n += 1; pendingSpace = false }
                w[n] = c
                n += 1
            }
            let count = bytes.count
            var i = 0
            while i < count {
                let b = bytes[i]
                // Inside a line with nothing held back, a run of bytes above the
                // space is copied as it is: no byte of it is a space, tab, CR or LF.
                if b > 32 && !sawCR && lineStarted && !pendingSpace {
                    var j = i + 1
                    while j < count && bytes[j] > 32 { j += 1 }
                    UnsafeMutableRawPointer(w.baseAddress! + n).copyMemory(from: bytes.baseAddress! + i, byteCount: j - i)
                    n += j - i
                    i = j
                    continue
                }
                i += 1
                if sawCR {
                    sawCR = false
                    if b == 10 {
                        pendingSpace = false  // relaxed: WSP at the end of a line goes
                        if lineStarted {
                            w[n] = 13; w[n + 1] = 10; n += 2
                            lineStarted = false
                            anyLine = true
                        } else {
                            emptyLines += 1
                        }
                        continue
                    }
                    text(13)  // a CR not before LF is text
                }
                if b == 13 { sawCR = true; continue }
                text(b)
            }
            guard atEnd else { return }
            if sawCR { sawCR = false; text(13) }  // a CR at the very end is text
            pendingSpace = false
            if lineStarted {
                w[n] = 13; w[n + 1] = 10; n += 2
                lineStarted = false
                anyLine = true
            }
        }
        self.pendingSpace = pendingSpace
        self.sawCR = sawCR
        self.lineStarted = lineStarted
        self.emptyLines = emptyLines
        self.anyLine = anyLine
        out += chunk
        if out.count >= Self.flushAt { flush() }
    }

    /// Hashes what has collected, up to the limit.
    private func flush() {
        var b = out[...]
        if let limit { b = b.prefix(max(0, limit - hashed)) }
        if !b.isEmpty { hash.update(b) }
        hashed += b.count
        out.removeAll(keepingCapacity: true)
    }

    /// The body hash. An unterminated last line counts as if it had its CRLF;
    /// an empty body is one CRLF in simple and nothing in relaxed (RFC 6376 errata 3192).
    func finish() -> [UInt8] {
        canonicalize(UnsafeRawBufferPointer(start: nil, count: 0), atEnd: true)
        if !anyLine && canonical == .simple { out.append(13); out.append(10) }
        flush()
        return hash.finalize()
    }
}

/// SHA-256 fed in pieces (swift-crypto).
struct SHA256Stream {
    private var h = SHA256()
    mutating func update(_ bytes: ArraySlice<UInt8>) { h.update(data: bytes) }
    func finalize() -> [UInt8] { Array(h.finalize()) }
}
