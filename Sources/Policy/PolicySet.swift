import MailMessage
import SMTPProtocol

/// A loaded policy: tables, rules per stage, limits, domain sections.
/// Immutable; a reload builds a new one and swaps it whole.
public final class PolicySet: PolicyEngine, Sendable {
    public let tables: [String: Table]
    public let rules: [Rule]
    public let limits: PolicyLimits
    public let sections: [DomainSection]
    public let identity: GatewayIdentity
    public let warnings: [PolicyDiagnostic]
    private let byStage: [PolicyStage: [Rule]]
    private let sectionByStage: [[PolicyStage: [Rule]]]
    public let needsDNS: Bool
    public let needsGeoIP: Bool
    /// A rule looks at SPF results.
    public let needsSPF: Bool
    /// A rule looks at DKIM results.
    public let needsDKIM: Bool
    /// A rule looks at DMARC results.
    public let needsDMARC: Bool
    /// A rule looks at the ARC chain.
    public let needsARC: Bool
    /// A rule uses `signal`: the heuristics run.
    public let needsHeuristics: Bool
    /// Header fields are parsed for `at data` only when a rule looks at them.
    public let needsHeaders: Bool
    /// The message is sent to the virus scanner only when a rule asks.
    public let needsVirusScan: Bool
    /// The stages with a `greylist` rule: the session looks the triplet up before them.
    public let greylistStages: Set<PolicyStage>
    /// The message is walked part by part only when a rule looks at attachments or body text.
    public let needsMIME: Bool
    /// Every DNS list the rules ask, so the session can look them up
    /// concurrently before the stage that needs them.
    public let dnsLists: [DNSList]

    init(tables: [String: Table], rules: [Rule], limits: PolicyLimits, sections: [DomainSection],
         identity: GatewayIdentity, warnings: [PolicyDiagnostic]) {
        self.tables = tables
        self.rules = rules
        self.limits = limits
        self.sections = sections
        self.identity = identity
        self.warnings = warnings
        byStage = Dictionary(grouping: rules, by: \.stage)
        sectionByStage = sections.map { Dictionary(grouping: $0.rules, by: \.stage) }
        let all = rules + sections.flatMap(\.rules)
        needsDNS = all.contains { $0.condition.needsDNS }
        needsGeoIP = all.contains { $0.condition.needsGeoIP }
        needsSPF = all.contains { $0.condition.needsSPF }
        needsDKIM = all.contains { $0.condition.needsDKIM }
        needsDMARC = all.contains { $0.condition.needsDMARC }
        needsARC = all.contains { $0.condition.needsARC }
        needsHeuristics = all.contains { $0.condition.needsHeuristics }
        needsHeaders = all.contains { $0.condition.needsHeaders }
        needsVirusScan = all.contains { $0.condition.usesVirusScan }
        greylistStages = Set(all.filter { r in
            if case .greylist? = r.action { return true }
            if case .warn(.greylist?)? = r.action { return true }
            return false
        }.map(\.stage))
        needsMIME = all.contains { $0.condition.needsMIME } || all.contains { $0.condition.dnsLists.contains { $0.target == .uri } }
        var lists: [DNSList] = []
        for r in all { for l in r.condition.dnsLists where !lists.contains(l) { lists.append(l) } }
        dnsLists = lists
    }

    /// The domain section for a recipient domain, if one covers it.
    public func section(for domain: String) -> Int? {
        sections.firstIndex { $0.covers(domain) }
    }

    /// Limits for a transaction in `section` (section values over global ones).
    public func limits(for section: Int?) -> PolicyLimits {
        guard let s = section else { return limits }
        return sections[s].limits.over(limits)
    }

    public func sectionName(_ s: Int?) -> String { s.map { sections[$0].name } ?? "the default policy" }

    // MARK: evaluation

    /// Truth with a third value for "a lookup failed": such a rule tempfails.
    enum Truth {
        case yes, no
        case unknown(String)
    }

    public func evaluate(_ stage: PolicyStage, _ facts: SessionFacts) -> StageOutcome {
        var out = StageOutcome()
        if let s = facts.section, s < sectionByStage.count, let list = sectionByStage[s][stage] {
            if run(list, facts, &out) { return out }
        }
        if let list = byStage[stage] { _ = run(list, facts, &out) }
        return out
    }

