import Dispatch
import Synchronization

/// Answers the resolver has already had, kept for their TTL, so that a
/// repeated question (the same sender's SPF record, DKIM key and DMARC
/// policy, message after message) is answered on the asking event loop.
/// libunbound caches too, but reaching its cache costs three thread hops
/// (its worker, our pump thread, the continuation back to the loop) and a
/// timer per query: a sixth of the gateway's CPU with every check on.
/// Only definite answers are kept (records, no such name, no such record);
/// failures and timeouts are asked again. Bounded: when full, expired
/// answers go first, and if none has expired, all of them.
final class DNSAnswerCache: Sendable {
    struct Key: Hashable {
        let name: String
        let type: Int32
    }

    struct Entry {
        let answer: Result<[[UInt8]], DNSError>
        let expires: UInt64
    }

    /// The longest an answer is kept, whatever its TTL.
    let maxTTL: UInt32
    let capacity: Int
    private let entries = Mutex<[Key: Entry]>([:])

    init(maxTTL: UInt32 = 3600, capacity: Int = 20_000) {
        self.maxTTL = maxTTL
        self.capacity = capacity
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// The kept answer to `key`, if it has not expired.
    func answer(_ key: Key, at now: UInt64 = now()) -> Result<[[UInt8]], DNSError>? {
        entries.withLock { e in
            guard let entry = e[key] else { return nil }
            guard entry.expires > now else {
                e[key] = nil
                return nil
            }
            return entry.answer
        }
    }

    /// Keeps `answer` for `ttl` seconds (bounded by `maxTTL`), if it is
    /// definite. A TTL of 0 (or a negative answer with no SOA to give one)
    /// means "do not keep", as it does to every cache.
    func keep(_ answer: Result<[[UInt8]], DNSError>, for key: Key, ttl: Int32, at now: UInt64 = now()) {
        if case .failure(let e) = answer, !e.isDefinite { return }
        guard ttl > 0 else { return }
        let seconds = min(UInt32(ttl), maxTTL)
        let entry = Entry(answer: answer, expires: now + UInt64(seconds) * 1_000_000_000)
        entries.withLock { e in
            if e.count >= capacity && e[key] == nil {
                e = e.filter { $0.value.expires > now }
                if e.count >= capacity { e.removeAll(keepingCapacity: true) }
            }
            e[key] = entry
        }
    }

    var count: Int { entries.withLock { $0.count } }
}
