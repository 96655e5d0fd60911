/// Limits that keep a hostile message from costing unbounded memory or time.
public struct MIMELimits: Sendable {
    /// Nesting of multiparts (RFC 2046 sets none; 20 is more than real mail uses).
    public var depth = 20
    public var parts = 1000
    /// Bytes of one part's header section.
    public var headerBytes = 64 * 1024
    /// A zip attachment up to this size is kept so its entry names can be read.
    public var archiveBytes = 10 * 1024 * 1024
    /// Decoded text kept for text rules (the rest is counted, not kept).
    public var textBytes = 256 * 1024
    /// Of an HTML, SVG or OLE attachment, kept for the attachment heuristics.
    public var sampleBytes = 512 * 1024
    public init() {}
}

/// One MIME part as the scanners and attachment rules see it.
public struct MIMEPart: Sendable {
    public var headers: [HeaderBlock.Field] = []
    /// "type/subtype" in lower case; "text/plain" when absent (RFC 2045 §5.2).
    public var contentType = "text/plain"
    public var charset: String?
    /// The file name from Content-Disposition filename or Content-Type name,
    /// RFC 2231 continuations and RFC 2047 words decoded.
    public var filename: String?
    public var isAttachment = false
    public var transferEncoding = "7bit"
    /// Decoded size in bytes.
    public var size = 0
    /// The type the first bytes say it is ("application/x-dosexec", "application/zip", …).
    public var sniffedType: String?
    public var depth = 0
    /// First bytes of the decoded content, for sniffing.
    var head: [UInt8] = []
    /// The decoded content of a zip attachment (within the limit), for listing its entries.
    public var archive: [UInt8]?
    /// The first bytes of an attachment the heuristics read inside (HTML,
    /// SVG, OLE documents for their macro streams), up to `sampleBytes`.
    public var sample: [UInt8]?
    var archiveTooLarge = false
}

/// What the walker found, once the whole message has gone through.
public struct MIMESummary: Sendable {
    public var parts: [MIMEPart] = []
    /// Decoded text/plain (and text/html reduced to text), up to the limit.
    public var text = ""
    /// URLs found in text and HTML parts (http, https, www.), at most 200.
    public var urls: [String] = []
    /// Links in HTML parts, with the text they show (at most 200).
    public var links: [HTMLLink] = []
    /// Across HTML parts: images, elements hidden by their style, forms and password fields.
    public var htmlImages = 0
    public var hiddenElements = 0
    public var forms = 0
    public var passwordInputs = 0
    /// `<font>` tags in large type or red.
    public var loudFonts = 0
    /// Problems found on the way (missing boundaries, bad encodings…): the
    /// message is still walked to the end and every part is still reported.
    public var problems: [String] = []

    public var attachments: [MIMEPart] { parts.filter { $0.isAttachment || $0.filename != nil } }
}

/// A streaming MIME walker (RFC 2045–2047, 2231): fed the message text in
/// chunks, it keeps only the current line, the boundary stack and bounded
/// samples, so a 50 MB message never sits whole in memory. Malformed MIME
/// never stops it: a part with a broken header or encoding is still reported,
/// and an unterminated multipart simply ends with the message.
public struct MIMEWalker {
    private enum State { case headers, body }

    private let limits: MIMELimits
    private var summary = MIMESummary()
    private var state = State.headers
    private var headerBytes: [UInt8] = []
    private var line: [UInt8] = []
    /// Open multipart boundaries, innermost last, with the depth they open.
    private var boundaries: [(marker: [UInt8], depth: Int)] = []
    private var current = MIMEPart()
    /// The boundary the current part's own body introduces (if multipart).
    private var pendingBoundary: [UInt8]?
    private var decoder = BodyDecoder.identity
    private var textBytes: [UInt8] = []
    /// Raw decoded text and HTML (bounded), for URL extraction before tags are stripped.
    private var urlSource: [UInt8] = []
    private var html = HTMLText()
    private var inPreamble = false
    /// False once the current part has been reported, until the next one starts.
    private var partOpen = true
    /// The walker for an attached message (message/rfc822) being read, so
    /// what a forwarded message carries is scanned like the rest.
    private var nested: NestedWalker?

    public init(limits: MIMELimits = MIMELimits()) { self.limits = limits }

    public mutating func feed(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { feed(raw: UnsafeRawBufferPointer($0)) }
        if done == nil { Array(bytes).withUnsafeBytes { feed(raw: $0) } }
    }