    /// Runs rules in order; true once one of them decided the stage. Scores
    /// added in this stage count for later rules of the same stage.
    private func run(_ list: [Rule], _ facts: SessionFacts, _ out: inout StageOutcome) -> Bool {
        for rule in list {
            var ctx = MatchContext()
            ctx.score = facts.score + out.scoreDelta
            switch test(rule.condition, facts, &ctx) {
            case .no:
                continue
            case .unknown(let reason):
                let reply = rule.condition.usesVirusScan && reason.hasPrefix("virus scan")
                    ? SMTPReply(451, "4.7.0", "Virus scan failed, try again later (\(rule.name))")
                    : SMTPReply(451, "4.7.1", "Temporary lookup failure, try again later (\(rule.name))")
                out.fired.append(FiredRule(name: rule.name, action: "tempfail", explanation: reason, warnOnly: false))
                out.decision = .tempfail(reply, rule: rule.name)
                return true
            case .yes:
                break
            }
            let why = ctx.why
            let tableAction = ctx.tableAction
            let name = tableAction.map { $0.1.isEmpty ? rule.name : "\(rule.name) \($0.1)" } ?? ctx.label.map { "\(rule.name) \($0)" } ?? rule.name
            guard let action = rule.action ?? tableAction?.0 else {
                out.fired.append(FiredRule(name: name, action: "match", explanation: why.joined(separator: "; "), warnOnly: true))
                continue
            }
            let (value, score) = (ctx.value, ctx.score)
            if apply(action, name: name, why: why, values: { templateValues(facts, rule: name, why: why, value: value, score: score) },
                     greylist: facts.greylist, out: &out) { return true }
            // Scoring tables: every further entry that matched counts too, in
            // file order, until one of them decides.
            guard rule.action == nil else { continue }
            for more in ctx.moreTableActions {
                guard let a = more.action else { continue }
                let n = more.name.isEmpty ? rule.name : "\(rule.name) \(more.name)"
                let (value, score) = (ctx.value, facts.score + out.scoreDelta)
                if apply(a, name: n, why: [more.why], values: { templateValues(facts, rule: n, why: [more.why], value: value, score: score) },
                         greylist: facts.greylist, out: &out) { return true }
            }
        }
        return false
    }

    /// An entry's name as it appears in rule names: empty for unnamed entries.
    func entryName(_ e: RegexpTable.Entry, _ t: RegexpTable) -> String {
        e.name.hasPrefix(t.path + ":") ? "" : e.name
    }

    /// Carries out one action; returns true when it decides the stage. `values` fills templates,
    /// made only for an action with one (most rules that fire score, and have none).
    private func apply(_ action: RuleAction, name: String, why: [String], values: () -> [String: String],
                       greylist: GreylistCheck?, out: inout StageOutcome) -> Bool {
        let explanation = why.joined(separator: "; ")
        func fire(_ what: String, warn: Bool = false) {
            out.fired.append(FiredRule(name: name, action: what, explanation: explanation, warnOnly: warn))
        }
        switch action {
        case .accept:
            fire("accept")
            out.decision = .accept(rule: name)
            return true
        case .reject(let t):
            let r = t.render(values())
            fire("reject: \(r)")
            out.decision = .reject(r, rule: name)
            return true
        case .tempfail(let t):
            let r = t.render(values())
            fire("tempfail: \(r)")
            out.decision = .tempfail(r, rule: name)
            return true
        case .disconnect(let t):
            let r = t.render(values())
            fire("disconnect: \(r)")
            out.decision = .disconnect(r, rule: name)
            return true
        case .quarantine(let reason):
            let text = reason.map { ReplyTemplate.fill($0, values()) }
            fire("quarantine" + (text.map { ": \($0)" } ?? ""))
            out.decision = .quarantine(rule: name, reason: text)
            return true
        case .discard:
            fire("discard")
            out.decision = .discard(rule: name)
            return true
        case .addHeader(let h):
            let header = ReplyTemplate.fill(h, values())
            fire("add-header: \(header)")
            out.headers.append(header)
            return false
        case .tag:
            fire("tag")
            out.tag = true
            return false
        case .score(let n):
            fire("score \(n >= 0 ? "+" : "")\(formatScore(n))")
            out.scoreDelta += n
            out.symbols.append((name, n))
            return false
        case .greylist(let t):
            // Not looked up (a dry run): counts as a first attempt.
            let check = greylist ?? GreylistCheck(outcome: .new, triplet: "", detail: "not looked up (no greylist state here): a first attempt")
            out.greylist = check
            let because = explanation.isEmpty ? check.detail : "\(explanation); \(check.detail)"
            if check.passes {
                out.fired.append(FiredRule(name: name, action: "greylist: passed (\(check.outcome.rawValue))", explanation: because, warnOnly: false))
                return false
            }
            var v = values()
            v["retry"] = String(Int(check.retryIn.rounded(.up)))
            let r = t.render(v)
            out.fired.append(FiredRule(name: name, action: "greylist: \(r)", explanation: because, warnOnly: false))
            out.decision = .tempfail(r, rule: name)
            return true
        case .warn(let inner):
            var what = "warn"
            if let inner {
                switch inner {
                case .reject(let t), .tempfail(let t), .disconnect(let t), .greylist(let t): what = "warn: would \(inner.name): \(t.render(values()))"
                default: what = "warn: would \(inner.name)"
                }
            }
            fire(what, warn: true)
            return false
        }
    }

