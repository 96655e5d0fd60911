/// Tokens of the policy language. Each knows where it was written so every
/// error can name FILE:LINE:COL.
struct Token: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case word(String)          // keywords, names, numbers, addresses, CIDRs
        case string(String)        // "quoted text"
        case tableRef(String)      // <name>
        case regex(String, flags: String)  // /pattern/flags
        case op(String)            // ( ) ! { } >= <= > < == != ~ ,
    }
    var kind: Kind
    var line: Int
    var column: Int

    var text: String {
        switch kind {
        case .word(let w): return w
        case .string(let s): return "\"\(s)\""
        case .tableRef(let n): return "<\(n)>"
        case .regex(let p, let f): return "/\(p)/\(f)"
        case .op(let o): return o
        }
    }
}

struct LexError: Error {
    var column: Int
    var message: String
}

/// Splits one line of a policy file into tokens; `#` starts a comment.
func tokenize(_ line: Substring, lineNo: Int) throws(LexError) -> [Token] {
    let chars = Array(line.unicodeScalars)
    var tokens: [Token] = []
    var i = 0
    func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\r" }
    while i < chars.count {
        let c = chars[i]
        let col = i + 1
        if isSpace(c) { i += 1; continue }
        if c == "#" { break }
        if c == "\"" {
            var s = String.UnicodeScalarView()
            i += 1
            var closed = false
            while i < chars.count {
                if chars[i] == "\\" && i + 1 < chars.count { s.append(chars[i + 1]); i += 2; continue }
                if chars[i] == "\"" { closed = true; i += 1; break }
                s.append(chars[i])
                i += 1
            }
            guard closed else { throw LexError(column: col, message: "unterminated string") }
            tokens.append(Token(kind: .string(String(s)), line: lineNo, column: col))
            continue
        }
        if c == "<" && i + 1 < chars.count && chars[i + 1] == ">" {
            tokens.append(Token(kind: .word("<>"), line: lineNo, column: col))  // the null sender
            i += 2
            continue
        }
        if c == "<" && i + 1 < chars.count && (chars[i + 1].properties.isAlphabetic || chars[i + 1].properties.numericType != nil || chars[i + 1] == "_") {
            var j = i + 1
            while j < chars.count && chars[j] != ">" && !isSpace(chars[j]) { j += 1 }
            guard j < chars.count && chars[j] == ">" else { throw LexError(column: col, message: "table reference needs a closing '>'") }
            tokens.append(Token(kind: .tableRef(String(String.UnicodeScalarView(chars[(i + 1)..<j]))), line: lineNo, column: col))
            i = j + 1
            continue
        }
        if c == "/" {
            var p = String.UnicodeScalarView()
            var j = i + 1
            var closed = false
            while j < chars.count {
                if chars[j] == "\\" && j + 1 < chars.count {
                    if chars[j + 1] != "/" { p.append(chars[j]) }
                    p.append(chars[j + 1])
                    j += 2
                    continue
                }
                if chars[j] == "/" { closed = true; j += 1; break }
                p.append(chars[j])
                j += 1
            }
            guard closed else { throw LexError(column: col, message: "regular expression needs a closing '/'") }
            var flags = String.UnicodeScalarView()
            while j < chars.count && chars[j].properties.isAlphabetic { flags.append(chars[j]); j += 1 }
            tokens.append(Token(kind: .regex(String(p), flags: String(flags)), line: lineNo, column: col))
            i = j
            continue
        }
        let two = i + 1 < chars.count ? String(String.UnicodeScalarView([c, chars[i + 1]])) : ""
        if [">=", "<=", "==", "!="].contains(two) {
            tokens.append(Token(kind: .op(two), line: lineNo, column: col))
            i += 2
            continue
        }
        if "()!{}><~,".unicodeScalars.contains(c) {
            tokens.append(Token(kind: .op(String(c)), line: lineNo, column: col))
            i += 1
            continue
        }
        var j = i
        while j < chars.count && !isSpace(chars[j]) && !"()!{}<>~,\"#".unicodeScalars.contains(chars[j]) { j += 1 }
        // "!" inside a word (rare) and "<" after text are word breaks; a word never starts with them.
        if j == i { throw LexError(column: col, message: "unexpected character '\(c)'") }
        tokens.append(Token(kind: .word(String(String.UnicodeScalarView(chars[i..<j]))), line: lineNo, column: col))
        i = j
    }
    return tokens
}

/// The non-empty lines of a policy or regexp file, tokenized; a line that
/// does not tokenize becomes a diagnostic and is skipped.
struct TokenizedLine {
    var number: Int
    var text: Substring
    var tokens: [Token]
}

func tokenizedLines(_ text: String, file: String, diagnostics: inout [PolicyDiagnostic]) -> [TokenizedLine] {
    var out: [TokenizedLine] = []
    var lineNo = 0
    for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
        lineNo += 1
        do {
            let tokens = try tokenize(raw, lineNo: lineNo)
            if !tokens.isEmpty { out.append(TokenizedLine(number: lineNo, text: raw, tokens: tokens)) }
        } catch {
            diagnostics.append(PolicyDiagnostic(file: file, line: lineNo, column: error.column, message: error.message))
        }
    }
    return out
}
