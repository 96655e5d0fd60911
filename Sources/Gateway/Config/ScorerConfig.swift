import Foundation

/// One `[[scorers]]` entry: an external spam scorer (rspamd or spamd)
/// whose symbols join mxgate's, scaled by `weight`.
public struct ScorerSettings: Sendable, Equatable {
    public enum Kind: String, Sendable { case rspamd, spamd }
    public var kind: Kind
    public var host: String
    public var port: Int
    public var timeout: Double = 10
    /// Each of the scorer's symbol scores is multiplied by this before it joins the spam score.
    public var weight = 1.0
    /// The scorer is down, slow or answers nonsense: tempfail (451, the default) or carry on without it.
    public var failOpen = false
    /// Larger messages are not sent (scored without this scorer, with a warning).
    public var maxSize = 2 * 1024 * 1024

    public var label: String { "\(kind.rawValue) \(host):\(port)" }
}

extension ConfigReader {
    static let scorerKeys: Set<String> = ["type", "address", "timeout", "weight", "on_error", "max_size"]

    /// `[[scorers]]`: an array of tables, each checked like a section.
    mutating func readScorers(_ node: TOMLNode, _ c: inout GatewayConfig) {
        guard case .array(let items) = node.value else {
            error(node.position, "scorers must be written as [[scorers]] tables")
            return
        }
        for item in items {
            guard case .table(let t) = item.value else {
                error(item.position, "each [[scorers]] entry must be a table")
                continue
            }
            for k in t.keys where !Self.scorerKeys.contains(k) {
                error(t.keyPositions[k] ?? item.position, "unknown key '\(k)' in [[scorers]]; known keys are \(Self.scorerKeys.sorted().joined(separator: ", "))")
            }
            var s = Section(name: "scorers", table: t)
            guard let kind = choice(&s, "type", ["rspamd", "spamd"]).flatMap(ScorerSettings.Kind.init) else {
                if t["type"] == nil { error(item.position, "[[scorers]] needs type = \"rspamd\" or \"spamd\"") }
                continue
            }
            guard let address = string(&s, "address") else {
                error(item.position, "[[scorers]] needs address = \"HOST:PORT\" (rspamd's normal worker listens on 11333, spamd on 783)")
                continue
            }
            guard let (host, port) = Self.parseHostPort(address) else {
                error(t["address"]!.position, "[[scorers]] address must be HOST:PORT, such as \"127.0.0.1:11333\"")
                continue
            }
            var e = ScorerSettings(kind: kind, host: host, port: port)
            if let d = duration(&s, "timeout") { e.timeout = d }
            if let w = number(&s, "weight", min: 0) { e.weight = w }
            if let v = choice(&s, "on_error", ["tempfail", "accept"]) { e.failOpen = v == "accept" }
            if let n = size(&s, "max_size") { e.maxSize = n }
            c.scorers.append(e)
        }
    }
}