    func templateValues(_ f: SessionFacts, rule: String, why: [String], value: String?, score: Double) -> [String: String] {
        var v: [String: String] = [:]
        v["client_ip"] = f.clientIP
        v["client_name"] = f.clientName ?? "unknown"
        v["helo"] = f.helo ?? ""
        v["sender"] = f.mailFrom.map { $0.description.isEmpty ? "<>" : $0.description } ?? ""
        v["recipient"] = f.recipient?.description ?? f.recipients.first?.description ?? ""
        v["country"] = f.country ?? "unknown"
        v["asn"] = f.asn.map { "AS\($0)" } ?? "unknown"
        v["rule"] = rule
        v["size"] = f.messageSize.map(String.init) ?? f.mailParameters?.size.map(String.init) ?? ""
        v["score"] = formatScore(score)
        v["hostname"] = identity.hostname
        v["value"] = value ?? ""
        v["match"] = why.last ?? ""
        v["virus"] = f.virus ?? ""
        v["from_domain"] = f.dmarc?.domain ?? f.fromDomains.first ?? ""
        v["dmarc_policy"] = f.dmarc?.policy ?? "none"
        return v
    }

    // MARK: conditions

    /// What matching collected: the reasons, an action from an action table,
    /// and the value column of the table entry that matched ({value}).
    struct MatchContext {
        var why: [String] = []
        var tableAction: (RuleAction?, String)?
        /// Further table entries that matched (scoring tables: every hit counts),
        /// with their reasons; applied after the first until one decides.
        var moreTableActions: [(action: RuleAction?, name: String, why: String)] = []
        var value: String?
        /// Added to the rule's name for its symbol (a signal's name).
        var label: String?
        /// The score so far, including this stage's earlier rules.
        var score: Double = 0
    }

