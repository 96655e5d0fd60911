import Foundation
import Testing
import Threads

/// The helper threads carry their own names, even when started from a thread
/// with another name (Linux copies the creator's name to a new thread).
struct NamedThreadTests {
    static func currentName() -> String {
        (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?
            .trimmingCharacters(in: .newlines) ?? ""
    }

    @Test func aThreadStartedFromANamedThreadHasItsOwnName() async {
        let names = await withCheckedContinuation { (c: CheckedContinuation<[String], Never>) in
            detachNamedThread("mxgate-outer") {
                let outer = Self.currentName()
                // Many at once: the old naming lost the race now and then.
                let group = DispatchGroup()
                let inner = Names()
                for i in 0..<20 {
                    group.enter()
                    detachNamedThread("mxgate-inner-\(i)") {
                        inner.add(Self.currentName())
                        group.leave()
                    }
                }
                group.wait()
                c.resume(returning: [outer] + inner.all)
            }
        }
        #expect(names.first == "mxgate-outer")
        #expect(Set(names.dropFirst()) == Set((0..<20).map { "mxgate-inner-\($0)" }))
    }

    @Test func longNamesAreCutToTheKernelsLimit() async {
        let name = await withCheckedContinuation { (c: CheckedContinuation<String, Never>) in
            detachNamedThread("mxgate-a-very-long-thread-name") { c.resume(returning: Self.currentName()) }
        }
        #expect(name == "mxgate-a-very-l")
    }

    /// What the inner threads saw, behind a lock.
    final class Names: @unchecked Sendable {
        private let lock = NSLock()
        private var names: [String] = []
        func add(_ name: String) { lock.withLock { names.append(name) } }
        var all: [String] { lock.withLock { names } }
    }
}
