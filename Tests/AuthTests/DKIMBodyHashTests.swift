import Crypto
import Testing

@testable import Auth

/// The streaming body canonicalization (§3.4.3, §3.4.4) against the rules
/// applied to the whole body at once, on bodies made of the awkward bytes
/// (bare CR and LF, white space runs and ends, empty lines at the end) and
/// fed in pieces that cut CRLF pairs and space runs apart.
struct DKIMBodyHashTests {
    /// RFC 6376's body canonicalization, written plainly over the whole text.
    static func reference(_ body: [UInt8], relaxed: Bool, limit: Int?) -> [UInt8] {
        var lines: [[UInt8]] = []
        var line: [UInt8] = []
        var i = 0
        while i < body.count {
            if body[i] == 13 && i + 1 < body.count && body[i + 1] == 10 {
                lines.append(line)
                line = []
                i += 2
                continue
            }
            line.append(body[i])
            i += 1
        }
        if !line.isEmpty { lines.append(line) }  // an unterminated last line gets its CRLF
        if relaxed {
            lines = lines.map { l in
                var out: [UInt8] = []
                var space = false
                for b in l {
                    if b == 32 || b == 9 { space = true; continue }
                    if space { out.append(32); space = false }
                    out.append(b)
                }
                return out  // white space at the end of the line is dropped
            }
        }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        var text: [UInt8] = []
        for l in lines { text += l + [13, 10] }
        if text.isEmpty && !relaxed { text = [13, 10] }
        if let limit { text = Array(text.prefix(limit)) }
        return Array(SHA256.hash(data: text))
    }

    @Test func piecesAgreeWithTheWholeText() {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [13, 10, 13, 10, 32, 32, 9, 65, 66, 46, 13, 10, 33, 0x7F, 0xC3, 0xFF, 65, 66, 67, 68]
        for round in 0..<400 {
            let n = Int.random(in: 0..<200, using: &rng)
            var body = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            if round % 5 == 0 { body += [13, 10, 13, 10, 32, 13, 10] }
            if round % 7 == 0 { body += [13] }
            for relaxed in [true, false] {
                let limit: Int? = round % 3 == 0 ? Int.random(in: 0...40, using: &rng) : nil
                let hasher = DKIMBodyHasher(relaxed ? .relaxed : .simple, limit: limit)
                var at = 0
                while at < body.count {
                    let piece = min(body.count - at, Int.random(in: 1...(round % 2 == 0 ? 7 : 64), using: &rng))  // long pieces: runs of text copied whole
                    body[at..<(at + piece)].withUnsafeBytes { hasher.feed($0) }
                    at += piece
                }
                let got = hasher.finish()
                #expect(got == Self.reference(body, relaxed: relaxed, limit: limit),
                        "\(relaxed ? "relaxed" : "simple") l=\(limit.map(String.init) ?? "-") body \(body)")
            }
        }
    }

    @Test func knownBodies() {
        func hash(_ s: String, _ c: DKIMCanonical) -> [UInt8] {
            let h = DKIMBodyHasher(c, limit: nil)
            Array(s.utf8).withUnsafeBytes { h.feed($0) }
            return h.finish()
        }
        // RFC 6376 §3.4.5's example: " C \r\nD \t E\r\n\r\n\r\n" is " C\r\nD E\r\n" relaxed.
        #expect(hash(" C \r\nD \t E\r\n\r\n\r\n", .relaxed) == Array(SHA256.hash(data: Array(" C\r\nD E\r\n".utf8))))
        #expect(hash(" C \r\nD \t E\r\n\r\n\r\n", .simple) == Array(SHA256.hash(data: Array(" C \r\nD \t E\r\n".utf8))))
        #expect(hash("", .simple) == Array(SHA256.hash(data: Array("\r\n".utf8))))
        #expect(hash("", .relaxed) == Array(SHA256.hash(data: [UInt8]())))
    }
}