    func test(_ c: Condition, _ f: SessionFacts, _ ctx: inout MatchContext) -> Truth {
        switch c {
        case .always:
            ctx.why.append("always")
            return .yes
        case .not(let inner):
            var ignored = MatchContext()
            ignored.score = ctx.score
            switch test(inner, f, &ignored) {
            case .yes: return .no
            case .no:
                ctx.why.append("not (\(describe(inner)))")
                return .yes
            case .unknown(let r): return .unknown(r)
            }
        case .all(let items):
            var unknown: String?
            for item in items {
                switch test(item, f, &ctx) {
                case .no: return .no
                case .unknown(let r): unknown = unknown ?? r
                case .yes: break
                }
            }
            return unknown.map { .unknown($0) } ?? .yes
        case .any(let items):
            var unknown: String?
            for item in items {
                switch test(item, f, &ctx) {
                case .yes: return .yes
                case .unknown(let r): unknown = unknown ?? r
                case .no: break
                }
            }
            return unknown.map { .unknown($0) } ?? .no
        case .clientIP(let m):
            guard let ip = f.clientAddress else { return .no }
            switch m {
            case .table(let name, .cidr(let t)):
                guard let hit = t.lookup(ip) else { return .no }
                ctx.value = hit.value
                ctx.why.append("client \(f.clientIP) is in <\(name)> (\(hit.key), \(t.path):\(hit.line))")
                return .yes
            case .table(let name, .list(let t)):
                guard let hit = t.lookup(exact: ip.description) else { return .no }
                ctx.value = hit.value
                ctx.why.append("client \(f.clientIP) is in <\(name)> (\(t.path):\(hit.line))")
                return .yes
            case .networks(let nets):
                guard let n = nets.first(where: { $0.contains(ip) }) else { return .no }
                ctx.why.append("client \(f.clientIP) is in \(n)")
                return .yes
            default:
                return .no
            }
        case .clientName(let m):
            if let failure = dnsFailure(f) { return .unknown(failure) }
            let name = f.clientName ?? "unknown"
            return match(m, name, as: .domain, label: "client name", &ctx)
        case .ptr(let m):
            if let failure = dnsFailure(f) { return .unknown(failure) }
            for name in f.ptrNames {
                if case .yes = match(m, name, as: .domain, label: "PTR name", &ctx) { return .yes }
            }
            return .no
        case .fcrdns:
            if let failure = dnsFailure(f) { return .unknown(failure) }
            guard f.fcrdns else { return .no }
            ctx.why.append("client name \(f.clientName ?? "") is forward-confirmed")
            return .yes
        case .helo(let m):
            guard let h = f.helo else { return .no }
            return match(m, h, as: .domain, label: "HELO", &ctx)
        case .heloCheck(let check):
            guard let h = f.helo else { return .no }
            guard heloIs(check, h, f) else { return .no }
            ctx.why.append("HELO \(h) is \(check.rawValue)")
            return .yes
        case .nullSender:
            guard case .null? = f.mailFrom else { return .no }
            ctx.why.append("null sender <>")
            return .yes
        case .sender(let m):
            guard case .mailbox(let box)? = f.mailFrom else { return .no }
            return match(m, box.description, as: .address, label: "sender", &ctx)
        case .rcpt(let m):
            let targets = f.recipient.map { [$0] } ?? f.recipients
            guard !targets.isEmpty else { return .no }
            // At data, "rcpt X" holds when any recipient matches.
            for box in targets {
                if case .yes = match(m, box.description, as: .address, label: "recipient", &ctx) { return .yes }
            }
            return .no
        case .country(let m):
            guard let cc = f.country else { return .no }
            return match(m, cc, as: .exact, label: "country", &ctx)
        case .asn(let set):
            guard let a = f.asn, set.contains(a) else { return .no }
            ctx.why.append("client network is AS\(a)")
            return .yes
        case .size(let cmp, let n):
            guard let s = f.messageSize, cmp.holds(Double(s), n) else { return .no }
            ctx.why.append("size \(s) \(cmp.rawValue) \(Int(n))")
            return .yes
        case .declaredSize(let cmp, let n):
            guard let s = f.mailParameters?.size, cmp.holds(Double(s), n) else { return .no }
            ctx.why.append("declared SIZE=\(s) \(cmp.rawValue) \(Int(n))")
            return .yes
        case .rcptCount(let cmp, let n):
            let count = f.recipients.count + (f.recipient == nil ? 0 : 1)
            guard cmp.holds(Double(count), n) else { return .no }
            ctx.why.append("\(count) recipient(s) \(cmp.rawValue) \(Int(n))")
            return .yes
        case .spamScore(let cmp, let n):
            if let why = f.scoreFailure { return .unknown(why) }
            guard cmp.holds(ctx.score, n) else { return .no }
            ctx.why.append("spam score \(formatScore(ctx.score)) \(cmp.rawValue) \(formatScore(n))")
            return .yes
        case .headerPresent(let name):
            guard let field = f.headers.first(where: { $0.name.caseInsensitiveCompare(name) }) else { return .no }
            ctx.why.append("header \(field.name) is present")
            return .yes
        case .header(let name, let re):
            for field in f.headers where field.name.caseInsensitiveCompare(name) {
                if re.matches(field.value) {
                    ctx.why.append("header \(field.name): \(field.value.prefix(80)) matches /\(re.pattern)/")
                    return .yes
                }
            }
            return .no
        case .headerTable(let t):
            let hits = t.allMatches(fields: f.headers)
            guard let (entry, line) = hits.first else { return .no }
            ctx.why.append("\(line.prefix(80)) matches /\(entry.regex.pattern)/ (\(t.path):\(entry.line))")
            ctx.tableAction = (entry.action, entryName(entry, t))
            ctx.moreTableActions = hits.dropFirst().map { e, l in
                (e.action, entryName(e, t), "\(l.prefix(80)) matches /\(e.regex.pattern)/ (\(t.path):\(e.line))")
            }
            return .yes
        case .tls:
            guard f.tls else { return .no }
            ctx.why.append("TLS is in use")
            return .yes
        case .attachmentName(let globs):
            for a in f.attachments {
                if let name = a.filename, let g = globs.first(where: { Glob.matches($0, name.lowercased()) }) {
                    ctx.why.append("attachment \(name) matches \(g)")
                    ctx.value = name
                    return .yes
                }
                for entry in a.entries {
                    let base = String(entry.split(separator: "/").last ?? Substring(entry))
                    if let g = globs.first(where: { Glob.matches($0, base.lowercased()) }) {
                        ctx.why.append("\(entry) inside \(a.filename ?? "a zip attachment") matches \(g)")
                        ctx.value = "\(a.filename ?? "archive")/\(entry)"
                        return .yes
                    }
                }
            }
            return .no
        case .attachmentType(let globs):
            for a in f.attachments {
                for t in [a.declaredType] + (a.sniffedType.map { [$0] } ?? []) {
                    if let g = globs.first(where: { Glob.matches($0, t) }) {
                        ctx.why.append("attachment \(a.filename ?? "(unnamed)") is \(t) (\(g))")
                        ctx.value = a.filename
                        return .yes
                    }
                }
            }
            return .no
        case .attachmentMismatch:
            guard let a = f.attachments.first(where: \.isMismatched) else { return .no }
            ctx.why.append("attachment \(a.filename ?? "(unnamed)") declared \(a.declaredType) but is \(a.sniffedType ?? "?")")
            ctx.value = a.filename
            return .yes
        case .body(let re):
            guard re.matches(f.bodyText) else { return .no }
            ctx.why.append("body text matches /\(re.pattern)/")
            return .yes
        case .bodyTable(let t):
            let hits = t.allMatches(f.bodyText)
            guard let e = hits.first else { return .no }
            ctx.why.append("body text matches /\(e.regex.pattern)/ (\(t.path):\(e.line))")
            ctx.tableAction = (e.action, entryName(e, t))
            ctx.moreTableActions = hits.dropFirst().map { ($0.action, entryName($0, t), "body text matches /\($0.regex.pattern)/ (\(t.path):\($0.line))") }
            return .yes
        case .uri(let m):
            for url in f.urls {
                let key: String
                switch m {
                case .table(_, .list), .literals: key = URLExtractor.host(url) ?? url
                default: key = url
                }
                if case .yes = match(m, key, as: .domain, label: "URL", &ctx) { return .yes }
            }
            return .no
        case .spf(let results, let helo):
            return testSPF(results, helo: helo, f, &ctx)
        case .milter(let name, let verdicts):
            return testMilter(name, verdicts, f, &ctx)
        case .dkim(let results):
            return testDKIM(results, f, &ctx)
        case .dkimDomain(let m):
            return testDKIMDomain(m, f, &ctx)
        case .dmarc(let results):
            return testDMARC(results, f, &ctx)
        case .dmarcPolicy(let policies):
            return testDMARCPolicy(policies, f, &ctx)
        case .dmarcDisposition(let dispositions):
            return testDMARCDisposition(dispositions, f, &ctx)
        case .arc(let results):
            return testARC(results, f, &ctx)
        case .signal(let names):
            // The first in name order, so the symbol does not depend on how the set iterates.
            // Found among the signals that fired (a few), not by sorting the rule's names every time.
            var first: String?
            for name in f.signals.keys where names.contains(name) && (first == nil || name < first!) { first = name }
            guard let hit = first else { return .no }
            ctx.label = hit
            ctx.value = hit
            ctx.why.append("\(hit): \(f.signals[hit]!)")
            return .yes
        case .from(let m):
            for a in f.fromAddresses {
                if case .yes = match(m, a, as: .address, label: "From address", &ctx) { return .yes }
            }
            return .no
        case .fromDomain(let m):
            for d in f.fromDomains {
                if case .yes = match(m, d, as: .domain, label: "From domain", &ctx) { return .yes }
            }
            return .no
        case .dnsList(let list):
            let values: [String]
            switch list.target {
            case .client: values = [f.clientIP]
            case .sender:
                guard case .mailbox(let box)? = f.mailFrom, !box.isAddressLiteral else { return .no }
                values = [box.domain]
            case .uri: values = f.urls.compactMap(URLExtractor.host)
            }
            for v in values {
                for q in list.queries(for: v) {
                    switch f.dnsListAnswers[q] {
                    case .listed(let answers)?:
                        if let hit = list.listed(answers) {
                            ctx.why.append("\(v) is listed in \(list.zone) (\(hit))")
                            ctx.value = hit.description
                            return .yes
                        }
                    case .failed(let why)?:
                        return .unknown("DNS list \(list.zone): \(why)")
                    case .notListed?:
                        continue
                    case nil:
                        if f.dnsListsOffline { continue }
                        return .unknown("DNS list \(list.zone) was not looked up")
                    }
                }
            }
            return .no
        case .virus:
            if let failure = f.scanFailure { return .unknown("virus scan failed: \(failure)") }
            if !f.virusScanned { return .unknown("virus scan: no scanner ran") }
            guard let v = f.virus else { return .no }
            ctx.why.append("virus \(v) found")
            return .yes
        }
    }

