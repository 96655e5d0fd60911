import Foundation

/// Facts about this gateway that some conditions need (`helo ours`).
public struct GatewayIdentity: Sendable {
    public var hostname: String
    public var domains: [String]
    public var addresses: [String]
    public init(hostname: String, domains: [String], addresses: [String] = []) {
        self.hostname = hostname
        self.domains = domains
        self.addresses = addresses
    }
}

/// Reads `policies/*.policy` (in name order, plus includes) and the tables
/// they declare, collecting every error with FILE:LINE:COL.
public struct PolicyLoader {
    /// Folder that displayed file names are relative to (the folder of mxgate.toml).
    let base: String
    /// `[policy] rules`: the folder relative table paths are resolved against.
    let rules: String
    var diagnostics: [PolicyDiagnostic] = []
    var tables: [String: Table] = [:]
    var tableCache: [String: Table] = [:]
    var globalRules: [Rule] = []
    var globalLimits = PolicyLimits()
    var sections: [DomainSection] = []
    var currentSection: Int?
    var sectionStart: (file: String, line: Int, column: Int)?
    var included: Set<String> = []

    init(base: String, rules: String?) {
        self.base = base
        self.rules = ((rules ?? base) as NSString).standardizingPath
    }

    /// Loads a policy folder. Throws when there are errors; warnings come back with the set.
    /// `rules` is the tables' folder; nil means `base`.
    public static func load(policies: String, base: String, rules: String? = nil,
                            identity: GatewayIdentity) throws(PolicyLoadError) -> PolicySet {
        var loader = PolicyLoader(base: base, rules: rules)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: policies, isDirectory: &isDir), isDir.boolValue else {
            throw PolicyLoadError(diagnostics: [PolicyDiagnostic(file: loader.display(policies), line: 0, column: 0,
                                                                 message: "the policies folder does not exist")])
        }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: policies)) ?? [])
            .filter { $0.hasSuffix(".policy") }.sorted()
        for f in files { loader.loadFile((policies as NSString).appendingPathComponent(f)) }
        loader.finish()
        if loader.diagnostics.contains(where: { !$0.isWarning }) {
            throw PolicyLoadError(diagnostics: loader.diagnostics)
        }
        return PolicySet(tables: loader.tables, rules: loader.globalRules, limits: loader.globalLimits,
                         sections: loader.sections, identity: identity, warnings: loader.diagnostics)
    }

    /// Loads one table file on its own, for `mxgate lookup`.
    public static func loadTable(_ spec: String, base: String, rules: String? = nil) throws(PolicyLoadError) -> Table {
        var loader = PolicyLoader(base: base, rules: rules)
        let t = loader.table(spec: spec, file: "command line", line: 0, column: 0)
        if let t, !loader.diagnostics.contains(where: { !$0.isWarning }) { return t }
        throw PolicyLoadError(diagnostics: loader.diagnostics)
    }

    func display(_ path: String) -> String {
        let b = base.hasSuffix("/") ? base : base + "/"
        return path.hasPrefix(b) ? String(path.dropFirst(b.count)) : path
    }

    /// A table's file: a relative path is taken in the rules folder, unless,
    /// taken from mxgate.toml's folder, it already names a file in the rules
    /// folder (`cidr:rules/x.cidr` with `rules = "rules"`, as earlier
    /// releases spelled it), so both spellings mean the same file.
    func tablePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let fromBase = (resolve(path, relativeTo: base) as NSString).standardizingPath
        if fromBase.hasPrefix(rules + "/") { return fromBase }
        return resolve(path, relativeTo: rules)
    }

    func resolve(_ path: String, relativeTo dir: String) -> String {
        path.hasPrefix("/") ? path : (dir as NSString).appendingPathComponent(path)
    }

    mutating func loadFile(_ path: String) {
        let standardized = (path as NSString).standardizingPath
        guard !included.contains(standardized) else { return }
        included.insert(standardized)
        let name = display(standardized)
        guard let data = FileManager.default.contents(atPath: standardized), let text = String(data: data, encoding: .utf8) else {
            diagnostics.append(PolicyDiagnostic(file: name, line: 0, column: 0, message: "cannot read the file"))
            return
        }
        for line in tokenizedLines(text, file: name, diagnostics: &diagnostics) {
            var c = TokenCursor(tokens: line.tokens, index: 0, file: name, line: line.number)
            do throws(PolicyDiagnostic) {
                try statement(&c, path: standardized, text: String(line.text).trimmingCharacters(in: .whitespaces))
            } catch {
                diagnostics.append(error)
            }
        }
        if currentSection != nil, let start = sectionStart, start.file == name {
            diagnostics.append(PolicyDiagnostic(file: name, line: start.line, column: start.column, message: "domain section is not closed with '}'"))
            currentSection = nil
        }
    }

    mutating func statement(_ c: inout TokenCursor, path: String, text: String) throws(PolicyDiagnostic) {
        let first = c.peek!
        if case .op("}") = first.kind {
            _ = c.next()
            guard currentSection != nil else { throw c.error("'}' without a domain section", at: first) }
            currentSection = nil
            try end(&c)
            return
        }
        let keyword = try c.word("a statement (table, limit, at, domain, include)")
        switch keyword {
        case "include":
            guard case .string(let f)? = c.next()?.kind else { throw c.error("include needs a quoted file name", at: first) }
            try end(&c)
            let target = resolve(f, relativeTo: (path as NSString).deletingLastPathComponent)
            guard FileManager.default.fileExists(atPath: target) else { throw c.error("included file \(display(target)) does not exist", at: c.tokens[1]) }
            loadFile(target)
        case "table":
            guard currentSection == nil else { throw c.error("tables are declared outside domain sections", at: first) }
            let nameTok = c.peek
            let name = try c.word("a table name")
            let specTok = c.peek
            let spec = try c.word("TYPE:PATH, e.g. cidr:rules/blocked.cidr")
            try end(&c)
            guard tables[name] == nil else { throw c.error("table <\(name)> is declared twice", at: nameTok) }
            if let t = table(spec: spec, file: c.file, line: c.line, column: specTok?.column ?? 1) { tables[name] = t }
        case "limit":
            try limit(&c)
        case "domain":
            guard currentSection == nil else { throw c.error("domain sections cannot be nested", at: first) }
            var domains: [String] = []
            while let w = c.peekWord() {
                _ = c.next()
                domains.append(contentsOf: w.split(separator: ",").map { $0.lowercased() })
                _ = c.isOp(",")
            }
            guard !domains.isEmpty else { throw c.error("domain needs at least one domain name") }
            guard c.isOp("{") else { throw c.error("expected '{' after the domain names") }
            try end(&c)
            sections.append(DomainSection(domains: domains, name: "domain \(domains.joined(separator: " ")) (\(c.file):\(c.line))"))
            currentSection = sections.count - 1
            sectionStart = (c.file, c.line, first.column)
        case "at":
            let stageTok = c.peek
            let stageName = try c.word("a stage (connect, helo, mail, rcpt, data)")
            guard let stage = PolicyStage(rawValue: stageName) else {
                throw c.error("unknown stage '\(stageName)'; stages are connect, helo, mail, rcpt, data", at: stageTok)
            }
            guard c.peekWord() == "match" else { throw c.error("expected 'match' after the stage") }
            _ = c.next()
            let condTok = c.peek
            var cp = ConditionParser(cursor: c, tables: tables)
            let condition = try cp.expression()
            c = cp.cursor
            guard condition.earliestStage <= stage else {
                throw c.error("this condition needs facts first known at \(condition.earliestStage.rawValue); it cannot be used at \(stage.rawValue)", at: condTok)
            }
            var action: RuleAction?
            let actionTok = c.peek
            if !c.atEnd { action = try c.action() }
            try end(&c)
            if action == nil && !cp.sawActionTable {
                throw c.error("expected an action after the condition (accept, reject, tempfail, …)")
            }
            if let a = action { try check(a, stage: stage, c: c, at: actionTok) }
            let rule = Rule(name: "\(c.file):\(c.line)", stage: stage, condition: condition, action: action, text: text)
            if let s = currentSection {
                guard stage >= .rcpt else {
                    throw c.error("rules in a domain section run once the recipient is known: use at rcpt or at data", at: first)
                }
                sections[s].rules.append(rule)
            } else {
                globalRules.append(rule)
            }
        default:
            throw c.error("unknown statement '\(keyword)'; statements are table, limit, at, domain, include", at: first)
        }
    }

    func check(_ a: RuleAction, stage: PolicyStage, c: TokenCursor, at tok: Token?) throws(PolicyDiagnostic) {
        switch a {
        case .quarantine, .discard, .addHeader, .tag:
            guard stage == .data else { throw c.error("\(a.name) works on a message: use it at data", at: tok) }
        case .greylist:
            guard stage >= .rcpt else { throw c.error("greylist needs the recipient (the triplet): use it at rcpt or at data", at: tok) }
        case .warn(let inner?):
            try check(inner, stage: stage, c: c, at: tok)
        default:
            break
        }
    }

    func end(_ c: inout TokenCursor) throws(PolicyDiagnostic) {
        if let t = c.peek { throw c.error("unexpected '\(t.text)'", at: t) }
    }

    // limit = "limit" ( "message-size" SIZE | "recipients" N | "connections-per-client" N
    //                 | "messages-per-client" N ["/minute"] )
    mutating func limit(_ c: inout TokenCursor) throws(PolicyDiagnostic) {
        let nameTok = c.peek
        let name = try c.word("a limit name (message-size, recipients, connections-per-client, messages-per-client)")
        let valueTok = c.peek
        let value = try c.word("a value")
        try end(&c)
        var l = currentSection.map { sections[$0].limits } ?? globalLimits
        switch name {
        case "message-size":
            guard let n = parseSize(value) else { throw c.error("'\(value)' is not a size such as 25M or 26214400", at: valueTok) }
            l.messageSize = n
        case "recipients":
            guard let n = Int(value), n >= 1 else { throw c.error("'\(value)' is not a positive number", at: valueTok) }
            l.recipients = n
        case "connections-per-client", "messages-per-client":
            guard currentSection == nil else { throw c.error("\(name) is a limit on clients, not on a domain: set it outside domain sections", at: nameTok) }
            let v = value.hasSuffix("/minute") ? String(value.dropLast("/minute".count)) : value
            guard let n = Int(v), n >= 1 else { throw c.error("'\(value)' is not a positive number", at: valueTok) }
            if name == "connections-per-client" { l.connectionsPerClient = n } else { l.messagesPerClientPerMinute = n }
        default:
            throw c.error("unknown limit '\(name)'; limits are message-size, recipients, connections-per-client, messages-per-client", at: nameTok)
        }
        if let s = currentSection { sections[s].limits = l } else { globalLimits = l }
    }

    /// TYPE:PATH → a loaded table; the same file is loaded once.
    mutating func table(spec: String, file: String, line: Int, column: Int) -> Table? {
        guard let colon = spec.firstIndex(of: ":"), let type = TableType(rawValue: String(spec[..<colon])) else {
            diagnostics.append(PolicyDiagnostic(file: file, line: line, column: column,
                                                message: "table spec '\(spec)' must be TYPE:PATH with TYPE one of cidr, list, regexp"))
            return nil
        }
        let path = tablePath(String(spec[spec.index(after: colon)...]))
        if let t = tableCache[spec] { return t }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            diagnostics.append(PolicyDiagnostic(file: file, line: line, column: column + type.rawValue.count + 1,
                                                message: "cannot read table file \(display(path))"))
            return nil
        }
        let shown = display(path)
        let t: Table
        switch type {
        case .cidr: t = .cidr(CIDRTable(path: shown, text: text, diagnostics: &diagnostics))
        case .list: t = .list(ListTable(path: shown, text: text, diagnostics: &diagnostics))
        case .regexp: t = .regexp(RegexpTable(path: shown, displayPath: shown, text: text, diagnostics: &diagnostics))
        }
        tableCache[spec] = t
        return t
    }

    /// Warnings about rules that can never match.
    mutating func finish() {
        func deadRules(_ rules: [Rule]) {
            for stage in PolicyStage.allCases {
                var blocker: Rule?
                for r in rules where r.stage == stage {
                    if let b = blocker {
                        let parts = r.name.split(separator: ":")
                        diagnostics.append(PolicyDiagnostic(file: String(parts.dropLast().joined(separator: ":")), line: Int(parts.last!) ?? 0, column: 1,
                                                            message: "this rule can never match: \(b.name) always decides at \(stage.rawValue) first",
                                                            isWarning: true))
                        continue
                    }
                    if case .always = r.condition, let a = r.action, a.isDeciding { blocker = r }
                }
            }
        }
        deadRules(globalRules)
        for s in sections { deadRules(s.rules) }
    }
}

/// Bytes from "26214400", "25M" or "1.5G" (K, M, G: powers of 1024), for
/// policy files and mxgate.toml alike; nil for anything else, including
/// sizes over 2^62: the text is the admin's, and no arithmetic on it may
/// trap (the policy fuzzer found `limit message-size 99999999999999999999G`).
public func parseSize(_ text: String) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    let mult: [Character: Double] = ["K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024]
    var number = Substring(t), m = 1.0
    if let last = t.last, let k = mult[last] { number = t.dropLast(); m = k }
    // Digits and at most one point: Double() would also take "inf", "nan" and hex.
    guard !number.isEmpty, number.allSatisfy({ ("0"..."9").contains($0) || $0 == "." }),
          number.filter({ $0 == "." }).count <= 1, number != "." else { return nil }
    if m == 1 { return Int(number) }
    guard let v = Double(number), v * m < 0x1p62 else { return nil }
    return Int(v * m)
}
