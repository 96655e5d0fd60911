import ArgumentParser
import Classifier
import Foundation
import Gateway

/// `mxgate learn`: trains (or untrains) the classifier's model file from
/// messages on disk. The running gateway takes the new model up by itself
/// within seconds; learning is written under the model's lock, so it never
/// loses what the gateway learnt meanwhile.
struct Learn: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Teach the classifier spam and ham from files, Maildirs and mboxes.",
        usage: """
            mxgate learn [--config <config>] [--spam <path> ...] [--ham <path> ...]
                         [--forget] [--passes <n>]
            """,
        discussion: """
            Each PATH is a message file, a Maildir (cur and new), an mbox, or a folder of \
            these. A message learnt before as the same class is skipped; learnt as the other \
            class, it is taken back and learnt again (to correct a mistake). --forget takes \
            back what learning the given messages did, whatever they were learnt as. With \
            both --spam and --ham, messages are learnt interleaved, so neither class comes \
            all first. The classifier gives no verdict until [classifier] min_learned of each \
            class have been learnt.

            Example:
              mxgate learn --config mxgate.toml --spam ~/Maildir/.Junk --ham ~/Maildir/cur
            """
    )

    @OptionGroup var options: ConfigOption
    @Option(parsing: .upToNextOption, help: "Messages to learn as spam.") var spam: [String] = []
    @Option(parsing: .upToNextOption, help: "Messages to learn as ham (not spam).") var ham: [String] = []
    @Flag(help: "Take back what learning these messages did.") var forget = false
    @Option(help: "Rounds over the messages; a message still misjudged moves the weights again (1 to 5).") var passes: Int = 3

    func validate() throws {
        if spam.isEmpty && ham.isEmpty { throw ValidationError("give --spam PATH... or --ham PATH... (or both)") }
        if !(1...5).contains(passes) { throw ValidationError("--passes must be 1 to 5") }
    }

    func run() throws {
        let config = try options.load()
        guard let k = config.classifier else {
            printError("mxgate learn: \(config.file) has no [classifier] model = \"PATH\"")
            throw ExitCode(1)
        }
        var unreadable = 0
        var items: [(MessageFeatures, Bool, String)] = []
        for (paths, isSpam) in [(spam, true), (ham, false)] {
            MessageSource.each(paths, problem: { printError("mxgate learn: \($0)"); unreadable += 1 }) { item in
                items.append((MessageFeatures(message: item.bytes, localDomains: config.domains, dimensionBits: k.dimensionBits), isSpam, item.name))
            }
        }
        // Interleave the classes in an order fixed by the messages themselves (their digests).
        items.sort { $0.0.digest < $1.0.digest }
        var learnt = 0, skipped = 0, relearnt = 0, forgotten = 0, unknown = 0
        let store = config.classifierStore()
        let model: LogisticModel
        do {
            model = try store.update(dimensionBits: k.dimensionBits) { m in
                for (f, isSpam, _) in items {
                    if forget {
                        if m.forget(f) { forgotten += 1 } else { unknown += 1 }
                        continue
                    }
                    switch m.learn(f, spam: isSpam) {
                    case .learned: learnt += 1
                    case .alreadyLearned: skipped += 1
                    case .relearned: relearnt += 1
                    }
                }
                // Later rounds over the whole batch, not more steps per message: one message's
                // repeated steps overfit it before the rest have been seen.
                if !forget {
                    for _ in 1..<passes { for (f, isSpam, _) in items { m.reinforce(f, spam: isSpam) } }
                }
            }
        } catch {
            printError("mxgate learn: \(error)")
            throw ExitCode(1)
        }
        if forget {
            print("forgot \(forgotten) message(s)" + (unknown > 0 ? "; \(unknown) had not been learnt" : ""))
        } else {
            print("learnt \(learnt) message(s), relearnt \(relearnt) as the other class, \(skipped) already learnt")
        }
        let ready = model.spamLearned >= k.minLearned && model.hamLearned >= k.minLearned
        print("model \(store.location): \(model.spamLearned) spam, \(model.hamLearned) ham learnt, \(model.nonZero) features"
              + (ready ? "" : "; no verdicts until \(k.minLearned) of each (min_learned)"))
        if unreadable > 0 { throw ExitCode(1) }
    }
}
