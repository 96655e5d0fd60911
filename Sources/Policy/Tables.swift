#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MailMessage

/// The three table types of `rules/`, each visible where it is used
/// (`cidr:`, `list:`, `regexp:`), one entry per line, `#` comments.
public enum TableType: String, Sendable, CaseIterable {
    case cidr, list, regexp
}

/// What a lookup found: the entry as written, its value column, and where it is.
public struct TableHit: Sendable, Hashable {
    public var key: String
    public var value: String
    public var line: Int
}

/// `cidr:` — IPv4 and IPv6 networks; the most specific match wins. One hash
/// map per prefix length, so a lookup is at most 129 hash probes whatever the
/// table size (in practice a handful).
public final class CIDRTable: Sendable {
    public let path: String
    private let byLength: [Int: [UInt128: TableHit]]
    private let lengths: [Int]
    public let count: Int

    public init(path: String, text: String, diagnostics: inout [PolicyDiagnostic]) {
        self.path = path
        var map: [Int: [UInt128: TableHit]] = [:]
        var n = 0
        forEachEntry(text) { lineNo, key, value, column in
            guard let c = CIDR(key) else {
                diagnostics.append(PolicyDiagnostic(file: path, line: lineNo, column: column, message: "'\(key)' is not an IP address or CIDR network"))
                return
            }
            if map[c.length]?[c.network] != nil {
                diagnostics.append(PolicyDiagnostic(file: path, line: lineNo, column: column, message: "\(key) is listed twice; the first one counts", isWarning: true))
                return
            }
            map[c.length, default: [:]][c.network] = TableHit(key: key, value: value, line: lineNo)
            n += 1
        }
        byLength = map
        lengths = map.keys.sorted(by: >)
        count = n
    }

    public func lookup(_ ip: IPAddress) -> TableHit? {
        for len in lengths {
            if let hit = byLength[len]?[ip.value & CIDR.mask(len)] { return hit }
        }
        return nil
    }
}

/// `list:` — exact strings: IP addresses, domains (`example.com` exactly,
/// `.example.com` for every subdomain), addresses (`user@example.com`),
/// `@example.com` for a whole domain, `user@` for a local part in any domain.
/// Keys are case-insensitive. Lookups are hash probes, O(labels).
public final class ListTable: Sendable {
    public let path: String
    private let entries: [String: TableHit]
    public var count: Int { entries.count }

    public init(path: String, text: String, diagnostics: inout [PolicyDiagnostic]) {
        self.path = path
        var map: [String: TableHit] = [:]
        forEachEntry(text) { lineNo, key, value, column in
            let k = key.lowercased()
            if map[k] != nil {
                diagnostics.append(PolicyDiagnostic(file: path, line: lineNo, column: column, message: "\(key) is listed twice; the first one counts", isWarning: true))
                return
            }
            map[k] = TableHit(key: key, value: value, line: lineNo)
        }
        entries = map
    }

    /// A plain key (an IP address, a HELO name, a country code).
    public func lookup(exact key: String) -> TableHit? { entries[asciiLowercased(key)] }

    /// A domain: exact, then `.parent` forms from the most specific up.
    public func lookup(domain: String) -> TableHit? {
        let d = asciiLowercased(domain)
        if let hit = entries[d] { return hit }
        return parents(of: Substring(d))
    }

    /// ".b.c" then ".c" for "a.b.c" (scanning bytes, not Characters).
    private func parents(of d: Substring) -> TableHit? {
        let u = d.utf8
        var i = u.startIndex
        while i != u.endIndex {
            if u[i] == 46, let hit = entries[String(d[i...])] { return hit }
            i = u.index(after: i)
        }
        return nil
    }

    /// An address, in Postfix access(5) order: the whole address, then
    /// `@domain` (and `.parent` domains), then `user@`.
    public func lookup(address: String) -> TableHit? {
        let a = asciiLowercased(address)
        if let hit = entries[a] { return hit }
        guard let at = a.utf8.lastIndex(of: 64) else { return nil }
        let domain = a[a.utf8.index(after: at)...]
        if let hit = entries["@" + domain] { return hit }
        if let hit = parents(of: domain) { return hit }
        return entries[String(a[...at])]
    }
}