    func dnsFailure(_ f: SessionFacts) -> String? {
        if !f.dnsChecked { return "reverse DNS was not looked up" }
        return f.dnsFailure.map { "DNS lookup failed: \($0)" }
    }

    /// How a value is looked up in a list: as a domain, an address, or as is.
    enum ListKey {
        case domain, address, exact

        func lookup(_ t: ListTable, _ v: String) -> TableHit? {
            switch self {
            case .domain: return t.lookup(domain: v)
            case .address: return t.lookup(address: v)
            case .exact: return t.lookup(exact: v)
            }
        }
    }

    /// One matcher against one value, recording why it matched.
    func match(_ m: Matcher, _ value: String, as key: ListKey, label: String, _ ctx: inout MatchContext) -> Truth {
        switch m {
        case .table(let name, .list(let t)):
            guard let hit = key.lookup(t, value) else { return .no }
            ctx.value = hit.value
            ctx.why.append("\(label) \(value) is in <\(name)> (\(hit.key), \(t.path):\(hit.line))")
            return .yes
        case .table(let name, .regexp(let t)):
            guard let e = t.firstMatch(value) else { return .no }
            ctx.why.append("\(label) \(value) matches <\(name)> /\(e.regex.pattern)/ (\(t.path):\(e.line))")
            ctx.tableAction = (e.action, "")
            return .yes
        case .literals(let t):
            guard let hit = key.lookup(t, value) else { return .no }
            ctx.value = hit.value
            ctx.why.append("\(label) \(value) matches \(hit.key)")
            return .yes
        case .regex(let re):
            guard re.matches(value) else { return .no }
            ctx.why.append("\(label) \(value) matches /\(re.pattern)/")
            return .yes
        case .table(_, .cidr), .networks:
            return .no
        }
    }

