import Synchronization

/// DNS records parsed before, by their text: the same few providers'
/// records come with most mail, and parsing one again for every message
/// cost more than its answer from the DNS cache. Shared by every event
/// loop; bounded, and emptied whole when full (a flood of distinct records
/// costs a re-parse, never memory).
final class RecordCache<Value: Sendable>: Sendable {
    private let table = Mutex<[String: Value]>([:])
    let limit: Int

    init(limit: Int = 2048) { self.limit = limit }

    /// The value `make` gives for `text`, made once while it stays in the table.
    func value(for text: String, _ make: (String) -> Value) -> Value {
        if let known = table.withLock({ $0[text] }) { return known }
        let made = make(text)
        table.withLock {
            if $0.count >= limit { $0.removeAll(keepingCapacity: true) }
            $0[text] = made
        }
        return made
    }

    var count: Int { table.withLock { $0.count } }
}
