import Heuristics
import SMTPProtocol

/// expression = term { "or" term }
/// term       = factor { "and" factor }
/// factor     = ("not" | "!") factor | "(" expression ")" | condition
struct ConditionParser {
    var cursor: TokenCursor
    let tables: [String: Table]
    /// Set when the condition uses an action table (`header regexp:…`), which
    /// may supply the rule's action.
    var sawActionTable = false

    init(cursor: TokenCursor, tables: [String: Table]) {
        self.cursor = cursor
        self.tables = tables
    }

    mutating func expression() throws(PolicyDiagnostic) -> Condition {
        var items = [try term()]
        while cursor.peekWord() == "or" {
            _ = cursor.next()
            items.append(try term())
        }
        return items.count == 1 ? items[0] : .any(items)
    }

    mutating func term() throws(PolicyDiagnostic) -> Condition {
        var items = [try factor()]
        while cursor.peekWord() == "and" {
            _ = cursor.next()
            items.append(try factor())
        }
        return items.count == 1 ? items[0] : .all(items)
    }

    mutating func factor() throws(PolicyDiagnostic) -> Condition {
        if cursor.isOp("!") || cursor.peekWord() == "not" {
            if cursor.peekWord() == "not" { _ = cursor.next() }
            return .not(try factor())
        }
        if cursor.isOp("(") {
            let e = try expression()
            guard cursor.isOp(")") else { throw cursor.error("expected ')'") }
            return e
        }
        return try condition()
    }

    static let keywords = ["all", "client", "client-name", "ptr", "fcrdns", "helo", "sender", "null-sender", "rcpt",
                           "country", "asn", "size", "declared-size", "rcpt-count", "spam-score", "header", "tls", "virus",
                           "attachment-name", "attachment-type", "attachment-mismatch", "body", "uri",
                           "dnsbl", "sender-dnsbl", "uribl", "spf", "spf-helo", "dkim", "dkim-domain",
                           "dmarc", "dmarc-policy", "dmarc-disposition", "arc", "from", "from-domain", "signal", "milter"]

    /// RESULT[, RESULT…] for spf and dkim, each one of `all`.
    mutating func resultNames(_ all: Set<String>, _ what: String) throws(PolicyDiagnostic) -> Set<String> {
        var results: Set<String> = []
        let names = all.sorted().joined(separator: ", ")
        repeat {
            let t = cursor.peek
            let v = try cursor.word("a\(what == "SPF" ? "n" : "") \(what) result (\(names))").lowercased()
            guard all.contains(v) else { throw cursor.error("'\(v)' is not a\(what == "SPF" ? "n" : "") \(what) result; use \(names)", at: t) }
            results.insert(v)
        } while cursor.isOp(",")
        return results
    }

