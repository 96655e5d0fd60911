/// Walks the tokens of one line, with the error helpers every grammar rule
/// shares.
struct TokenCursor {
    let tokens: [Token]
    var index: Int
    let file: String
    let line: Int

    var atEnd: Bool { index >= tokens.count }
    var peek: Token? { atEnd ? nil : tokens[index] }

    mutating func next() -> Token? {
        guard !atEnd else { return nil }
        defer { index += 1 }
        return tokens[index]
    }

    func error(_ message: String, at token: Token? = nil) -> PolicyDiagnostic {
        let t = token ?? peek ?? tokens.last
        let col = token == nil && atEnd ? (tokens.last.map { $0.column + $0.text.count } ?? 1) : (t?.column ?? 1)
        return PolicyDiagnostic(file: file, line: line, column: col, message: message)
    }

    func peekWord() -> String? {
        if case .word(let w)? = peek?.kind { return w }
        return nil
    }

    mutating func word(_ what: String) throws(PolicyDiagnostic) -> String {
        guard case .word(let w)? = peek?.kind else {
            throw error(atEnd ? "expected \(what) at the end of the line" : "expected \(what), found '\(peek!.text)'")
        }
        index += 1
        return w
    }

    mutating func isOp(_ op: String) -> Bool {
        if case .op(let o)? = peek?.kind, o == op { index += 1; return true }
        return false
    }

    // MARK: actions

    static let actionWords: Set<String> = ["accept", "reject", "tempfail", "disconnect", "quarantine", "discard",
                                           "add-header", "tag", "score", "warn", "greylist"]

    /// action = "accept" | "reject" [reply] | "tempfail" [reply] | "disconnect" [reply]
    ///        | "quarantine" [reason] | "discard" | "greylist" [reply] | "add-header" header | "tag"
    ///        | "score" number | "warn" [action]
    mutating func action() throws(PolicyDiagnostic) -> RuleAction {
        let start = peek
        let w = try word("an action (accept, reject, tempfail, disconnect, quarantine, discard, greylist, add-header, tag, score, warn)")
        switch w {
        case "accept": return .accept
        case "reject": return .reject(try replyTemplate(default: "550 5.7.1 Rejected by policy ({rule})", classDigit: 5, at: start))
        case "tempfail": return .tempfail(try replyTemplate(default: "451 4.7.1 Try again later ({rule})", classDigit: 4, at: start))
        case "disconnect":
            let t = try replyTemplate(default: "421 4.7.0 Closing connection ({rule})", classDigit: nil, at: start)
            guard t.code == 421 || t.code / 100 == 5 else { throw error("disconnect needs a 421 or 5xx reply", at: start) }
            return .disconnect(t)
        case "quarantine":
            if case .string(let s)? = peek?.kind { index += 1; return .quarantine(s) }
            return .quarantine(nil)
        case "discard": return .discard
        case "greylist": return .greylist(try replyTemplate(default: "451 4.7.1 Greylisted, please try again later ({rule})", classDigit: 4, at: start))
        case "tag": return .tag
        case "add-header":
            guard case .string(let h)? = peek?.kind else { throw error("add-header needs \"Name: value\"") }
            index += 1
            guard let colon = h.firstIndex(of: ":"), !h[..<colon].isEmpty,
                  h[..<colon].allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != ":" }) else {
                throw error("add-header needs \"Name: value\"", at: tokens[index - 1])
            }
            return .addHeader(h)
        case "score":
            let tok = peek
            let n = try word("a score such as +5 or -2.5")
            guard let v = Double(n.hasPrefix("+") ? String(n.dropFirst()) : n) else { throw error("'\(n)' is not a number", at: tok) }
            return .score(v)
        case "warn":
            if atEnd { return .warn(nil) }
            let inner = try action()
            if case .warn = inner { throw error("warn warn is not an action", at: start) }
            return .warn(inner)
        default:
            throw error("unknown action '\(w)'; actions are accept, reject, tempfail, disconnect, quarantine, discard, greylist, add-header, tag, score, warn", at: start)
        }
    }

    /// Postfix header_checks words, for tables brought over from Postfix.
    mutating func postfixOrPolicyAction() throws(PolicyDiagnostic) -> RuleAction {
        guard let w = peekWord() else { return try action() }
        let rest: () -> String = { [tokens, index] in tokens[(index + 1)...].map { tok -> String in
            if case .string(let s) = tok.kind { return s }
            return tok.text
        }.joined(separator: " ") }
        switch w {
        case "REJECT":
            let text = rest()
            index = tokens.count
            return .reject(ReplyTemplate(code: 550, enhanced: "5.7.1", text: text.isEmpty ? "Message content rejected ({rule})" : text))
        case "WARN":
            index = tokens.count
            return .warn(nil)
        case "DISCARD":
            index = tokens.count
            return .discard
        case "HOLD":
            let text = rest()
            index = tokens.count
            return .quarantine(text.isEmpty ? nil : text)
        case "PREPEND":
            let text = rest()
            index = tokens.count
            guard text.contains(":") else { throw error("PREPEND needs a header \"Name: value\"") }
            return .addHeader(text)
        case "DUNNO", "OK":
            index = tokens.count
            return .accept
        default:
            return try action()
        }
    }

    /// reply = DQUOTE code [SP enhanced] SP text DQUOTE
    mutating func replyTemplate(default def: String, classDigit: Int?, at start: Token?) throws(PolicyDiagnostic) -> ReplyTemplate {
        var text = def
        var tok = start
        if case .string(let s)? = peek?.kind {
            text = s
            tok = peek
            index += 1
        }
        let parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard let first = parts.first, first.count == 3, let code = Int(first), (400...599).contains(code) else {
            throw error("a reply starts with a 4xx or 5xx code, as in \"550 5.7.1 text\"", at: tok)
        }
        if let c = classDigit, code / 100 != c {
            throw error("\(c == 5 ? "reject" : "tempfail") needs a \(c)xx code, not \(code)", at: tok)
        }
        var rest = parts.count > 1 ? String(parts[1]) : ""
        var enhanced = "\(code / 100).7.1"
        let words = rest.split(separator: " ", maxSplits: 1)
        if let e = words.first, Self.isEnhanced(e) {
            guard e.first == first.first else { throw error("enhanced code \(e) does not match reply code \(code)", at: tok) }
            enhanced = String(e)
            rest = words.count > 1 ? String(words[1]) : ""
        }
        return ReplyTemplate(code: code, enhanced: enhanced, text: rest.isEmpty ? "Rejected by policy ({rule})" : rest)
    }

    static func isEnhanced(_ s: Substring) -> Bool {
        let p = s.split(separator: ".", omittingEmptySubsequences: false)
        return p.count == 3 && p.allSatisfy { !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) }
    }
}