/// A compiled POSIX extended regular expression (the dialect of Postfix's
/// `regexp:` tables), owned by this object.
public final class PosixRegex: @unchecked Sendable {
    // regexec on a shared regex_t is safe: glibc locks the pattern internally.
    private var re = regex_t()
    public let pattern: String
    public let caseInsensitive: Bool
    /// What the text cannot match without (RegexLiterals): one string of
    /// each set, ASCII case folded. Looked for before regexec, which costs
    /// tens of microseconds over a message's body even when nothing is
    /// there (GTUBE's rule runs on every message); nil when nothing is known.
    private let required: [[[UInt8]]]?

    public init(_ pattern: String, caseInsensitive: Bool) throws(RegexError) {
        self.pattern = pattern
        self.caseInsensitive = caseInsensitive
        required = RegexLiterals.allRequired(pattern)?.map { $0.map { Array($0.utf8) } }
        let rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB | (caseInsensitive ? REG_ICASE : 0))
        if rc != 0 {
            var buf = [CChar](repeating: 0, count: 256)
            regerror(rc, &re, &buf, buf.count)
            throw RegexError(message: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    deinit { regfree(&re) }

    public func matches(_ text: String) -> Bool {
        if let required {
            var t = text
            let possible = t.withUTF8 { h in required.allSatisfy { set in set.contains { ByteSearch.firstIndex(of: $0, in: h, foldingASCII: true) != nil } } }
            guard possible else { return false }
        }
        return regexecOnly(text)
    }

    /// The regex alone, without the literal check: for a caller that has
    /// looked for the literals already (a body table, in one pass for all
    /// its rules), and for the tests that compare the two.
    func regexecOnly(_ text: String) -> Bool { regexec(&re, text, 0, nil, 0) == 0 }
}

public struct RegexError: Error, Sendable { public var message: String }

/// Shell-style globs for file names and types (`*.exe`, `application/*`), via fnmatch(3).
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, 0) == 0
    }
}

/// Calls `body(line, key, value, keyColumn)` for each entry of a table file:
/// blank lines and `#` comments skipped, the key is the first word, the value
/// the rest of the line (a " #" starts a trailing comment). One pass over
/// the bytes, so a 100,000-line table loads in well under a second.
func forEachEntry(_ text: String, _ body: (Int, String, String, Int) -> Void) {
    var text = text
    text.withUTF8 { raw in
        let n = raw.count
        var lineNo = 0
        var i = 0
        func isBlank(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 13 }
        while i < n {
            lineNo += 1
            var end = i
            while end < n && raw[end] != 10 { end += 1 }
            defer { i = end + 1 }
            var k = i
            while k < end && isBlank(raw[k]) { k += 1 }
            guard k < end, raw[k] != 35 else { continue }  // blank or "#"
            var keyEnd = k
            while keyEnd < end && !isBlank(raw[keyEnd]) { keyEnd += 1 }
            var v = keyEnd
            while v < end && isBlank(raw[v]) { v += 1 }
            var vEnd = v
            while vEnd < end {
                if raw[vEnd] == 35 && vEnd > v && isBlank(raw[vEnd - 1]) { break }
                vEnd += 1
            }
            while vEnd > v && isBlank(raw[vEnd - 1]) { vEnd -= 1 }
            let key = String(decoding: UnsafeBufferPointer(rebasing: raw[k..<keyEnd]), as: UTF8.self)
            let value = v < vEnd ? String(decoding: UnsafeBufferPointer(rebasing: raw[v..<vEnd]), as: UTF8.self) : ""
            body(lineNo, key, value, k - i + 1)
        }
    }
}

/// Lower-cases ASCII letters without allocating when there are none.
@inline(__always)
func asciiLowercased(_ s: String) -> String {
    s.utf8.contains(where: { $0 >= 65 && $0 <= 90 }) ? s.lowercased() : s
}

extension Substring {
    func range(of needle: String) -> Range<Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
