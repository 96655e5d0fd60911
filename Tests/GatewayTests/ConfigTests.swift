import Foundation
import Testing
import Policy

@testable import Gateway

struct ConfigTests {
    func errors(_ text: String) -> [String] {
        do {
            _ = try GatewayConfig.parse(text, file: "t.toml", absolutePath: "/etc/mxgate/t.toml")
            return []
        } catch let e as ConfigErrors {
            return e.errors.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    let minimal = """
        [relay]
        domains = ["example.com"]
        """

    /// Sizes come from the admin's files: out-of-range or odd numbers are
    /// refused, never trapped on (the policy fuzzer found one that was).
    @Test func sizesParseWithoutTrapping() {
        #expect(Policy.parseSize("26214400") == 26_214_400)
        #expect(Policy.parseSize("25M") == 25 * 1024 * 1024)
        #expect(Policy.parseSize("1.5k") == 1536)
        #expect(Policy.parseSize("0") == 0)
        for bad in ["99999999999999999999G", "9999999999G", "99999999999999999999", "INFK", "nanM", "0x10K", "-1", "1.2.3K", ".K", "K", "", "1e3K"] {
            #expect(Policy.parseSize(bad) == nil, "\(bad)")
        }
        #expect(errors(minimal + "\n[limits]\nmessage_size = \"99999999999999999G\"\n").contains { $0.contains("must be a positive size") })
        #expect(errors(minimal + "\n[limits]\nmessage_size = \"0\"\n").contains { $0.contains("must be a positive size") })
    }

    @Test func minimalConfigHasDefaults() throws {
        let c = try GatewayConfig.parse(minimal, file: "t.toml", absolutePath: "/etc/mxgate/t.toml")
        #expect(c.listen == [GatewayConfig.Listen(host: "127.0.0.1", port: 2525)])
        #expect(c.mode == .proxy)
        #expect(c.downstream == .maildir("/etc/mxgate/var/mail"))
        #expect(c.auditPath == "/etc/mxgate/var/audit.log")
        #expect(c.rulesDirectory == "/etc/mxgate/rules")
        #expect(c.limits.messageSize == 26_214_400)
    }

    @Test func fullConfig() throws {
        let c = try GatewayConfig.parse("""
            [server]
            listen = ["127.0.0.1:25", "[::1]:25"]   # both
            hostname = "mx.example.org"
            [limits]
            message_size = "10M"
            command_timeout = "2m"
            bare_newline = "normalize"
            [relay]
            downstream = "10.0.0.5:2525"
            domains = ["Example.org", ".example.org"]
            tls = "required"
            [tls]
            certificate = "cert.pem"
            key = "/abs/key.pem"
            [audit]
            path = "/var/log/mxgate/audit.log"
            """, file: "t.toml", absolutePath: "/etc/mxgate/t.toml")
        #expect(c.listen.map(\.description) == ["127.0.0.1:25", "[::1]:25"])
        #expect(c.limits.messageSize == 10 * 1024 * 1024)
        #expect(c.limits.commandTimeout == 120)
        #expect(c.bareNewline == .normalize)
        #expect(c.downstream == .smtp(host: "10.0.0.5", port: 2525))
        #expect(c.domains == ["example.org", ".example.org"])
        #expect(c.downstreamTLS == .required)
        #expect(c.tlsCertificate == "/etc/mxgate/cert.pem")
        #expect(c.tlsKey == "/abs/key.pem")
        #expect(c.auditPath == "/var/log/mxgate/audit.log")
    }

    static let broken: [(String, String)] = [
        ("[relay]\ndomains = [\"example.com\"]\nfoo = 1", "t.toml:3:1: unknown key 'foo' in [relay]"),
        ("[relay]\ndomains = [\"example.com\"]\n[srever]\n", "t.toml:3:1: unknown section [srever]"),
        ("[relay]\ndomains = \"example.com\"", "t.toml:2:11: [relay] domains must be an array of strings, not a string"),
        ("[relay]\ndomains = [\"example.com\", 5]", "t.toml:2:27: [relay] domains must contain only strings"),
        ("[relay]\ndomains = [\"example.com\"]\nmode = \"teleport\"", "t.toml:3:8: [relay] mode must be one of"),
        ("[relay]\ndomains = [\"example.com\"]\ndownstream = \"nowhere\"", "t.toml:3:14: [relay] downstream must be"),
        ("[relay]\ndomains = [\"example.com\"]\n[limits]\nrecipients = 10", "t.toml:4:14: [limits] recipients must be at least 100"),
        ("[relay]\ndomains = [\"example.com\"]\n[limits]\nmessage_size = \"lots\"", "t.toml:4:16: [limits] message_size must be a positive size"),
        ("[relay]\ndomains = [\"example.com\"]\n[server]\nlisten = [\"localhost\"]", "t.toml:4:11: [server] listen: 'localhost' is not HOST:PORT"),
        ("[relay]\ndomains = [\"example.com\"\n", "t.toml:3:1: unterminated array"),
        ("[relay]\ndomains = example.com", "t.toml:2:11: invalid value 'example.com' (strings need quotes)"),
        ("[relay]\ndomains = [\"example.com\"]\ndomains = []", "t.toml:3:1: key 'domains' defined twice"),
        ("[relay]\ndomains = [\"bad domain\"]", "t.toml:2:12: [relay] domains: 'bad domain' is not a domain name"),
        ("[server]\nhostname = \"mx\"", "t.toml:1:1: [relay] domains is empty"),
        ("[relay]\ndomains = [\"example.com\"]\n[tls]\ncertificate = \"c.pem\"", "t.toml:4:1: [tls] needs both certificate and key"),
    ]

    @Test(arguments: broken)
    func errorsNameFileLineAndColumn(_ text: String, _ expected: String) {
        let errs = errors(text)
        #expect(errs.contains { $0.hasPrefix(expected) }, "got \(errs)")
    }

    @Test func allErrorsAreReportedAtOnce() {
        let errs = errors("[relay]\ndomains = [\"example.com\"]\nfoo = 1\nbar = 2\n[limits]\nerrors = \"x\"")
        #expect(errs.count == 3)
    }
}

struct TOMLTests {
    @Test func parsesTheSubsetMxgateUses() throws {
        let t = try TOMLParser.parse("""
            # comment
            a = "x\\ty"   # trailing
            b = 'lit\\eral'
            c = 1_000
            d = 2.5
            e = true
            f = [1, 2,
                 3,]
            g = { h = "i", j.k = 2 }
            [s.t]
            u = "v"
            [[r]]
            n = 1
            [[r]]
            n = 2
            """)
        guard case .string(let a) = t["a"]?.value else { Issue.record(); return }
        #expect(a == "x\ty")
        guard case .string(let b) = t["b"]?.value else { Issue.record(); return }
        #expect(b == "lit\\eral")
        guard case .integer(1000) = t["c"]?.value else { Issue.record(); return }
        guard case .array(let f) = t["f"]?.value else { Issue.record(); return }
        #expect(f.count == 3)
        #expect(f[2].position == TOMLPosition(line: 8, column: 6))
        guard case .table(let s) = t["s"]?.value, case .table(let st) = s["t"]?.value, case .string("v") = st["u"]?.value else {
            Issue.record(); return
        }
        guard case .array(let r) = t["r"]?.value else { Issue.record(); return }
        #expect(r.count == 2)
    }

    @Test(arguments: ["a = \"\"\"x\"\"\"", "a = ", "a = \"unterminated", "[a", "a = [1 2]", "= 1", "a = 1 b"])
    func refusesBrokenInput(_ text: String) {
        #expect(throws: TOMLError.self) { _ = try TOMLParser.parse(text) }
    }
}
