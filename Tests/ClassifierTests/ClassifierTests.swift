import Foundation
import MailMessage
import Testing

@testable import Classifier

/// Messages the tests make: two vocabularies, so what a trained model must
/// tell apart is known, with a per-message twist so no two are the same.
enum Mail {
    static let spamWords = ["cheap", "pills", "winner", "prize", "claim", "offer", "viagra", "casino", "bonus", "unsubscribe",
                            "limited", "discount", "guaranteed", "free", "money", "credit", "loan", "urgent", "act", "now"]
    static let hamWords = ["meeting", "agenda", "patch", "review", "kernel", "release", "schedule", "minutes", "draft", "thanks",
                           "build", "commit", "merge", "branch", "test", "docs", "question", "lunch", "project", "notes"]

    static func message(spam: Bool, _ n: Int, extra: String = "") -> [UInt8] {
        let words = spam ? spamWords : hamWords
        var body = ""
        for i in 0..<60 { body += words[(i * 7 + n * 3) % words.count] + (i % 9 == 8 ? ".\n" : " ") }
        let subject = spam ? "\(words[n % 20]) \(words[(n + 5) % 20]) inside" : "Re: \(words[n % 20]) for \(words[(n + 3) % 20])"
        let text = """
            From: \(spam ? "Deals <deals\(n)@promo.example>" : "Alice <alice@example.org>")
            To: bob@example.com
            Subject: \(subject)
            Message-ID: <\(n).\(spam)@example>
            MIME-Version: 1.0
            Content-Type: text/plain; charset=utf-8

            \(body) message number \(n) \(extra)

            """
        return Array(text.utf8)
    }

    static func features(spam: Bool, _ n: Int, extra: String = "") -> MessageFeatures {
        MessageFeatures(message: message(spam: spam, n, extra: extra), localDomains: ["example.com"], dimensionBits: 18)
    }
}

struct TokenizerTests {
    func hashes(_ s: String) -> (Set<UInt64>, Bool) {
        var t = Tokenizer()
        t.add(s, ns: 1)
        return (Set(t.out), t.mixedScript)
    }

    @Test func foldsCaseLookAlikesAndInvisibleCharacters() {
        let (plain, mixed) = hashes("paypal account")
        #expect(!mixed)
        // Cyrillic а and о, a zero-width space, fullwidth letters and capitals: all read as "paypal".
        for disguised in ["p\u{430}yp\u{430}l account", "PAY\u{200B}PAL ACCOUNT", "\u{FF50}\u{FF41}\u{FF59}\u{FF50}\u{FF41}\u{FF4C} account"] {
            let (h, _) = hashes(disguised)
            #expect(h == plain, "\(disguised)")
        }
        #expect(hashes("p\u{430}yp\u{430}l").1, "Latin mixed with Cyrillic look-alikes is flagged")
        #expect(!hashes("привет мир").1, "plain Cyrillic is not a disguise")
    }

    @Test func longNumbersAndTokensGeneralize() {
        #expect(hashes("call 5551234567").0 == hashes("call 5559876543").0)
        #expect(hashes("call 555123").0 != hashes("call 55512345").0, "different lengths stay apart")
        #expect(hashes("id aGVsbG8gd29ybGQgdGhpcyBpcyBsb25nX").0.count == 2)
    }

    @Test func wordsJoinedByPunctuationStayOneWord() {
        #expect(hashes("mail-box").0.count == 1)
        #expect(hashes("mail - box").0.count == 2)
    }
}

struct HTMLTextTests {
    func text(_ html: String) -> String {
        let msg = "Content-Type: text/html\r\n\r\n" + html + "\r\n"
        var w = MIMEWalker()
        w.feed(Array(msg.utf8))
        return w.finish().text
    }

    @Test func inlineTagsDoNotSplitWordsAndReferencesAreDecoded() {
        #expect(text("<p>V<b></b>iag<span>ra</span></p>").contains("Viagra"))
        #expect(text("&#86;iagra &amp; &#x43;ialis").contains("Viagra & Cialis"))
        #expect(text("one<br>two").contains("one two"))
    }

    @Test func styleScriptAndCommentsAreNotText() {
        let t = text("<style>.x{color:red}</style><script>var secret=1;</script><!-- hidden words -->shown")
        #expect(t.contains("shown"))
        #expect(!t.contains("color") && !t.contains("secret") && !t.contains("hidden"))
    }
}

struct LogisticModelTests {
    func trained(_ n: Int = 60) -> LogisticModel {
        var m = LogisticModel(dimensionBits: 18)
        for i in 0..<n {
            m.learn(Mail.features(spam: true, i), spam: true, passes: 3)
            m.learn(Mail.features(spam: false, i), spam: false, passes: 3)
        }
        return m
    }