    mutating func condition() throws(PolicyDiagnostic) -> Condition {
        let tok = cursor.peek
        let w = try cursor.word("a condition (\(Self.keywords.joined(separator: ", ")))")
        switch w {
        case "all": return .always
        case "client": return .clientIP(try matcher(for: w, kind: .ip))
        case "client-name": return .clientName(try matcher(for: w, kind: .domain))
        case "ptr": return .ptr(try matcher(for: w, kind: .domain))
        case "fcrdns": return .fcrdns
        case "tls": return .tls
        case "virus": return .virus
        case "attachment-mismatch": return .attachmentMismatch
        case "attachment-name", "attachment-type":
            var globs: [String] = []
            repeat {
                let t = cursor.peek
                let v = try cursor.word("a file name pattern such as *.exe")
                if TokenCursor.actionWords.contains(v) { throw cursor.error("\(w) needs a pattern before '\(v)'", at: t) }
                globs.append(v.lowercased())
            } while cursor.isOp(",")
            return w == "attachment-name" ? .attachmentName(globs) : .attachmentType(globs)
        case "uri":
            return .uri(try matcher(for: w, kind: .domain))
        case "spf", "spf-helo":
            return .spf(try resultNames(SPFResultName.all, "SPF"), helo: w == "spf-helo")
        case "dkim":
            return .dkim(try resultNames(DKIMResultName.all, "DKIM"))
        case "dkim-domain":
            return .dkimDomain(try matcher(for: w, kind: .domain))
        case "dmarc":
            return .dmarc(try resultNames(DMARCResultName.all, "DMARC"))
        case "dmarc-policy", "dmarc-disposition":
            let p = try resultNames(DMARCResultName.policies, "DMARC policy")
            return w == "dmarc-policy" ? .dmarcPolicy(p) : .dmarcDisposition(p)
        case "arc":
            return .arc(try resultNames(ARCResultName.all, "ARC"))
        case "signal":
            var names: Set<String> = []
            repeat {
                let t = cursor.peek
                let v = try cursor.word("a signal name such as LINK_TEXT_HOST_MISMATCH").uppercased()
                guard Heuristics.names.contains(v) else {
                    throw cursor.error("'\(v)' is not a signal\(Self.nearSignals(v)); docs/policy.md lists them all", at: t)
                }
                names.insert(v)
            } while cursor.isOp(",")
            return .signal(names)
        case "milter":
            let name = try cursor.word("the name of a [[milters]] entry, such as clamav")
            var verdicts: Set<String> = []
            repeat {
                let t = cursor.peek
                let v = try cursor.word("a milter answer such as reject").lowercased()
                guard MilterVerdict.names.contains(v) else {
                    throw cursor.error("'\(v)' is not a milter answer; one of \(MilterVerdict.names.sorted().joined(separator: ", "))", at: t)
                }
                verdicts.insert(v)
            } while cursor.isOp(",")
            return .milter(name, verdicts)
        case "from":
            return .from(try matcher(for: w, kind: .address))
        case "from-domain":
            return .fromDomain(try matcher(for: w, kind: .domain))
        case "dnsbl", "sender-dnsbl", "uribl":
            let zoneTok = cursor.peek
            let zone = try cursor.word("a DNS list zone such as zen.spamhaus.org").lowercased()
            guard (try? AddressParser.parseMailbox("x@" + zone)) != nil else { throw cursor.error("'\(zone)' is not a DNS zone", at: zoneTok) }
            var codes: [CIDR] = []
            var mask: UInt32?
            if cursor.isOp("==") || cursor.peekWord() == "=" {
                if cursor.peekWord() == "=" { _ = cursor.next() }
                repeat {
                    let t = cursor.peek
                    let v = try cursor.word("a return code such as 127.0.0.2 or 127.0.0.0/24")
                    guard let c = CIDR(v), c.isV4 else { throw cursor.error("'\(v)' is not an IPv4 return code", at: t) }
                    codes.append(c)
                } while cursor.isOp(",")
            } else if cursor.peekWord() == "&" {
                _ = cursor.next()
                let t = cursor.peek
                let v = try cursor.word("a bit mask such as 8 or 0.0.0.8")
                if let n = UInt32(v) { mask = n } else if let ip = IPAddress(v), ip.isV4 { mask = UInt32(truncatingIfNeeded: ip.value) } else {
                    throw cursor.error("'\(v)' is not a bit mask", at: t)
                }
            }
            let target: DNSList.Target = w == "dnsbl" ? .client : w == "uribl" ? .uri : .sender
            return .dnsList(DNSList(zone: zone, target: target, codes: codes, mask: mask))
        case "body":
            if case .tableRef(let name)? = cursor.peek?.kind {
                _ = cursor.next()
                guard let t = tables[name] else { throw cursor.error("unknown table <\(name)>; declare it first with: table \(name) regexp:PATH", at: cursor.tokens[cursor.index - 1]) }
                guard case .regexp(let r) = t else { throw cursor.error("body checks need a regexp table; <\(name)> is \(t.type.rawValue)", at: cursor.tokens[cursor.index - 1]) }
                sawActionTable = true
                return .bodyTable(r)
            }
            guard cursor.isOp("~") else { throw cursor.error("body needs ~ /pattern/ or a regexp table <name>") }
            guard case .regex(let p, let flags)? = cursor.next()?.kind else { throw cursor.error("expected /pattern/ after ~") }
            return .body(try compile(p, flags, at: cursor.tokens[cursor.index - 1]))
        case "null-sender": return .nullSender
        case "helo":
            if let v = cursor.peekWord(), let check = HeloCheck(rawValue: v) {
                _ = cursor.next()
                return .heloCheck(check)
            }
            return .helo(try matcher(for: w, kind: .domain))
        case "sender":
            if cursor.peekWord() == "<>" { _ = cursor.next(); return .nullSender }
            return .sender(try matcher(for: w, kind: .address))
        case "rcpt": return .rcpt(try matcher(for: w, kind: .address))
        case "country": return .country(try matcher(for: w, kind: .exact))
        case "asn":
            var set = Set<Int>()
            repeat {
                let t = cursor.peek
                let v = try cursor.word("an AS number")
                let digits = v.uppercased().hasPrefix("AS") ? String(v.dropFirst(2)) : v
                guard let n = Int(digits), n >= 0 else { throw cursor.error("'\(v)' is not an AS number", at: t) }
                set.insert(n)
            } while cursor.isOp(",")
            return .asn(set)
        case "size", "declared-size", "rcpt-count", "spam-score":
            let opTok = cursor.peek
            guard case .op(let o)? = cursor.next()?.kind, let cmp = Comparison(rawValue: o) else {
                throw cursor.error("\(w) needs a comparison: > >= < <= == !=", at: opTok)
            }
            let vTok = cursor.peek
            let v = try cursor.word("a number")
            let number: Double?
            if w == "size" || w == "declared-size" { number = parseSize(v).map(Double.init) } else { number = Double(v) }
            guard let n = number else { throw cursor.error("'\(v)' is not a \(w.hasSuffix("size") ? "size such as 10M" : "number")", at: vTok) }
            switch w {
            case "size": return .size(cmp, n)
            case "declared-size": return .declaredSize(cmp, n)
            case "rcpt-count": return .rcptCount(cmp, n)
            default: return .spamScore(cmp, n)
            }
        case "header":
            if case .tableRef(let name)? = cursor.peek?.kind {
                _ = cursor.next()
                guard let t = tables[name] else { throw cursor.error("unknown table <\(name)>; declare it first with: table \(name) regexp:PATH", at: cursor.tokens[cursor.index - 1]) }
                guard case .regexp(let r) = t else { throw cursor.error("header checks need a regexp table; <\(name)> is \(t.type.rawValue)", at: cursor.tokens[cursor.index - 1]) }
                sawActionTable = true
                return .headerTable(r)
            }
            let nameTok = cursor.peek
            let name = try cursor.word("a header name, or a regexp table")
            if name.hasPrefix("regexp:") {
                throw cursor.error("declare the table first (table NAME \(name)) and write header <NAME>", at: nameTok)
            }
            guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw cursor.error("'\(name)' is not a header name", at: nameTok)
            }
            if cursor.isOp("~") {
                guard case .regex(let p, let flags)? = cursor.next()?.kind else { throw cursor.error("expected /pattern/ after ~") }
                return .header(name, try compile(p, flags, at: cursor.tokens[cursor.index - 1]))
            }
            return .headerPresent(name)
        default:
            if TokenCursor.actionWords.contains(w) {
                throw cursor.error("expected a condition before the action '\(w)' (use 'all' to match everything)", at: tok)
            }
            throw cursor.error("unknown condition '\(w)'; conditions are \(Self.keywords.joined(separator: ", "))", at: tok)
        }
    }

    enum ValueKind { case ip, domain, address, exact }

    /// matcher = "<" table ">" | "/" regex "/" | value { "," value }
    mutating func matcher(for keyword: String, kind: ValueKind) throws(PolicyDiagnostic) -> Matcher {
        guard let tok = cursor.peek else { throw cursor.error("\(keyword) needs a value, a <table> or a /pattern/") }
        switch tok.kind {
        case .tableRef(let name):
            _ = cursor.next()
            guard let t = tables[name] else {
                throw cursor.error("unknown table <\(name)>; declare it first with: table \(name) TYPE:PATH", at: tok)
            }
            switch (t, kind) {
            case (.cidr, .ip), (.list, _), (.regexp, .domain), (.regexp, .address), (.regexp, .exact):
                if case .regexp = t { sawActionTable = true }
                return .table(name: name, t)
            default:
                throw cursor.error("\(keyword) cannot use a \(t.type.rawValue) table", at: tok)
            }
        case .regex(let p, let flags):
            _ = cursor.next()
            guard kind != .ip else { throw cursor.error("client takes addresses, networks or a cidr table, not a pattern", at: tok) }
            return .regex(try compile(p, flags, at: tok))
        case .word:
            var values: [String] = []
            repeat {
                let t = cursor.peek
                let v = try cursor.word("a value")
                if TokenCursor.actionWords.contains(v) || v == "and" || v == "or" {
                    throw cursor.error("\(keyword) needs a value before '\(v)'", at: t)
                }
                values.append(v)
                if kind == .ip, CIDR(v) == nil { throw cursor.error("'\(v)' is not an IP address or CIDR network", at: t) }
            } while cursor.isOp(",")
            if kind == .ip { return .networks(values.compactMap(CIDR.init)) }
            var diags: [PolicyDiagnostic] = []
            let list = ListTable(path: cursor.file, text: values.joined(separator: "\n"), diagnostics: &diags)
            return .literals(list)
        default:
            throw cursor.error("\(keyword) needs a value, a <table> or a /pattern/", at: tok)
        }
    }

    func compile(_ p: String, _ flags: String, at tok: Token) throws(PolicyDiagnostic) -> PosixRegex {
        if let bad = flags.first(where: { $0 != "i" && $0 != "c" }) {
            throw cursor.error("unknown regexp flag '\(bad)' (use i or c)", at: tok)
        }
        do {
            return try PosixRegex(p, caseInsensitive: !flags.contains("c"))
        } catch {
            throw cursor.error("bad regular expression: \(error.message)", at: tok)
        }
    }
}

extension ConditionParser {
    /// The signals sharing the most words with a misspelt one (LINK_MISMATCH:
    /// LINK_TEXT_HOST_MISMATCH first), or the first few when none does: with
    /// seventy names, an alphabetical excerpt rarely holds the one meant.
    static func nearSignals(_ name: String) -> String {
        let words = Set(name.split(separator: "_"))
        var scored: [(name: String, shared: Int)] = []
        for n in Heuristics.names {
            let shared = Set(n.split(separator: "_")).intersection(words).count
            if shared > 0 { scored.append((n, shared)) }
        }
        scored.sort { $0.shared != $1.shared ? $0.shared > $1.shared : $0.name < $1.name }
        let near = scored.prefix(3).map(\.name)
        return near.isEmpty ? " (such as \(Heuristics.names.sorted().prefix(4).joined(separator: ", ")))"
            : " (did you mean \(near.joined(separator: ", "))?)"
    }
}
