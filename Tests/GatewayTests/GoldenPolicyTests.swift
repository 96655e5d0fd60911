import Foundation
import Policy
import SMTPProtocol
import Testing

@testable import Gateway

/// Golden policy cases: each file under Golden/ is an envelope, a message, a
/// policy (and its tables) and the verdict expected from a dry run. A new
/// case is a new file, not new code.
///
///     # what the case shows
///     client-ip: 192.0.2.7          (also: helo, from, to, client-name, country, asn, tls, domains)
///     --- policy
///     at connect match client 192.0.2.0/24 reject "554 5.7.1 Go away"
///     --- rules/some.table          (any number of table files)
///     --- message
///     Subject: hi
///     --- expect
///     verdict: rejected             (also: stage, reply, rules, fired, score, header, refused)
struct GoldenCase: CustomStringConvertible, Sendable {
    var name: String
    var fields: [String: String] = [:]
    var sections: [String: String] = [:]
    var expect: [String: String] = [:]
    var description: String { name }

    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static func all() -> [GoldenCase] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return files.filter { $0.hasSuffix(".case") }.sorted().map { load(folder.appendingPathComponent($0)) }
    }

    static func load(_ url: URL) -> GoldenCase {
        var c = GoldenCase(name: url.deletingPathExtension().lastPathComponent)
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        var section: String?
        var body: [String] = []
        func close() {
            guard let s = section else { return }
            if s == "expect" {
                for line in body where line.contains(":") {
                    let (k, v) = split(line)
                    c.expect[k] = v
                }
            } else {
                c.sections[s] = body.joined(separator: "\n") + "\n"
            }
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("--- ") {
                close()
                section = String(line.dropFirst(4)).trimmingCharacters(in: .whitespaces)
                body = []
            } else if section != nil {
                body.append(line)
            } else if !line.hasPrefix("#"), line.contains(":") {
                let (k, v) = split(line)
                c.fields[k] = v
            }
        }
        close()
        return c
    }

    static func split(_ line: String) -> (String, String) {
        let i = line.firstIndex(of: ":")!
        return (String(line[..<i]).trimmingCharacters(in: .whitespaces),
                String(line[line.index(after: i)...]).trimmingCharacters(in: .whitespaces))
    }
}

struct GoldenPolicyTests {
    @Test func thereAreEnoughCases() {
        #expect(GoldenCase.all().count >= 40)
    }

    @Test(arguments: GoldenCase.all())
    func golden(_ c: GoldenCase) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mxgate-golden-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("policies"), withIntermediateDirectories: true)
        for (name, text) in c.sections where name != "message" {
            let path = name == "policy" ? "policies/test.policy" : name
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        let domains = (c.fields["domains"] ?? "example.com").split(separator: " ").map(String.init)
        let identity = GatewayIdentity(hostname: c.fields["hostname"] ?? "mx.example.com", domains: domains, addresses: ["192.0.2.25"])
        let policy: PolicySet
        do {
            policy = try PolicyLoader.load(policies: dir.appendingPathComponent("policies").path, base: dir.path, identity: identity)
        } catch {
            if let want = c.expect["error"] {
                #expect(error.diagnostics.contains { $0.description.contains(want) }, "\(error)")
            } else {
                Issue.record("policy did not load: \(error)")
            }
            return
        }
        if let want = c.expect["warning"] {
            #expect(policy.warnings.contains { $0.description.contains(want) }, "\(policy.warnings)")
        }
        if c.expect["error"] != nil {
            Issue.record("expected a load error, the policy loaded")
            return
        }
        let dry = DryRun(policy: policy, domains: domains, messageSizeLimit: Int(c.fields["size-limit"] ?? "") ?? SMTPLimits().messageSize)
        var input = DryRun.Input(clientIP: c.fields["client-ip"] ?? "198.51.100.1", helo: c.fields["helo"] ?? "mail.sender.example",
                                 from: c.fields["from"] ?? "alice@sender.example",
                                 to: (c.fields["to"] ?? "bob@example.com").split(separator: " ").map(String.init),
                                 message: Array((c.sections["message"] ?? "From: alice@sender.example\nSubject: test\n\nhello\n").utf8))
        input.clientName = c.fields["client-name"]
        input.country = c.fields["country"]
        input.asn = c.fields["asn"].flatMap { Int($0) }
        input.tls = c.fields["tls"] == "yes"
        let report = await dry.run(input)
        let e = c.expect
        if let v = e["verdict"] { #expect(report.verdict.rawValue == v, "verdict") }
        if let s = e["stage"] { #expect((report.stage ?? "none") == s, "stage") }
        if let r = e["reply"] { #expect(report.reply.description.hasPrefix(r), "reply was \(report.reply)") }
        if let r = e["rules"] {
            #expect(report.record.rules == r.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }, "rules were \(report.record.rules)")
        }
        if let f = e["fired"] {
            let names = report.fired.map { "\($0.stage) \($0.rule.action.split(separator: ":").first ?? "")" }
            #expect(names == f.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }, "fired were \(names)")
        }
        if let s = e["score"] { #expect(report.spamScore == Double(s), "score was \(String(describing: report.spamScore))") }
        if let h = e["header"] { #expect(report.addedHeaders.contains { $0.hasPrefix(h) }, "headers were \(report.addedHeaders)") }
        if let r = e["refused"] {
            #expect(report.refusedRecipients.map(\.0) == r.split(separator: " ").map(String.init), "refused were \(report.refusedRecipients)")
        }
        if let w = e["warnings"] { #expect(report.record.warnings.contains { $0.contains(w) }, "warnings were \(report.record.warnings)") }
        if let x = e["explanation"] { #expect(report.fired.contains { $0.rule.explanation.contains(x) }, "explanations \(report.fired.map(\.rule.explanation))") }
    }
}