    @Test func classifiesAsTrained() {
        let m = trained()
        for i in 1000..<1020 {
            #expect(m.probability(Mail.features(spam: true, i)) > 0.9)
            #expect(m.probability(Mail.features(spam: false, i)) < 0.1)
        }
        #expect(m.spamLearned == 60 && m.hamLearned == 60)
    }

    @Test func forgetTakesBackExactlyWhatLearningDid() {
        var m = trained(20)
        let before = m.weights
        let f = Mail.features(spam: false, 500, extra: "casino bonus")
        m.learn(f, spam: true)
        #expect(m.weights != before)
        let forgotten = m.forget(f)
        #expect(forgotten)
        #expect(zip(m.weights, before).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(m.spamLearned == 20)
        let again = m.forget(f)
        #expect(!again, "a message not learnt cannot be forgotten")
    }

    @Test func laterRoundsMoveOnlyMisjudgedMessagesAndForgetTakesThemBackToo() {
        var m = trained(20)
        let before = m.weights
        // A spam, then a ham much like it: the ham's step drags the spam back inside the margin, so a later round moves it again.
        let f = Mail.features(spam: true, 700, extra: "newsletter you asked for")
        let g = Mail.features(spam: true, 700, extra: "newsletter you asked for really")
        m.learn(f, spam: true)
        m.learn(g, spam: false)
        let misjudged = m.logOdds(f)
        #expect(misjudged < LogisticModel.margin)
        let moved = m.reinforce(f, spam: true)
        #expect(moved)
        #expect(m.logOdds(f) > misjudged)
        let wrongClass = m.reinforce(f, spam: false)
        #expect(!wrongClass, "a round never moves a message toward the class it was not learnt as")
        let forgotF = m.forget(f), forgotG = m.forget(g)
        #expect(forgotF && forgotG)
        #expect(zip(m.weights, before).allSatisfy { abs($0 - $1) < 1e-4 }, "forget takes back the later rounds' steps too")
    }

    @Test func aHamStepIsLargerThanASpamStep() {
        var spam = LogisticModel(dimensionBits: 16), ham = LogisticModel(dimensionBits: 16)
        let f = Mail.features(spam: true, 3)
        spam.learn(f, spam: true)
        ham.learn(f, spam: false)
        #expect(abs(ham.logOdds(f)) > abs(spam.logOdds(f)) * 2, "false positives cost more: ham is learnt harder")
    }

    @Test func learningTwiceIsNoOpAndTheOtherClassRelearns() {
        var m = LogisticModel(dimensionBits: 16)
        let f = Mail.features(spam: true, 1)
        let first = m.learn(f, spam: true), second = m.learn(f, spam: true), third = m.learn(f, spam: false)
        #expect(first == .learned)
        #expect(second == .alreadyLearned)
        #expect(third == .relearned)
        #expect(m.spamLearned == 0 && m.hamLearned == 1)
    }

    @Test func untrainedSaysNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clf-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = ModelFile(path: dir + "/m.model")
        _ = try store.update(dimensionBits: 18) { m in
            for i in 0..<10 { m.learn(Mail.features(spam: true, i), spam: true) }
            for i in 0..<60 { m.learn(Mail.features(spam: false, i), spam: false) }
        }
        let c = try SharedClassifier(store: store, dimensionBits: 18)
        #expect(c.classify(Mail.features(spam: true, 99), minLearned: 50) == nil, "10 spam learnt is below min_learned")
        #expect(c.classify(Mail.features(spam: true, 99), minLearned: 10) != nil)
    }
}

/// The heuristic signals as features, and the content part weighed apart from the header part.
struct FeaturePartsTests {
    @Test func heuristicSignalsAreFeaturesOfHowTheMessageWasSent() {
        let plain = Mail.message(spam: true, 1)
        // The same message with a link to a bare IP address (LINK_TO_IP): the link's host is content, the signal is not.
        let linked = Array(String(decoding: plain, as: UTF8.self).replacingOccurrences(of: "message number 1", with: "see http://192.0.2.7/x").utf8)
        let f = MessageFeatures(message: linked, localDomains: ["example.com"], dimensionBits: 18)
        let g = MessageFeatures(message: linked, localDomains: ["example.com"], dimensionBits: 18)
        #expect(f == g, "the same message, the same features")
        let headers = HeaderBlock(linked)
        var walker = MIMEWalker()
        walker.feed(linked)
        let summary = walker.finish()
        let without = MessageFeatures(headers: headers, summary: summary, dimensionBits: 18)
        #expect(without.contentCount == f.contentCount, "signals are not content")
        let sending = Set(f.indices[f.contentCount...]).subtracting(without.indices[without.contentCount...])
        #expect(sending.count >= 4, "LINK_TO_IP and the other signals, four features each: \(sending.count)")
        let only = MessageFeatures(headers: headers, summary: summary, signals: ["LINK_TO_IP"], dimensionBits: 18)
        #expect(only.indices.count == without.indices.count + 4)
        #expect(only.digest == without.digest, "signals do not change which message it is (--forget finds it)")
    }

