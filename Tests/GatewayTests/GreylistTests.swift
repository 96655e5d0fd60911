import Foundation
import Policy
import SMTPProtocol
import State
import Testing

@testable import Gateway

/// Greylisting's decisions, on the embedded store with the clock given:
/// postgrey's normalisation and timings, the passes for senders' pools.
struct GreylistTests {
    static func box(_ s: String) -> Mailbox { try! AddressParser.parseMailbox(s) }

    static func facts(ip: String = "192.0.2.10", from: String = "news@lists.example.org", spf: String? = nil) -> SessionFacts {
        var f = SessionFacts(sessionID: "t", clientIP: ip, clientPort: 1)
        f.mailFrom = .mailbox(box(from))
        if let spf { f.spf = AuthCheck(result: spf, domain: "lists.example.org") }
        return f
    }

    @Test(arguments: [
        ("prvs=1234abcd=bounce@example.org", "bounce@example.org"),
        ("btv1==0123abc==user@example.org", "user@example.org"),
        ("list+unsubscribe-42@Example.ORG", "list@example.org"),
        ("bounce-1234-5678@mail.example", "bounce-#-#@mail.example"),
        ("Alice@Example.org", "alice@example.org"),
    ])
    func sendersAreNormalisedAsPostgreyDoes(given: String, expected: String) {
        #expect(Greylist.normalise(.mailbox(Self.box(given))) == expected)
        #expect(Greylist.normalise(.null) == "<>")
    }

    @Test func networksAndTheSPFDomainKeyTheClient() {
        let g = Greylist(settings: GreylistSettings())
        #expect(g.client(Self.facts()) == "192.0.2.0/24")
        #expect(g.client(Self.facts(ip: "2001:db8:1:2:3::9")) == "2001:db8:1:2::/64")
        #expect(g.client(Self.facts(spf: "pass")) == "spf:lists.example.org")
        #expect(g.client(Self.facts(spf: "softfail")) == "192.0.2.0/24")
    }

