import Heuristics
import MailMessage

/// `regexp:` — Postfix header_checks style: one rule per line,
///
///     [name]  /pattern/flags  action [arguments]
///
/// POSIX extended regular expressions, case-insensitive by default (as in
/// Postfix); flag `c` makes one case-sensitive (`i` is accepted and changes
/// nothing). The action is any policy action (`reject "…"`, `score +3`,
/// `warn`, …) or a Postfix word: REJECT text, WARN text, DISCARD, HOLD,
/// PREPEND text, DUNNO. Without a name the entry is called FILE:LINE.
public final class RegexpTable: Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let regex: PosixRegex
        public let action: RuleAction?
        public let line: Int
        /// For patterns anchored like `^Subject:` or `^Content-(Type|Disposition):`,
        /// the lower-cased header names: the entry is only tried on those
        /// headers (most header_checks are). Nil: tried on every line.
        public let headerNames: [String]?
    }

    public let path: String
    public let entries: [Entry]
    /// Entries indexed by anchored header name, plus those tried on every line.
    private let byHeader: [String: [Int]]
    private let unanchored: [Int]
    /// Per header name, one alternation of all its patterns: most header
    /// lines match nothing, and one regexec then rules out every entry.
    private let screens: [String: [Screen]]
    /// The same for matching whole texts (body rules): one alternation per
    /// run of entries rules them all out when the text matches none.
    private let textScreens: [Screen]
    /// Screens over the entries not anchored on one header name (such as
    /// `^Content-(Type|Disposition):`), which every header line meets: one
    /// regexec per group instead of one per entry. Nil: not screened.
    private let unanchoredScreens: [Screen]?
    /// For whole texts: the literals some entries cannot match without
    /// (RegexLiterals), searched in one pass; per entry, its required sets
    /// as indices in `literals` (one of each set must be present), nil for
    /// an entry that always runs (then through `textScreens`, which hold only those).
    private let literals: PhraseSet?
    private let entryLiterals: [[[Int]]?]
    private let textRest: [Int]

    /// A combined pattern for a run of entries with the same case rule.
    struct Screen: Sendable {
        let regex: PosixRegex
        let entries: [Int]
    }

    public init(path: String, displayPath: String, text: String, diagnostics: inout [PolicyDiagnostic]) {
        self.path = path
        var out: [Entry] = []
        for line in tokenizedLines(text, file: displayPath, diagnostics: &diagnostics) {
            let tokens = line.tokens
            let lineNo = line.number
            var i = 0
            var name = "\(displayPath):\(lineNo)"
            if case .word(let w) = tokens[0].kind {
                name = w
                i = 1
            }
            guard i < tokens.count, case .regex(let pattern, let flags) = tokens[i].kind else {
                let t = tokens[min(i, tokens.count - 1)]
                diagnostics.append(PolicyDiagnostic(file: displayPath, line: lineNo, column: t.column,
                                                    message: "expected /pattern/ (optionally after a rule name)"))
                continue
            }
            if let bad = flags.first(where: { $0 != "i" && $0 != "c" }) {
                diagnostics.append(PolicyDiagnostic(file: displayPath, line: lineNo, column: tokens[i].column,
                                                    message: "unknown regexp flag '\(bad)' (use i or c)"))
                continue
            }
            let regex: PosixRegex
            do {
                regex = try PosixRegex(pattern, caseInsensitive: !flags.contains("c"))
            } catch {
                diagnostics.append(PolicyDiagnostic(file: displayPath, line: lineNo, column: tokens[i].column + 1,
                                                    message: "bad regular expression: \(error.message)"))
                continue
            }
            var parser = TokenCursor(tokens: tokens, index: i + 1, file: displayPath, line: lineNo)
            var action: RuleAction?
            if !parser.atEnd {
                do throws(PolicyDiagnostic) {
                    action = try parser.postfixOrPolicyAction()
                    if !parser.atEnd { throw parser.error("unexpected '\(parser.peek!.text)' after the action") }
                } catch {
                    diagnostics.append(error)
                    continue
                }
            }
            out.append(Entry(name: name, regex: regex, action: action, line: lineNo, headerNames: RegexpTable.anchoredHeaders(pattern)))
        }
        entries = out
        var index: [String: [Int]] = [:]
        var rest: [Int] = []
        for (n, e) in out.enumerated() {
            if let names = e.headerNames {
                for h in names { index[h, default: []].append(n) }
            } else {
                rest.append(n)
            }
        }
        byHeader = index
        unanchored = rest
        var sc: [String: [Screen]] = [:]
        for (name, idxs) in index {
            if let groups = RegexpTable.screens(for: idxs, out) { sc[name] = groups }
        }
        screens = sc
        var all: [String] = []
        var per: [[[Int]]?] = []
        var restText: [Int] = []
        for (n, e) in out.enumerated() {
            if let sets = RegexLiterals.allRequired(e.regex.pattern) {
                per.append(sets.map { set in
                    defer { all += set }
                    return Array(all.count..<(all.count + set.count))
                })
            } else {
                per.append(nil)
                restText.append(n)
            }
        }
        literals = all.isEmpty ? nil : PhraseSet(all)
        entryLiterals = per
        textRest = restText
        textScreens = RegexpTable.screens(for: restText, out) ?? []
        unanchoredScreens = RegexpTable.screens(for: rest, out)
    }

    /// Combined alternations over runs of entries with the same case rule;
    /// nil when one would not compile (then nothing is screened).
    static func screens(for idxs: [Int], _ out: [Entry]) -> [Screen]? {
        guard idxs.count > 1 else { return nil }
        var groups: [[Int]] = []
        for i in idxs {
            if let last = groups.last?.last, out[last].regex.caseInsensitive == out[i].regex.caseInsensitive, groups[groups.count - 1].count < 64 {
                groups[groups.count - 1].append(i)
            } else {
                groups.append([i])
            }
        }
        var result: [Screen] = []
        for g in groups {
            let combined = g.map { "(\(out[$0].regex.pattern))" }.joined(separator: "|")
            guard let re = try? PosixRegex(combined, caseInsensitive: out[g[0]].regex.caseInsensitive) else { return nil }
            result.append(Screen(regex: re, entries: g))
        }
        return result
    }

    /// `^Subject:` → ["subject"]; `^Content-(Type|Disposition):` →
    /// ["content-type", "content-disposition"] (groups of plain names, at
    /// most RegexLiterals.maxJoined names); anything fancier → nil.
    static func anchoredHeaders(_ pattern: String) -> [String]? {
        guard pattern.hasPrefix("^") else { return nil }
        let p = Array(pattern.dropFirst())
        func isName(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber || c == "-") }
        var names = [""]
        var i = 0
        while i < p.count {
            let c = p[i]
            if c == ":" { return names.contains("") ? nil : names }
            if c == "(" {
                guard let close = p[i...].firstIndex(of: ")"), close + 1 < p.count, !"?*+{".contains(p[close + 1]),
                      let alternatives = RegexLiterals.plainAlternatives(p[(i + 1)..<close]),
                      alternatives.allSatisfy({ $0.allSatisfy(isName) }), names.count * alternatives.count <= RegexLiterals.maxJoined else { return nil }
                names = names.flatMap { head in alternatives.map { head + $0.lowercased() } }
                i = close + 1
                continue
            }
            guard isName(c), i + 1 >= p.count || !"?*+{".contains(p[i + 1]) else { return nil }
            names = names.map { $0 + String(c).lowercased() }
            i += 1
        }
        return nil
    }

    /// The first entry matching `text`.
    public func firstMatch(_ text: String) -> Entry? {
        entries.first { $0.regex.matches(text) }
    }

    /// Every entry matching some header line "Name: value", in file order,
    /// each with the first line it matched. A line is only built for headers
    /// that some entry may look at, and a header's screen rules out all its
    /// entries with one regexec when nothing can match.
    public func allMatches(fields: [HeaderBlock.Field]) -> [(Entry, String)] {
        var found: [Int: String] = [:]
        for field in fields {
            let key = asciiLowercased(field.name)
            let screened = screens[key]
            let anchored = screened == nil ? byHeader[key] : nil
            guard screened != nil || anchored != nil || !unanchored.isEmpty else { continue }
            let line = field.name + ": " + field.value
            var candidates: [Int] = []
            if let groups = screened {
                for g in groups where g.regex.matches(line) { candidates += g.entries }
            } else if let list = anchored {
                candidates = list
            }
            if let groups = unanchoredScreens {
                for g in groups where g.regex.matches(line) { candidates += g.entries }
            } else {
                candidates += unanchored
            }
            for idx in candidates where found[idx] == nil && entries[idx].regex.matches(line) {
                found[idx] = line
            }
        }
        return found.keys.sorted().map { (entries[$0], found[$0]!) }
    }

    /// Every entry matching `text`, in file order.
    public func allMatches(_ text: String) -> [Entry] {
        var found: [Int] = []
        if let literals {
            var t = text
            // Written into place, and the literals found marked in an array, not a Set: element by
            // element appends and hashing were a third of this search.
            let lower = t.withUTF8 { bytes in
                [UInt8](unsafeUninitializedCapacity: bytes.count) { out, n in
                    for i in 0..<bytes.count { out[i] = bytes[i] >= 65 && bytes[i] <= 90 ? bytes[i] | 0x20 : bytes[i] }
                    n = bytes.count
                }
            }
            var present = [Bool](repeating: false, count: literals.phrases.count)
            literals.forEachMatch(in: lower) { k, _ in present[k] = true }
            for (n, sets) in entryLiterals.enumerated() {
                // Every required set has one of its strings in the text: only then is the regex worth running.
                if let sets, sets.allSatisfy({ $0.contains(where: { present[$0] }) }), entries[n].regex.regexecOnly(text) { found.append(n) }
            }
        }
        if textScreens.isEmpty {
            found += textRest.filter { entries[$0].regex.matches(text) }
        } else {
            for g in textScreens where g.regex.matches(text) {
                found += g.entries.filter { entries[$0].regex.matches(text) }
            }
        }
        return found.sorted().map { entries[$0] }
    }
}