    @Test func aShortBodyIsNotDrownedByManyHeaderFields() {
        // Nine content features a model finds spammy (+1 each), header features it has no opinion on (0).
        var m = LogisticModel(dimensionBits: 12)
        for i in 0..<9 { m.weights[i] = 1 }
        let digest = MessageFeatures.Digest(a: 1, b: 2)
        let content = (0..<9).map(UInt32.init)
        let plain = MessageFeatures(indices: content + [100], digest: digest, contentCount: 9)
        // Forty fields a mailing list adds: they thin out the header part's say, not the content's.
        let listed = MessageFeatures(indices: content + (100..<140).map(UInt32.init), digest: digest, contentCount: 9)
        #expect(abs(m.logOdds(plain) - 3) < 1e-6, "9 / sqrt(9)")
        #expect(abs(m.logOdds(listed) - 3) < 1e-6, "one unit-length vector over all 49 would have given 9 / 7")
        // Learning moves each part by the same amount, whatever its size.
        m.learn(listed, spam: false)
        let contentStep = m.weights[0] - 1, headerStep = m.weights[100]
        #expect(contentStep < 0 && headerStep < 0)
        #expect(abs(contentStep * 3 - headerStep * Float(40).squareRoot()) < 1e-5, "each part's step at unit length")
    }
}

struct ModelFileTests {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clf-\(UUID().uuidString)").path

    @Test func survivesARoundTripAndRefusesDamage() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = ModelFile(path: dir + "/m.model")
        #expect(try store.load() == nil)
        let written = try store.update(dimensionBits: 18) { m in
            for i in 0..<30 { m.learn(Mail.features(spam: i % 2 == 0, i), spam: i % 2 == 0) }
        }
        let read = try #require(try store.load())
        #expect(read.weights == written.weights)
        #expect(read.bias == written.bias && read.learned == written.learned)
        #expect(read.spamLearned == 15 && read.hamLearned == 15)

        var bytes = try #require(FileManager.default.contents(atPath: store.path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: store.path))
        #expect(throws: ModelStoreError.self) { try store.load() }
        try Data(bytes.prefix(30)).write(to: URL(fileURLWithPath: store.path))
        #expect(throws: ModelStoreError.self) { try store.load() }
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: store.path))
        let e = try #require(throws: ModelStoreError.self) { try store.load() }
        #expect(e.description.contains("not a mxgate classifier model"))
    }

    @Test func sharedClassifierWritesQueuedLearningAndSeesOtherWriters() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = ModelFile(path: dir + "/m.model")
        let gateway = try SharedClassifier(store: store, dimensionBits: 18)
        gateway.enqueue(Mail.features(spam: true, 1), spam: true)
        try gateway.sync()
        #expect(try store.load()?.spamLearned == 1)
        // Another process (mxgate learn) writes: the gateway takes it up on its next sync, and keeps its own learning.
        _ = try store.update(dimensionBits: 18) { $0.learn(Mail.features(spam: false, 2), spam: false) }
        try gateway.sync()
        #expect(gateway.learnedCounts == (1, 1))
    }
}

struct MessageSourceTests {
    @Test func splitsMboxAndUnquotesFromLines() {
        let mbox = "From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\nbody\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\nx\n"
        let parts = MessageSource.splitMbox(Array(mbox.utf8)).map { String(decoding: $0, as: UTF8.self) }
        #expect(parts.count == 2)
        #expect(parts[0] == "Subject: one\n\nFrom here\nbody\n")
        #expect(parts[1].hasPrefix("Subject: two"))
    }
}

struct UniqueTests {
    @Test func eachIndexOnceInTheOrderFirstSeen() {
        var g = SystemRandomNumberGenerator()
        for bits in [12, 16, 22, 26] {
            let top: UInt32 = (1 << UInt32(bits)) - 1
            let xs: [UInt32] = [0, 0, 7, 7] + (0..<5000).map { _ in UInt32.random(in: 0...top, using: &g) } + [top]
            let u = MessageFeatures.unique(xs)
            #expect(u.count == Set(xs).count && Set(u) == Set(xs))
            var seen = Set<UInt32>()
            #expect(u == xs.filter { seen.insert($0).inserted })
        }
        #expect(MessageFeatures.unique([]) == [])
        #expect(MessageFeatures.unique([5]) == [5])
    }
}