    func heloIs(_ check: HeloCheck, _ h: String, _ f: SessionFacts) -> Bool {
        let lower = h.lowercased()
        let isLiteral = lower.hasPrefix("[") && lower.hasSuffix("]")
        switch check {
        case .literal:
            return isLiteral
        case .bareIP:
            return IPAddress(lower) != nil
        case .unqualified:
            return !isLiteral && IPAddress(lower) == nil && !lower.contains(".")
        case .invalid:
            if isLiteral {
                let inner = String(lower.dropFirst().dropLast())
                let addr = inner.hasPrefix("ipv6:") ? String(inner.dropFirst(5)) : inner
                return IPAddress(addr) == nil
            }
            if IPAddress(lower) != nil { return false }  // bare IP: its own check
            return !Self.isHostName(lower)
        case .ours:
            let name = lower.hasSuffix(".") ? String(lower.dropLast()) : lower
            if name == identity.hostname.lowercased() || identity.domains.contains(name) { return true }
            let addr = isLiteral ? String(name.dropFirst().dropLast()).replacingPrefix("ipv6:") : name
            if let ip = IPAddress(addr) {
                return identity.addresses.contains { IPAddress($0) == ip } && ip.description != f.clientIP
            }
            return false
        }
    }

    /// RFC 1123 host name syntax (letters, digits, hyphens; labels of 1–63
    /// not starting or ending with a hyphen; a trailing dot allowed), plus
    /// UTF-8 labels as SMTPUTF8 permits.
    static func isHostName(_ name: String) -> Bool {
        var labelLength = 0
        var last: UInt8 = 46
        var total = 0
        for b in name.utf8 {
            total += 1
            if b == 46 {
                guard labelLength > 0, last != 45 else { return false }
                labelLength = 0
            } else {
                let ok = (b >= 97 && b <= 122) || (b >= 65 && b <= 90) || (b >= 48 && b <= 57) || b >= 0x80 || (b == 45 && labelLength > 0)
                guard ok else { return false }
                labelLength += 1
                guard labelLength <= 63 else { return false }
            }
            last = b
        }
        return total > 0 && total <= 255 && last != 45 && (labelLength > 0 || total > 1)
    }

