import Foundation
import Testing

import MailMessage
@testable import Policy

/// The body rules' literal prefilter: the strings found must be ones no
/// match can do without, and a table with the prefilter must find exactly
/// what running every regular expression finds.
struct RegexLiteralsTests {
    @Test func requiredStringsOfCommonShapes() {
        #expect(RegexLiterals.required("next of kin") == ["next of kin"])
        #expect(RegexLiterals.required("(you have|you've) won .{0,40}(lottery|prize)") == ["you have won ", "you've won "])
        #expect(RegexLiterals.required("\\<risk[- ]free\\>") == ["risk"], "the first of equally long strings")
        #expect(RegexLiterals.required("100% (free|guaranteed)") == ["100% free", "100% guaranteed"], "a group of plain words joins the text before it")
        #expect(RegexLiterals.required("(online casino|free spins|no deposit bonus)") == ["online casino", "free spins", "no deposit bonus"])
        #expect(RegexLiterals.required("Dear FRIEND") == ["dear friend"], "lower-cased: the text is searched folded")
        #expect(RegexLiterals.required("abc|de") == nil, "an alternative without a long enough string: always run")
        #expect(RegexLiterals.required("(abc)?xy") == nil, "an optional group is not required")
        #expect(RegexLiterals.required("colou?r chart") == ["r chart"], "a character that may be absent splits the run")
        #expect(RegexLiterals.required("[0-9]+ ?(million|billion)") == ["million", "billion"])
        #expect(RegexLiterals.required("caf\u{E9} gratuit") == ["gratuit"] || RegexLiterals.required("caf\u{E9} gratuit") == nil)
        #expect(RegexLiterals.required("\u{C9}T\u{C9} offert") == nil, "non-ASCII in the string: its other case is not folded")
        #expect(RegexLiterals.required("a\\.b\\.c") == ["a.b.c"])
        #expect(RegexLiterals.required("x{0,3}yz") == nil)
        #expect(RegexLiterals.required("abcxyz{,2}de") == ["abcxy"], "{,n} allows none: the z may be absent")
        #expect(RegexLiterals.required("abcd{2,}ef") == ["abcd"])
    }

