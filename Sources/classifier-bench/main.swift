// classifier-bench: what the classifier and the heuristics cost (issue 17).
//
//   bench/classifier.sh [MESSAGE_FILE...]
//
// 1. Classification: a 10 KB message (text and HTML) from bytes to spam
//    probability (MIME walk excluded: the gateway has it already), median
//    of rounds of 2,000, in µs per message; the heuristics likewise.
// 2. Learning: µs per message learnt.
// 3. Size: a model that has seen a million distinct features: weights in
//    memory, the file on disk, RSS growth.
import Classifier
import Foundation
import Heuristics
import MailMessage

func rssKB() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") { return Int(line.split(separator: " ")[1]) ?? 0 }
    return 0
}

var rng = SystemRandomNumberGenerator()
let vocabulary = (0..<20000).map { i in String((0..<(4 + i % 7)).map { _ in Character(Unicode.Scalar(UInt8(97 + Int.random(in: 0..<26, using: &rng)))) }) }

func message(_ n: Int, size: Int = 10 * 1024) -> [UInt8] {
    var words = ""
    var k = n
    while words.utf8.count < size / 2 - 200 {
        k = (k &* 1103515245 &+ 12345) & 0x7FFFFFFF
        words += vocabulary[k % vocabulary.count] + (k % 13 == 0 ? ".\r\n" : " ")
    }
    let text = "From: Sender \(n) <s\(n)@example.org>\r\nTo: bob@example.com\r\nSubject: report \(n) for the quarter\r\n"
        + "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <\(n)@example.org>\r\nMIME-Version: 1.0\r\n"
        + "Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\n\(words)\r\n"
        + "--A\r\nContent-Type: text/html\r\n\r\n<html><body><p>\(words)</p><a href=\"https://www.example.org/x\">www.example.org</a></body></html>\r\n--A--\r\n"
    return Array(text.utf8)
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

// Message files on the command line are measured instead of the synthetic ones
// (real text hits the phrase lists and rules as random words do not).
let files = CommandLine.arguments.dropFirst().compactMap { FileManager.default.contents(atPath: $0).map { [UInt8]($0) } }
let messages = files.isEmpty ? (0..<200).map { message($0) } : files
let parsed = messages.map { m -> (HeaderBlock, MIMESummary) in
    var w = MIMEWalker()
    w.feed(m)
    return (HeaderBlock(m), w.finish())
}
print("message size: \(messages[0].count) bytes, \(parsed[0].1.text.utf8.count) bytes of decoded text")

var model = LogisticModel(dimensionBits: 22)
for (i, p) in parsed.enumerated() {
    model.learn(MessageFeatures(headers: p.0, summary: p.1, dimensionBits: 22), spam: i % 2 == 0)
}

let rounds = 5, perRound = 2000
var classify: [Double] = [], heuristics: [Double] = [], features = 0
var sink = 0.0
for _ in 0..<rounds {
    let t0 = ContinuousClock.now
    for i in 0..<perRound {
        let p = parsed[i % parsed.count]
        let f = MessageFeatures(headers: p.0, summary: p.1, dimensionBits: 22)
        features = f.indices.count
        sink += model.probability(f)
    }
    let dt = ContinuousClock.now - t0
    classify.append(Double(dt.components.attoseconds) / 1e12 / Double(perRound) + Double(dt.components.seconds) * 1e6 / Double(perRound))
    let t1 = ContinuousClock.now
    for i in 0..<perRound {
        let p = parsed[i % parsed.count]
        sink += Double(Heuristics.detect(HeuristicInput(headers: p.0, mime: p.1, receivedAt: Date(), localDomains: ["example.com"])).count)
    }
    let dh = ContinuousClock.now - t1
    heuristics.append(Double(dh.components.attoseconds) / 1e12 / Double(perRound) + Double(dh.components.seconds) * 1e6 / Double(perRound))
}
let what = files.isEmpty ? "10 KB message" : "message of the \(files.count) given (\(files.reduce(0) { $0 + $1.count } / files.count) bytes on average)"
print(String(format: "classify (features + probability): %.1f µs per %@ (median of %d rounds of %d; %d features each)",
             median(classify), what, rounds, perRound, features))
print(String(format: "heuristics: %.1f µs per %@", median(heuristics), what))

// Learning, and a model that has seen a million distinct features.
let before = rssKB()
var big = LogisticModel(dimensionBits: 22)
var learnt = 0
let t2 = ContinuousClock.now
var distinct = Set<UInt32>()
var n = 0
while distinct.count < 1_000_000 {
    let f = MessageFeatures(message: message(100_000 + n, size: 6 * 1024), localDomains: ["example.com"], dimensionBits: 22)
    distinct.formUnion(f.indices)
    big.learn(f, spam: n % 2 == 0)
    learnt += 1
    n += 1
}
let dl = ContinuousClock.now - t2
let learnMicros = (Double(dl.components.seconds) * 1e6 + Double(dl.components.attoseconds) / 1e12) / Double(learnt)
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clf-bench-\(getpid())").path
let store = ModelFile(path: dir + "/m.model")
_ = try store.update(dimensionBits: 22) { $0 = big }
let fileBytes = (try FileManager.default.attributesOfItem(atPath: store.path)[.size] as? Int) ?? 0
try? FileManager.default.removeItem(atPath: dir)
print(String(format: "learn: %.1f µs per message (features included), %d messages", learnMicros, learnt))
print("a million distinct features: \(big.nonZero) weights set, \(big.weights.count * 4 / 1048576) MB of weights in memory, "
      + "file \(fileBytes / 1024) KB, RSS grew \( (rssKB() - before) / 1024) MB (messages' digests included)")
if sink == 42 { print("") }