    /// Splits at LF with a byte scan and hands whole lines on; an absurdly
    /// long line is processed in pieces so it never grows without bound.
    private mutating func feed(raw: UnsafeRawBufferPointer) {
        let n = raw.count
        var i = 0
        while i < n {
            var j = i
            while j < n && raw[j] != 10 { j += 1 }
            if j < n {
                line.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[i...j]))
                processLine()
                line.removeAll(keepingCapacity: true)
                i = j + 1
            } else {
                line.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[i..<n]))
                i = n
                if line.count > 1_000_000 {
                    processLine()
                    line.removeAll(keepingCapacity: true)
                }
            }
        }
    }

    public mutating func finish() -> MIMESummary {
        if !line.isEmpty { processLine() }
        endPart()
        if !boundaries.isEmpty { summary.problems.append("multipart not closed (missing final boundary)") }
        summary.text = String(decoding: textBytes, as: UTF8.self)
        summary.urls = URLExtractor.extract(String(decoding: urlSource, as: UTF8.self), limit: 200)
        return summary
    }

    private mutating func processLine() {
        var content = line[...]
        if content.last == 10 { content = content.dropLast() }
        if content.last == 13 { content = content.dropLast() }
        // A boundary line ends the current part in any state.
        if content.count >= 2, content.first == 45, content[content.startIndex + 1] == 45 {
            for (i, b) in boundaries.enumerated().reversed() where content.starts(with: b.marker) {
                let rest = content.dropFirst(b.marker.count)
                let closing = rest.starts(with: [45, 45])
                if !rest.isEmpty && !closing && !rest.allSatisfy({ $0 == 32 || $0 == 9 }) { continue }
                endPart()
                boundaries.removeLast(boundaries.count - i - (closing ? 0 : 1))
                if closing {
                    inPreamble = true  // epilogue of the closed multipart
                } else {
                    startPart(depth: b.depth)
                }
                return
            }
        }
        switch state {
        case .headers:
            if content.isEmpty {
                finishHeaders()
            } else if headerBytes.count < limits.headerBytes {
                headerBytes += line
            } else if summary.problems.last != "header section too large" {
                summary.problems.append("header section too large")
            }
        case .body:
            guard !inPreamble else { return }
            body(line[...])
        }
    }

    private mutating func startPart(depth: Int) {
        if summary.parts.count >= limits.parts {
            if summary.problems.last != "too many parts" { summary.problems.append("too many parts") }
        }
        current = MIMEPart()
        current.depth = depth
        partOpen = true
        state = .headers
        headerBytes = []
        inPreamble = false
    }

    private mutating func finishHeaders() {
        headerBytes += [13, 10]
        let block = HeaderBlock(headerBytes)
        current.headers = block.fields
        let ct = Parameterized(block.first("Content-Type") ?? "")
        if !ct.value.isEmpty, ct.value.contains("/") { current.contentType = ct.value.lowercased() }
        current.charset = ct.parameters["charset"]?.lowercased()
        let cd = Parameterized(block.first("Content-Disposition") ?? "")
        current.isAttachment = cd.value.lowercased() == "attachment"
        current.filename = (cd.parameters["filename"] ?? ct.parameters["name"]).map(EncodedWords.decode)
        current.transferEncoding = (block.first("Content-Transfer-Encoding") ?? "7bit").trimmingSpaces().lowercased()
        switch current.transferEncoding {
        case "base64": decoder = .base64(Base64Stream())
        case "quoted-printable": decoder = .quotedPrintable
        default: decoder = .identity
        }
        state = .body
        if current.contentType == "message/rfc822" || current.contentType == "message/global" {
            let depthLeft = limits.depth - current.depth - 1
            if depthLeft <= 0 {
                summary.problems.append("attached message nested deeper than \(limits.depth)")
            } else {
                var inner = limits
                inner.depth = depthLeft
                inner.parts = max(0, limits.parts - summary.parts.count - 1)
                inner.textBytes = max(0, limits.textBytes - textBytes.count)
                nested = NestedWalker(MIMEWalker(limits: inner))
            }
        }
        if current.contentType.hasPrefix("multipart/") {
            if let b = ct.parameters["boundary"], !b.isEmpty {
                if boundaries.count >= limits.depth {
                    summary.problems.append("multipart nesting deeper than \(limits.depth)")
                } else {
                    boundaries.append((Array(("--" + b).utf8), current.depth + 1))
                    inPreamble = true
                }
            } else {
                summary.problems.append("multipart without a boundary")
            }
        }
    }

    private mutating func body(_ raw: ArraySlice<UInt8>) {
        var decoded: [UInt8]
        switch decoder {
        case .identity:
            decoded = Array(raw)
        case .quotedPrintable:
            decoded = QuotedPrintable.decodeLine(raw)
        case .base64(var stream):
            decoded = stream.feed(raw)
            if stream.bad && !summary.problems.contains("bad base64") { summary.problems.append("bad base64") }
            decoder = .base64(stream)
        }
        current.size += decoded.count
        if let nested {
            nested.walker.feed(decoded)
            return
        }
        if current.head.count < 16 { current.head += decoded.prefix(16 - current.head.count) }
        keepArchive(decoded)
        keepSample(decoded)
        if current.contentType.hasPrefix("text/") && current.filename == nil && !current.isAttachment {
            let text = Charsets.toUTF8(decoded, charset: current.charset)
            if urlSource.count < limits.textBytes { urlSource += text.prefix(limits.textBytes - urlSource.count) }
            let visible = current.contentType == "text/html" ? html.reduce(text) : text
            let room = limits.textBytes - textBytes.count
            if room > 0 { textBytes += visible.prefix(room) }
        }
    }

    /// Keeps the bytes of a part that starts like a zip, up to the limit.
    private mutating func keepArchive(_ decoded: [UInt8]) {
        guard !current.archiveTooLarge, current.head.starts(with: [0x50, 0x4B]) else { return }
        if (current.archive?.count ?? 0) + decoded.count > limits.archiveBytes {
            current.archive = nil
            current.archiveTooLarge = true
            return
        }
        current.archive = (current.archive ?? []) + decoded
    }

    /// Keeps the start of an attachment whose inside the heuristics read.
    private mutating func keepSample(_ decoded: [UInt8]) {
        guard current.isAttachment || current.filename != nil else { return }
        let name = current.filename?.lowercased() ?? ""
        let wanted = current.contentType == "text/html" || current.contentType == "image/svg+xml"
            || [".htm", ".html", ".shtml", ".xhtml", ".svg"].contains { name.hasSuffix($0) }
            || current.head.starts(with: [0xD0, 0xCF, 0x11, 0xE0])
        guard wanted else { return }
        let have = current.sample?.count ?? 0
        if have < limits.sampleBytes { current.sample = (current.sample ?? []) + decoded.prefix(limits.sampleBytes - have) }
    }

    /// Adds what an attached message held, its parts one level deeper than
    /// the part that carried it.
    private mutating func merge(_ inner: MIMESummary, below depth: Int) {
        for var p in inner.parts where summary.parts.count < limits.parts {
            p.depth += depth
            summary.parts.append(p)
        }
        let room = limits.textBytes - textBytes.count
        if room > 0 {
            if !textBytes.isEmpty { textBytes.append(10) }
            textBytes += inner.text.utf8.prefix(room)
        }
        urlSource += (" " + inner.urls.joined(separator: " ") + " ").utf8
        summary.problems += inner.problems.map { "attached message: \($0)" }
        summary.links += inner.links.prefix(max(0, 200 - summary.links.count))
    }

    private mutating func endPart() {
        guard partOpen else { return }
        partOpen = false
        if state == .headers { finishHeaders() }
        if case .base64(var stream) = decoder {
            let tail = stream.finish()
            current.size += tail.count
            if let nested {
                nested.walker.feed(tail)
            } else {
                if current.head.count < 16 { current.head += tail.prefix(16 - current.head.count) }
                keepArchive(tail)
            }
        }
        if !current.contentType.hasPrefix("multipart/") || current.size > 0 {
            current.sniffedType = Magic.sniff(current.head)
            if summary.parts.count < limits.parts { summary.parts.append(current) }
        }
        if let n = nested {
            nested = nil
            merge(n.walker.finish(), below: current.depth + 1)
        }
        decoder = .identity
        collect(html)
        html = HTMLText()
        state = .body
    }
}