    @Test func everyRequiredSetOfASequence() {
        #expect(RegexLiterals.allRequired("(processing|clearance|release|transfer) fee")
                    == [["processing fee", "clearance fee", "release fee", "transfer fee"]], "whole strings, not words apart")
        #expect(RegexLiterals.allRequired("(transfer|claim|release) (of )?(the |your )?(funds|sum of|inheritance)")
                    == [["transfer ", "claim ", "release "], ["funds", "sum of", "inheritance"]], "optional groups are not required")
        #expect(RegexLiterals.allRequired("your (account|mailbox) (has been|will be|is) (suspended|locked|closed|terminated|disabled)")
                    == [["your account has been ", "your account will be ", "your account is ", "your mailbox has been ",
                         "your mailbox will be ", "your mailbox is "], ["suspended", "locked", "closed", "terminated", "disabled"]],
                "at most sixteen joined strings: then a new set starts")
        #expect(RegexLiterals.allRequired("(abc|cde)+ fee") == [["abc", "cde"], [" fee"]],
                "a repeated group is not joined")
        #expect(RegexLiterals.allRequired("(loan|credit) (is )?(pre-?)?approved") == [["loan ", "credit "], ["approved"]])
        #expect(RegexLiterals.allRequired("(a.c|xyz) fee") == [[" fee"]], "a group that is not plain words stays apart")
        #expect(RegexLiterals.allRequired("next of kin") == [["next of kin"]])
        #expect(RegexLiterals.allRequired("(online casino|free spins)|no deposit bonus") == [["online casino", "free spins", "no deposit bonus"]],
                "a top-level alternation: one set, its parts' union")
        #expect(RegexLiterals.allRequired("ab|cd") == nil)
        #expect(RegexLiterals.allRequired("(abc)?xy") == nil)
    }

    @Test func aRegexLooksForItsLiteralsBeforeRunning() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var patterns = [
            "XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X",
            "^Content-(Type|Disposition):.*name[[:space:]]*=[[:space:]]*\"?[^\"]*\\.(exe|scr|pif)\"?[[:space:]]*(;|$)",
            "^Subject:[[:space:]]*$", "(processing|release) fee", "abc|de",
        ]
        for file in ["rules/spam-body.rules", "rules/spam-headers.rules", "rules/header_checks"] {
            let text = try String(contentsOf: here.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                if let a = line.firstIndex(of: "/"), let b = line.lastIndex(of: "/"), a < b { patterns.append(String(line[line.index(after: a)..<b])) }
            }
        }
        #expect(patterns.count > 30)
        let texts = [
            "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X", "xjs*c4jdbqadn1.nsbn3*2idnen*gtube-standard-anti-ube-test-email*c.34x",
            "Content-Type: application/octet-stream; name=\"run.exe\"", "content-disposition: attachment; NAME=a.SCR",
            "Subject:   ", "Subject: hello", "The RELEASE FEE is due", "release notes", "de", "ab",
            "From: x <a12345@b.example>", "Subject: You have WON", "dear friend, next of kin, 100% free",
            "Your mailbox is over its quota", "click here to", "", "\u{0}abc",
        ]
        for p in patterns {
            for ci in [true, false] {
                let re = try PosixRegex(p, caseInsensitive: ci)
                for t in texts { #expect(re.matches(t) == re.regexecOnly(t), "/\(p)/ on \(t.prefix(30))") }
            }
        }
        let gtube = try PosixRegex(patterns[0], caseInsensitive: false)
        #expect(gtube.matches("a message that says nothing\r\n" + texts[0] + "\r\n") && !gtube.matches(texts[1]))
    }

    @Test func aRuleNeedingTwoWordsDoesNotRunOnOne() throws {
        var diagnostics: [PolicyDiagnostic] = []
        let table = RegexpTable(path: "t", displayPath: "t", text: "FEE /(processing|release) fee/ score +1\n", diagnostics: &diagnostics)
        #expect(diagnostics.isEmpty)
        #expect(table.allMatches("the release is on Friday").isEmpty)
        #expect(table.allMatches("a RELEASE FEE of 20 dollars").map(\.name) == ["FEE"])
        #expect(table.allMatches("a release fee").map(\.name) == ["FEE"])
    }

    @Test func headerRulesAnchoredOnAGroupOfNames() throws {
        #expect(RegexpTable.anchoredHeaders("^Subject:.*x") == ["subject"])
        #expect(RegexpTable.anchoredHeaders("^Content-(Type|Disposition):.*name") == ["content-type", "content-disposition"])
        #expect(RegexpTable.anchoredHeaders("^(Subject):") == ["subject"])
        #expect(RegexpTable.anchoredHeaders("^(X-)?Mailer:") == nil, "an optional group: any line")
        #expect(RegexpTable.anchoredHeaders("^X-Priorit?y:") == nil)
        #expect(RegexpTable.anchoredHeaders("^(A|):") == nil)
        #expect(RegexpTable.anchoredHeaders("Subject:") == nil)
        var diagnostics: [PolicyDiagnostic] = []
        let rules = #"""
            EXE /^Content-(Type|Disposition):.*name="?[^"]*\.exe/ score +1
            SUBJ /^Subject:.*invoice/ score +1
            ANY /^X-.*bulk/ score +1

            """#
        let table = RegexpTable(path: "t", displayPath: "t", text: rules, diagnostics: &diagnostics)
        #expect(diagnostics.isEmpty)
        let fields: [HeaderBlock.Field] = [
            HeaderBlock.Field(name: "Subject", value: "your invoice"), HeaderBlock.Field(name: "X-Note", value: "name=\"a.exe\""),
            HeaderBlock.Field(name: "content-disposition", value: "attachment; name=\"a.EXE\""),
            HeaderBlock.Field(name: "X-Campaign", value: "bulk 7"), HeaderBlock.Field(name: "Content-Type", value: "text/plain"),
        ]
        var naive: [String] = []
        for e in table.entries {
            if let f = fields.first(where: { e.regex.matches($0.name + ": " + $0.value) }) { naive.append("\(e.name) \(f.name)") }
        }
        var found: [String] = []
        for (e, line) in table.allMatches(fields: fields) { found.append("\(e.name) \(line.prefix { $0 != ":" })") }
        #expect(found == naive)
        #expect(found == ["EXE content-disposition", "SUBJ Subject", "ANY X-Campaign"])
    }

    @Test func prefilteredTableFindsWhatEveryRegexFinds() throws {
        let here = URL(fileURLWithPath: #filePath)
        let rules = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("rules/spam-body.rules")
        let text = try String(contentsOf: rules, encoding: .utf8)
        var diagnostics: [PolicyDiagnostic] = []
        let table = RegexpTable(path: rules.path, displayPath: "spam-body.rules", text: text, diagnostics: &diagnostics)
        #expect(diagnostics.isEmpty)
        #expect(table.entries.count > 10)
        let samples = [
            "Dear Friend, I am the NEXT OF KIN of the late barrister. The TRANSFER of the funds needs a processing fee.",
            "You have won the LOTTERY jackpot! Claim your prize now. 100% FREE, risk-free, act now!",
            "Minutes of Tuesday: the build is green, the release is on Friday.",
            "Lose 20 lbs in a month. Buy viagra, cialis. Online casino: free spins and no deposit bonus!",
            "Your account has been suspended. Verify your password here.",
            "The release fee: a transfer of the funds. Processing fees apply; clearance fee too.",
            "The release notes and the feedback: your account is closed; your mailbox will be locked. Loan approved.",
            "",
        ]
        for s in samples {
            let naive = table.entries.filter { $0.regex.matches(s) }.map(\.name)
            #expect(table.allMatches(s).map(\.name) == naive, "\(s.prefix(30))")
        }
        #expect(!table.allMatches(samples[0]).isEmpty && table.allMatches(samples[2]).isEmpty)
    }
}