    func describe(_ c: Condition) -> String {
        switch c {
        case .always: return "all"
        case .not(let i): return "not \(describe(i))"
        case .all(let i): return i.map(describe).joined(separator: " and ")
        case .any(let i): return i.map(describe).joined(separator: " or ")
        case .clientIP: return "client …"
        case .clientName: return "client-name …"
        case .ptr: return "ptr …"
        case .fcrdns: return "fcrdns"
        case .helo: return "helo …"
        case .heloCheck(let h): return "helo \(h.rawValue)"
        case .sender: return "sender …"
        case .nullSender: return "null-sender"
        case .rcpt(.table(let n, _)): return "rcpt <\(n)>"
        case .rcpt: return "rcpt …"
        case .country: return "country …"
        case .asn: return "asn …"
        case .size(let c, let n): return "size \(c.rawValue) \(Int(n))"
        case .declaredSize(let c, let n): return "declared-size \(c.rawValue) \(Int(n))"
        case .rcptCount(let c, let n): return "rcpt-count \(c.rawValue) \(Int(n))"
        case .spamScore(let c, let n): return "spam-score \(c.rawValue) \(formatScore(n))"
        case .headerPresent(let h): return "header \(h)"
        case .header(let h, _): return "header \(h) ~ …"
        case .headerTable: return "header <table>"
        case .tls: return "tls"
        case .milter(let n, let v): return "milter \(n) \(v.sorted().joined(separator: ", "))"
        case .virus: return "virus"
        case .attachmentName: return "attachment-name …"
        case .attachmentType: return "attachment-type …"
        case .attachmentMismatch: return "attachment-mismatch"
        case .body: return "body ~ …"
        case .bodyTable: return "body <table>"
        case .uri: return "uri …"
        case .dnsList(let l): return "\(l.target == .client ? "dnsbl" : l.target == .uri ? "uribl" : "sender-dnsbl") \(l.zone)"
        case .spf(let r, let helo): return "\(helo ? "spf-helo" : "spf") \(r.sorted().joined(separator: ", "))"
        case .dkim(let r): return "dkim \(r.sorted().joined(separator: ", "))"
        case .dkimDomain: return "dkim-domain …"
        case .dmarc(let r): return "dmarc \(r.sorted().joined(separator: ", "))"
        case .dmarcPolicy(let r): return "dmarc-policy \(r.sorted().joined(separator: ", "))"
        case .dmarcDisposition(let r): return "dmarc-disposition \(r.sorted().joined(separator: ", "))"
        case .arc(let r): return "arc \(r.sorted().joined(separator: ", "))"
        case .from: return "from …"
        case .fromDomain: return "from-domain …"
        case .signal(let n): return "signal \(n.sorted().joined(separator: ", "))"
        }
    }
}

func formatScore(_ v: Double) -> String {
    v == v.rounded() ? String(Int(v)) : String((v * 100).rounded() / 100)
}

extension String {
    /// ASCII case-insensitive equality without allocating (header names are ASCII).
    func caseInsensitiveCompare(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        for (a, b) in zip(utf8, other.utf8) where a != b {
            let la = a >= 65 && a <= 90 ? a + 32 : a
            let lb = b >= 65 && b <= 90 ? b + 32 : b
            if la != lb { return false }
        }
        return true
    }

    func replacingPrefix(_ p: String) -> String { hasPrefix(p) ? String(dropFirst(p.count)) : self }
}