extension MIMEWalker {
    /// What one HTML part's markup showed, into the summary.
    fileprivate mutating func collect(_ h: HTMLText) {
        summary.links += h.links.prefix(max(0, 200 - summary.links.count))
        summary.htmlImages += h.images
        summary.hiddenElements += h.hiddenElements
        summary.forms += h.forms
        summary.passwordInputs += h.passwordInputs
        summary.loudFonts += h.loudFonts
    }
}

/// Boxes a walker so a walker can hold one for an attached message.
final class NestedWalker {
    var walker: MIMEWalker
    init(_ walker: MIMEWalker) { self.walker = walker }
}

/// Text in a declared charset to UTF-8 (UTF-8, ASCII, ISO-8859-1, Windows-1252;
/// other charsets pass through as bytes, so patterns on ASCII still work).
enum Charsets {
    static func toUTF8(_ bytes: [UInt8], charset: String?) -> [UInt8] {
        guard let cs = charset, !["utf-8", "utf8", "us-ascii", "ascii"].contains(cs), bytes.contains(where: { $0 >= 0x80 }) else { return bytes }
        guard let s = EncodedWords.convert(bytes, charset: cs) else { return bytes }
        return Array(s.utf8)
    }
}

/// URLs in text: http(s):// and bare www. forms, up to the first character
/// that cannot be part of one.
public enum URLExtractor {
    public static func extract(_ text: String, limit: Int) -> [String] {
        var t = text
        return t.withUTF8 { extract($0, limit: limit) }
    }

