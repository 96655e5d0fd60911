import Foundation
import Threads

/// The model one gateway process classifies with: one copy for every
/// event loop (and across reloads: `open` hands back the same one for the
/// same store). Classifying takes a lock for the few thousand weight reads
/// of one message; learning in the gateway (autolearn, a release learnt as
/// ham) is queued and written by a background thread, which also loads the
/// model again when another process (`mxgate learn`) has changed it.
public final class SharedClassifier: @unchecked Sendable {
    public let store: any ModelStore
    public let dimensionBits: Int
    private let lock = NSLock()
    private var model: LogisticModel
    private var loadedVersion: String?
    private var pending: [(MessageFeatures, Bool)] = []
    private var watching = false
    /// Queued learning kept while the store cannot be written; beyond it, autolearn drops (it is optional).
    static let pendingLimit = 10_000

    private nonisolated(unsafe) static var shared: [String: SharedClassifier] = [:]
    private static let sharedLock = NSLock()

    init(store: any ModelStore, dimensionBits: Int) throws {
        self.store = store
        self.dimensionBits = dimensionBits
        loadedVersion = store.version()
        model = try store.load() ?? LogisticModel(dimensionBits: dimensionBits)
    }

    /// The process's classifier for this store, loading it the first time.
    /// A model that cannot be read is an error (start-up says so), never
    /// silently an empty one.
    public static func open(_ store: any ModelStore, dimensionBits: Int = 22) throws -> SharedClassifier {
        sharedLock.lock()
        defer { sharedLock.unlock() }
        if let c = shared[store.location] { return c }
        let c = try SharedClassifier(store: store, dimensionBits: dimensionBits)
        shared[store.location] = c
        return c
    }

    /// Starts the background thread (once): every `interval` seconds it
    /// writes queued learning and reloads a model changed on disk.
    public func watch(interval: Double = 5, onError: @escaping @Sendable (String) -> Void) {
        lock.lock()
        let start = !watching
        watching = true
        lock.unlock()
        guard start else { return }
        detachNamedThread("mxgate-classify") { [self] in
            while true {
                Thread.sleep(forTimeInterval: interval)
                do { try sync() } catch { onError("\(error)") }
            }
        }
    }

    /// Spam probability, or nil while fewer than `minLearned` of either
    /// class have been learnt: an untrained classifier says nothing.
    public func classify(_ f: MessageFeatures, minLearned: Int) -> Double? {
        lock.lock()
        defer { lock.unlock() }
        guard model.spamLearned >= minLearned, model.hamLearned >= minLearned else { return nil }
        return model.probability(f)
    }

    public var learnedCounts: (spam: Int, ham: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (model.spamLearned, model.hamLearned)
    }

    /// Queues a message to learn; the background thread (or `sync`) writes it.
    public func enqueue(_ f: MessageFeatures, spam: Bool) {
        lock.lock()
        if pending.count < Self.pendingLimit { pending.append((f, spam)) }
        lock.unlock()
    }

    /// Writes queued learning on top of the stored model (under the
    /// store's lock) and takes up whatever is stored now.
    public func sync() throws {
        lock.lock()
        let work = pending
        pending.removeAll()
        let known = loadedVersion
        lock.unlock()
        if work.isEmpty {
            guard store.version() != known else { return }
            let fresh = try store.load() ?? LogisticModel(dimensionBits: dimensionBits)
            install(fresh)
            return
        }
        do {
            let updated = try store.update(dimensionBits: dimensionBits) { m in
                for (f, spam) in work { m.learn(f, spam: spam) }
            }
            install(updated)
        } catch {
            lock.lock()
            pending = work + pending  // kept for the next try
            lock.unlock()
            throw error
        }
    }

    private func install(_ m: LogisticModel) {
        let v = store.version()
        lock.lock()
        model = m
        loadedVersion = v
        lock.unlock()
    }
}