    @Test func firstAttemptEarlyRetryPassThenKnown() throws {
        var s = GreylistSettings()
        s.delay = 300
        let g = Greylist(settings: s)
        let store = try MemoryStore(path: nil)
        let f = Self.facts()
        let rcpt = [Self.box("alice@example.com")]
        let t0 = Date().timeIntervalSince1970
        let first = try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: t0)
        #expect(first.outcome == .new && !first.passes && first.retryIn == 300)
        try g.record(first, f, recipients: rcpt, bodyHash: nil, store: store, now: t0)
        let early = try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: t0 + 60)
        #expect(early.outcome == .early && abs(early.retryIn - 240) < 1)
        try g.record(early, f, recipients: rcpt, bodyHash: nil, store: store, now: t0 + 60)  // the first attempt's time stays
        let retry = try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: t0 + 301)
        #expect(retry.outcome == .retried && retry.passes && retry.waited >= 300)
        try g.record(retry, f, recipients: rcpt, bodyHash: nil, store: store, now: t0 + 301)
        #expect(try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: t0 + 400).outcome == .known)
        // Another recipient, or the same from elsewhere, is another triplet.
        #expect(try g.check(f, recipients: [Self.box("bob@example.com")], bodyHash: nil, store: store, now: t0 + 400).outcome == .new)
        #expect(try g.check(Self.facts(ip: "198.51.100.1"), recipients: rcpt, bodyHash: nil, store: store, now: t0 + 400).outcome == .new)
    }

    @Test func aPassedTripletIsRenewedOnceADayKeepingItsFirstSeen() throws {
        let g = Greylist(settings: GreylistSettings())
        let store = try MemoryStore(path: nil)
        let f = Self.facts()
        let rcpt = [Self.box("alice@example.com")]
        let now = Date().timeIntervalSince1970
        let key = Greylist.tripletKey(g.triplet(f, rcpt[0]))
        try store.set(key, "P\(Int(now) - 3 * 86400):\(Int(now) - 2 * 86400)", ttl: 86400, ifAbsent: false)
        let due = try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: now)
        #expect(due.outcome == .known && due.renewal == Double(Int(now) - 3 * 86400))
        try g.record(due, f, recipients: rcpt, bodyHash: nil, store: store, now: now)
        #expect(try store.get([key]) == ["P\(Int(now) - 3 * 86400):\(Int(now))"])
        #expect(try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: now + 60).renewal == nil)  // renewed: nothing to write
    }

    @Test func aRetryPastTheWindowStartsAgain() throws {
        let g = Greylist(settings: GreylistSettings())
        let store = try MemoryStore(path: nil)
        let f = Self.facts()
        let rcpt = [Self.box("alice@example.com")]
        let t0 = Date().timeIntervalSince1970 - 3 * 86400  // entries are written with real expiry: start in the past
        try g.record(try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: t0), f, recipients: rcpt, bodyHash: nil, store: store, now: t0)
        // Two days later the pending entry has expired (its TTL is the retry window).
        #expect(try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: Date().timeIntervalSince1970).outcome == .new)
    }

    @Test func aClientThatPassedFiveTimesIsLetThrough() throws {
        var s = GreylistSettings()
        s.delay = 10
        let g = Greylist(settings: s)
        let store = try MemoryStore(path: nil)
        let now = Date().timeIntervalSince1970
        for i in 0..<5 {
            let f = Self.facts(from: "sender\(["a", "b", "c", "d", "e"][i])@x.example")
            let rcpt = [Self.box("alice@example.com")]
            try g.record(try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: now - 100), f, recipients: rcpt, bodyHash: nil, store: store, now: now - 100)
            let r = try g.check(f, recipients: rcpt, bodyHash: nil, store: store, now: now)
            #expect(r.outcome == .retried)
            try g.record(r, f, recipients: rcpt, bodyHash: nil, store: store, now: now)
        }
        let stranger = try g.check(Self.facts(from: "new@y.example"), recipients: [Self.box("bob@example.com")], bodyHash: nil, store: store, now: now)
        #expect(stranger.outcome == .client && stranger.passes)
    }

    @Test func theSameMessageFromAnotherAddressPasses() throws {
        var s = GreylistSettings()
        s.delay = 10
        let g = Greylist(settings: s)
        let store = try MemoryStore(path: nil)
        let now = Date().timeIntervalSince1970
        let rcpt = [Self.box("alice@example.com")]
        let a = Self.facts(ip: "192.0.2.1")
        try g.record(try g.check(a, recipients: rcpt, bodyHash: "abc", store: store, now: now - 60), a, recipients: rcpt, bodyHash: "abc", store: store, now: now - 60)
        let b = Self.facts(ip: "203.0.113.9")
        #expect(try g.check(b, recipients: rcpt, bodyHash: "abc", store: store, now: now).outcome == .sameMessage)
        #expect(try g.check(b, recipients: rcpt, bodyHash: "other", store: store, now: now).outcome == .new)
    }

    @Test func theEmbeddedStoreSurvivesARestartAndRefusesADamagedFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mxgate-state-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state"
        let a = try MemoryStore(path: path)
        try a.set("gl:t:net / a\tb / c\nd", "F123", ttl: 60, ifAbsent: false)
        try a.set("gone", "x", ttl: 0.001, ifAbsent: false)
        usleep(5000)
        try a.persist()
        let b = try MemoryStore(path: path)
        #expect(try b.get(["gl:t:net / a\tb / c\nd", "gone", "never"]) == ["F123", nil, nil])
        try "broken line without tabs\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: StateError.self) { try MemoryStore(path: path) }
    }

    @Test func ratesAndSlotsOnTheEmbeddedStore() throws {
        let s = try MemoryStore(path: nil)
        let now = Date().timeIntervalSince1970
        #expect(try (0..<5).map { _ in try s.admit("r", limit: 3, window: 60, now: now) } == [true, true, true, false, false])
        #expect(try s.admit("r", limit: 3, window: 60, now: now + 61))
        #expect(try s.acquire("c", limit: 1, ttl: 60))
        #expect(try !s.acquire("c", limit: 1, ttl: 60))
        try s.release("c")
        #expect(try s.acquire("c", limit: 1, ttl: 60))
    }

    @Test(arguments: [
        ("redis://127.0.0.1:6380/2", "redis://127.0.0.1:6380/2", nil as String?),
        ("redis://:s3cret@10.0.0.5", "redis://10.0.0.5:6379/0", "s3cret"),
        ("redis://user:p%40ss@[::1]:7000/1", "redis://[::1]:7000/1", "p@ss"),
        ("unix:/run/redis/redis.sock?db=3", "unix:/run/redis/redis.sock?db=3", nil),
        ("rediss://:pw@redis.example:6390/1", "rediss://redis.example:6390/1", "pw"),
    ])
    func redisAddresses(url: String, shown: String, password: String?) throws {
        let e = try RedisStore.Endpoint(url)
        #expect(e.description == shown)
        #expect(e.password == password)
    }

    @Test(arguments: ["redis:/127.0.0.1", "http://127.0.0.1", "redis://host:99999", "redis://h/x", "unix:relative.sock"])
    func badRedisAddressesSayWhy(url: String) {
        #expect(throws: StateError.self) { try RedisStore.Endpoint(url) }
    }

    @Test func aRedisThatIsDownFailsFastAfterTheFirstTry() throws {
        // Nothing listens on this socket path: the first call fails, the next ones at once.
        let r = RedisStore(try RedisStore.Endpoint("unix:/nonexistent/mxgate-test.sock"), timeout: 0.2, retryInterval: 5)
        #expect(throws: StateError.self) { try r.get(["k"]) }
        let t = Date()
        #expect(throws: StateError.self) { try r.get(["k"]) }
        #expect(Date().timeIntervalSince(t) < 0.1)
    }
}