    /// Over the text's own bytes (no copy, no bounds checks): it reads every byte of every text part.
    static func extract(_ u: UnsafeBufferPointer<UInt8>, limit: Int) -> [String] {
        var out: [String] = []
        var i = 0
        func urlChar(_ b: UInt8) -> Bool {
            b > 32 && b < 127 && b != 34 && b != 39 && b != 60 && b != 62 && b != 41 && b != 93 && b != 125
        }
        // Compared byte by byte, letters folded: a string made and lower-cased at every "h" of the text cost more than the rest.
        func at(_ i: Int, _ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard i + n <= u.count else { return false }
            return word.withUTF8Buffer { w in (0..<n).allSatisfy { k in (u[i + k] >= 65 && u[i + k] <= 90 ? u[i + k] | 0x20 : u[i + k]) == w[k] } }
        }
        while i < u.count && out.count < limit {
            var start: Int?
            if u[i] == 104 || u[i] == 72 {  // h
                if at(i, "http://") || at(i, "https://") { start = i }
            } else if u[i] == 119 || u[i] == 87, i == 0 || !urlChar(u[i - 1]) {  // www.
                if at(i, "www.") { start = i }
            }
            guard let s = start else { i += 1; continue }
            var e = s
            while e < u.count && urlChar(u[e]) { e += 1 }
            var url = String(decoding: u[s..<e], as: UTF8.self)
            while let last = url.last, ".,;:!?".contains(last) { url.removeLast() }
            if url.count > 10 { out.append(url) }
            i = e
        }
        return out
    }

    /// The host of a URL, lower case, without port or credentials. On the
    /// bytes throughout (every delimiter is ASCII): Foundation's range(of:)
    /// and Character searches were most of it, and every link's host is
    /// asked for several times.
    public static func host(_ url: String) -> String? {
        let u = url.utf8
        var start = u.startIndex
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == UInt8(ascii: ":"), u[i...].starts(with: "://".utf8) {
                start = u.index(i, offsetBy: 3)
                break
            }
            i = u.index(after: i)
        }
        var end = start
        while end < u.endIndex, u[end] != UInt8(ascii: "/"), u[end] != UInt8(ascii: "?"), u[end] != UInt8(ascii: "#") { end = u.index(after: end) }
        var host = u[start..<end]
        if let at = host.lastIndex(of: UInt8(ascii: "@")) { host = host[host.index(after: at)...] }
        if let colon = host.lastIndex(of: UInt8(ascii: ":")), !host.contains(UInt8(ascii: "]")) { host = host[..<colon] }
        return host.isEmpty ? nil : Substring(host).lowercased()
    }
}

enum BodyDecoder {
    case identity
    case quotedPrintable
    case base64(Base64Stream)
}

/// Base64 across lines: keeps the 0–3 characters that did not complete a quantum.
struct Base64Stream {
    private var acc: UInt32 = 0
    private var bits = 0
    private(set) var bad = false

    mutating func feed(_ s: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count * 3 / 4)
        for c in s {
            let v: UInt8
            switch c {
            case 65...90: v = c - 65
            case 97...122: v = c - 71
            case 48...57: v = c + 4
            case 43: v = 62
            case 47: v = 63
            case 61, 13, 10, 32, 9: continue
            default:
                bad = true
                continue
            }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }

    mutating func finish() -> [UInt8] { [] }
}

enum QuotedPrintable {
    /// One encoded line (with its line end) to bytes; a soft break "=" joins lines.
    static func decodeLine(_ raw: ArraySlice<UInt8>) -> [UInt8] {
        var s = raw
        var hardBreak = false
        if s.last == 10 { s = s.dropLast(); hardBreak = true }
        if s.last == 13 { s = s.dropLast() }
        while let l = s.last, l == 32 || l == 9 { s = s.dropLast() }  // RFC 2045 §6.7 (3)
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let b = s[i]
            if b == 61 {
                if s.index(after: i) == s.endIndex { return out }  // soft line break
                if s.distance(from: i, to: s.endIndex) >= 3, let h = EncodedWords.hex(s[i + 1]), let l = EncodedWords.hex(s[i + 2]) {
                    out.append(h << 4 | l)
                    i += 3
                    continue
                }
            }
            out.append(b)
            i += 1
        }
        if hardBreak { out += [13, 10] }
        return out
    }
}

