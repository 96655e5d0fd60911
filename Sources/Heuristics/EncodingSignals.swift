import MailMessage

/// How the header section was written. Mail programs write MIME-Version
/// whenever they write MIME (RFC 2045 asks for it), and encode a display name
/// or a subject only when it holds what ASCII cannot; bulk senders' own
/// scripts leave out the first and encode everything in base64, which also
/// hides the words from header filters (SpamAssassin's FROM_EXCESS_BASE64).
struct EncodingSignals: SignalDetector {
    static let names = ["MIME_NO_VERSION", "HEADER_EXCESS_BASE64"]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        let h = input.headers
        if h.first("MIME-Version") == nil, let type = h.first("Content-Type")?.trimmed.lowercased(),
           type.hasPrefix("multipart/") || type.hasPrefix("text/html") {
            out.append(Signal("MIME_NO_VERSION", "Content-Type \(type.prefix(30)) with no MIME-Version field"))
        }
        for field in ["From", "Subject"] {
            if let raw = h.first(field), let ascii = base64ASCIIWord(raw) {
                out.append(Signal("HEADER_EXCESS_BASE64", "\(field) hides plain ASCII in base64 (\"\(ascii.prefix(40))\")"))
                break
            }
        }
    }

    /// The text of the first base64 encoded word (=?charset?B?…?=) in `raw`
    /// when it decodes to printable ASCII only: nothing there needed encoding.
    static func base64ASCIIWord(_ raw: String) -> String? {
        EncodedWords.rawWords(raw).first { $0.encoding == "b" && $0.bytes.count >= 4 && $0.bytes.allSatisfy { $0 >= 32 && $0 < 127 } }
            .map { String(decoding: $0.bytes, as: UTF8.self) }
    }
}
