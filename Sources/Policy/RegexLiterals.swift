/// The literal text a POSIX extended regular expression cannot match
/// without: one of a few strings, lower-cased. A body rule whose strings
/// are all absent from the message is not run at all: one pass of a phrase
/// search over the body rules out most of them, where glibc's regexec over
/// each (even one alternation per 64 rules) was a fourteenth of a gateway's
/// CPU with every check on. Conservative: anything not understood yields
/// nil, and the rule always runs.
enum RegexLiterals {
    /// Strings shorter than this are not worth a search (and match everywhere).
    static let minLength = 3

    /// One of these occurs (case aside) in every text `pattern` matches; nil when none is known.
    static func required(_ pattern: String) -> [String]? {
        let chars = Array(pattern)
        guard let set = alternatives(chars[...]) else { return nil }
        return searchable(set)
    }

    /// Every such set a pattern with no top-level `|` has, each required:
    /// `(processing|release|transfer) fee` needs one of the three words
    /// and " fee" too, so a message about a release does not run it.
    /// A pattern with a top-level `|` gives its one set, as `required`.
    static func allRequired(_ pattern: String) -> [[String]]? {
        let chars = Array(pattern)[...]
        guard topLevelParts(chars).count == 1 else { return required(pattern).map { [$0] } }
        let sets = factors(chars).compactMap(searchable)
        return sets.isEmpty ? nil : sets
    }

    /// Lower-cased, when every string is long enough and ASCII (the text is
    /// searched with ASCII folded only: a non-ASCII letter's other case would be missed).
    private static func searchable(_ set: [String]) -> [String]? {
        guard !set.isEmpty, set.allSatisfy({ $0.count >= minLength && $0.unicodeScalars.allSatisfy(\.isASCII) }) else { return nil }
        return set.map { $0.lowercased() }
    }

    /// The pattern split at its top-level `|`: each alternative must give a
    /// set, and the union is required.
    private static func alternatives(_ p: ArraySlice<Character>) -> [String]? {
        var out: [String] = []
        for part in topLevelParts(p) {
            guard let s = sequence(part) else { return nil }
            out += s
        }
        return out
    }

    /// The pattern split at its top-level `|`.
    private static func topLevelParts(_ p: ArraySlice<Character>) -> [ArraySlice<Character>] {
        var parts: [ArraySlice<Character>] = []
        var depth = 0, start = p.startIndex, i = p.startIndex
        while i < p.endIndex {
            switch p[i] {
            case "\\": i += 1
            case "[": i = bracketEnd(p, i)
            case "(": depth += 1
            case ")": depth -= 1
            case "|" where depth == 0:
                parts.append(p[start..<i])
                start = i + 1
            default: break
            }
            i += 1
        }
        parts.append(p[start..<p.endIndex])
        return parts
    }

    /// The best required factor of a sequence: a run of literal characters,
    /// or a group that must occur, whichever has the longest shortest string.
    private static func sequence(_ p: ArraySlice<Character>) -> [String]? {
        var best: [String]?
        for f in factors(p) where best == nil || f.map(\.count).min()! > best!.map(\.count).min()! { best = f }
        return best
    }

    /// At most this many strings come of joining a group of words to the text
    /// around it ("(release|transfer) fee" is "release fee" or "transfer fee").
    static let maxJoined = 16