/// Content types by their first bytes, for attachments whose declared type lies.
public enum Magic {
    public static func sniff(_ head: [UInt8]) -> String? {
        func starts(_ p: [UInt8]) -> Bool { head.count >= p.count && Array(head.prefix(p.count)) == p }
        if starts([0x4D, 0x5A]) { return "application/x-dosexec" }
        if starts([0x50, 0x4B, 0x03, 0x04]) || starts([0x50, 0x4B, 0x05, 0x06]) { return "application/zip" }
        if starts(Array("%PDF-".utf8)) { return "application/pdf" }
        if starts([0x7F, 0x45, 0x4C, 0x46]) { return "application/x-executable" }
        if starts([0x89, 0x50, 0x4E, 0x47]) { return "image/png" }
        if starts([0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if starts(Array("GIF8".utf8)) { return "image/gif" }
        if starts([0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) { return "application/x-ole-storage" }
        if starts(Array("Rar!".utf8)) { return "application/x-rar" }
        if starts([0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) { return "application/x-7z-compressed" }
        if starts([0x1F, 0x8B]) { return "application/gzip" }
        return nil
    }
}

/// A header value with parameters: `type/subtype; a=b; c*0="x"; c*1="y"`,
/// RFC 2231 continuations and charset'lang'%XX values joined and decoded.
struct Parameterized {
    var value: String
    var parameters: [String: String] = [:]

    init(_ text: String) {
        // On the bytes: every delimiter is ASCII, and building Strings scalar by scalar cost a percent of the gateway.
        var parts: [[UInt8]] = []
        var current: [UInt8] = []
        var quoted = false
        var escaped = false
        for c in text.utf8 {
            if escaped { current.append(c); escaped = false; continue }
            if c == UInt8(ascii: "\\") && quoted { escaped = true; continue }
            if c == UInt8(ascii: "\"") { quoted.toggle(); continue }
            if c == UInt8(ascii: ";") && !quoted { parts.append(current); current.removeAll(keepingCapacity: true); continue }
            current.append(c)
        }
        parts.append(current)
        func trimmed(_ b: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
            var b = b
            while let f = b.first, f == 32 || f == 9 { b = b.dropFirst() }
            while let l = b.last, l == 32 || l == 9 { b = b.dropLast() }
            return b
        }
        value = String(decoding: trimmed(parts[0][...]), as: UTF8.self)
        var continued: [String: [(Int, String, Bool)]] = [:]
        for p in parts.dropFirst() {
            guard let eq = p.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let k = trimmed(p[..<eq])
            let key = k.allSatisfy { $0 < 0x80 }
                ? String(decoding: k.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }, as: UTF8.self)
                : String(decoding: k, as: UTF8.self).lowercased()
            let val = String(decoding: trimmed(p[(eq + 1)...]), as: UTF8.self)
            if let star = key.firstIndex(of: "*") {
                let name = String(key[..<star])
                let rest = key[key.index(after: star)...]
                let encoded = rest.hasSuffix("*") || rest.isEmpty
                let index = Int(rest.replacingStar()) ?? 0
                continued[name, default: []].append((index, val, encoded))
            } else {
                parameters[key] = val
            }
        }
        for (name, pieces) in continued {
            var bytes: [UInt8] = []
            var charset = "utf-8"
            for (i, (_, v, encoded)) in pieces.sorted(by: { $0.0 < $1.0 }).enumerated() {
                var v = v
                if encoded && i == 0, let a = v.firstIndex(of: "'"), let b = v[v.index(after: a)...].firstIndex(of: "'") {
                    charset = v[..<a].lowercased()
                    v = String(v[v.index(after: b)...])
                }
                bytes += encoded ? Self.percentDecode(v) : Array(v.utf8)
            }
            parameters[name] = EncodedWords.convert(bytes, charset: charset) ?? String(decoding: bytes, as: UTF8.self)
        }
    }

    static func percentDecode(_ s: String) -> [UInt8] {
        EncodedWords.unescapeHex(Array(s.utf8), escape: UInt8(ascii: "%"))
    }
}

extension Substring {
    func replacingStar() -> String { String(filter { $0 != "*" }) }
}

extension String {
    /// Lines of text with bare CR/LF tolerated, for callers that need them.
    var isBlank: Bool { allSatisfy { $0 == " " || $0 == "\t" } }
}
