import Testing

@testable import Checks

/// The resolver's own answer cache: definite answers for their TTL (capped),
/// failures never, a TTL of 0 never, and a full cache makes room.
struct DNSAnswerCacheTests {
    let key = DNSAnswerCache.Key(name: "example.org", type: 16)
    let second: UInt64 = 1_000_000_000

    @Test func answersAreKeptForTheirTTL() {
        let c = DNSAnswerCache()
        c.keep(.success([[1, 2, 3]]), for: key, ttl: 60, at: 0)
        #expect(c.answer(key, at: 59 * second) == .success([[1, 2, 3]]))
        #expect(c.answer(key, at: 60 * second) == nil, "expired at its TTL")
        #expect(c.count == 0, "an expired answer is dropped when asked for")
    }

    @Test func definiteNegativeAnswersAreKeptFailuresAreNot() {
        let c = DNSAnswerCache()
        let other = DNSAnswerCache.Key(name: "nothing.example.org", type: 16)
        c.keep(.failure(.nxdomain), for: other, ttl: 30, at: 0)
        c.keep(.failure(.timeout), for: key, ttl: 30, at: 0)
        c.keep(.failure(.serverFailure("rcode 2")), for: key, ttl: 30, at: 0)
        #expect(c.answer(other, at: second) == .failure(.nxdomain))
        #expect(c.answer(key, at: second) == nil, "a timeout or a server failure is asked again")
    }

    @Test func zeroTTLIsNotKeptAndLongTTLsAreCapped() {
        let c = DNSAnswerCache(maxTTL: 100)
        c.keep(.success([[1]]), for: key, ttl: 0, at: 0)
        #expect(c.answer(key, at: 0) == nil)
        c.keep(.success([[1]]), for: key, ttl: 86400, at: 0)
        #expect(c.answer(key, at: 99 * second) != nil)
        #expect(c.answer(key, at: 100 * second) == nil)
    }

    @Test func aFullCacheMakesRoom() {
        let c = DNSAnswerCache(capacity: 3)
        for i in 0..<3 { c.keep(.success([[UInt8(i)]]), for: .init(name: "n\(i)", type: 1), ttl: i == 0 ? 1 : 60, at: 0) }
        // n0 has expired: it goes, the others stay.
        c.keep(.success([[9]]), for: .init(name: "n3", type: 1), ttl: 60, at: 2 * second)
        #expect(c.count == 3)
        #expect(c.answer(.init(name: "n1", type: 1), at: 2 * second) != nil)
        // None expired: all go, the new one stays.
        c.keep(.success([[9]]), for: .init(name: "n4", type: 1), ttl: 60, at: 3 * second)
        #expect(c.count == 1)
        #expect(c.answer(.init(name: "n4", type: 1), at: 3 * second) != nil)
    }
}