    /// Every required factor of a sequence long enough to search for, in order.
    /// Literal text and groups of plain words next to each other are joined
    /// into whole strings: "(processing|release) fee" needs "release fee",
    /// which "the release ... feedback" does not have, where "release" and
    /// " fee" apart would both be found and the regex run for nothing.
    private static func factors(_ p: ArraySlice<Character>) -> [[String]] {
        var found: [[String]] = []
        func offer(_ f: [String]) {
            guard !f.isEmpty, let shortest = f.map(\.count).min(), shortest >= minLength else { return }
            found.append(f)
        }
        // The text just before `i` is exactly one of these.
        var run = [""]
        func endRun() { offer(run); run = [""] }
        func append(_ c: Character) { run = run.map { $0 + String(c) } }
        var i = p.startIndex
        while i < p.endIndex {
            let c = p[i]
            switch c {
            case "(":
                let close = groupEnd(p, i)
                guard close < p.endIndex else { return found }  // unbalanced: regcomp would have refused it
                let after = close + 1
                if after == p.endIndex || !"?*+{".contains(p[after]), let words = plainAlternatives(p[(i + 1)..<close]) {
                    if run.count * words.count <= maxJoined {
                        run = run.flatMap { head in words.map { head + $0 } }
                    } else {
                        endRun()
                        run = words
                    }
                    i = after
                    continue
                }
                endRun()
                if !optional(p, after), let inner = alternatives(p[(i + 1)..<close]) { offer(inner) }
                i = after
                continue
            case "[":
                endRun()
                i = bracketEnd(p, i) + 1
                continue
            case ".", "^", "$", ")", "|", "*", "+", "?", "{":
                endRun()
                if c == "{" { while i < p.endIndex && p[i] != "}" { i += 1 } }
                i += 1
                continue
            default:
                var literal = c
                var width = 1
                if c == "\\" {
                    guard i + 1 < p.endIndex else { return found }
                    let e = p[i + 1]
                    // \< \> \b \w \d and the like are not characters of the text.
                    if e.isLetter || e.isNumber || e == "<" || e == ">" {
                        endRun()
                        i += 2
                        continue
                    }
                    literal = e
                    width = 2
                }
                let next = i + width
                if optional(p, next) {
                    endRun()  // this character may be absent
                } else if next < p.endIndex && p[next] == "+" {
                    append(literal)
                    endRun()  // present, but how many times is open
                } else {
                    append(literal)
                }
                i = next
            }
        }
        endRun()
        return found
    }

    /// The alternatives of a group when each is plain text (letters, digits,
    /// spaces, escaped punctuation; no group, class or quantifier inside), so
    /// the group matches exactly one of them; nil otherwise.
    static func plainAlternatives(_ p: ArraySlice<Character>) -> [String]? {
        var out: [String] = []
        for part in topLevelParts(p) {
            var text = ""
            var i = part.startIndex
            while i < part.endIndex {
                var c = part[i]
                if c == "\\" {
                    guard i + 1 < part.endIndex, !part[i + 1].isLetter, !part[i + 1].isNumber, part[i + 1] != "<", part[i + 1] != ">" else { return nil }
                    i += 1
                    c = part[i]
                } else if ".^$()|*+?{[]".contains(c) {
                    return nil
                }
                text.append(c)
                i += 1
            }
            guard !text.isEmpty else { return nil }
            out.append(text)
        }
        return out
    }

    /// A quantifier at `i` that allows zero: ?, *, {0,…} or {,…}.
    private static func optional(_ p: ArraySlice<Character>, _ i: Int) -> Bool {
        guard i < p.endIndex else { return false }
        if p[i] == "?" || p[i] == "*" { return true }
        return p[i] == "{" && i + 1 < p.endIndex && (p[i + 1] == "0" || p[i + 1] == ",")  // glibc reads {,n} as {0,n}
    }

    /// The index of the `)` closing the group opened at `open` (endIndex if none).
    private static func groupEnd(_ p: ArraySlice<Character>, _ open: Int) -> Int {
        var depth = 0, i = open
        while i < p.endIndex {
            switch p[i] {
            case "\\": i += 1
            case "[": i = bracketEnd(p, i)
            case "(": depth += 1
            case ")":
                depth -= 1
                if depth == 0 { return i }
            default: break
            }
            i += 1
        }
        return p.endIndex
    }

    /// The index of the `]` closing the bracket expression at `open`
    /// (a `]` first, or after `^`, is a member, as POSIX says).
    private static func bracketEnd(_ p: ArraySlice<Character>, _ open: Int) -> Int {
        var i = open + 1
        if i < p.endIndex && p[i] == "^" { i += 1 }
        if i < p.endIndex && p[i] == "]" { i += 1 }
        while i < p.endIndex && p[i] != "]" {
            if p[i] == "[" && i + 1 < p.endIndex && (p[i + 1] == ":" || p[i + 1] == "=" || p[i + 1] == ".") {
                let kind = p[i + 1]
                i += 2
                while i + 1 < p.endIndex && !(p[i] == kind && p[i + 1] == "]") { i += 1 }
                i += 1
            }
            i += 1
        }
        return min(i, p.endIndex - 1)
    }
}
