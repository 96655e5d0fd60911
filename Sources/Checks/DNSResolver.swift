import CUnbound
import Foundation
import Policy
import Synchronization
import Threads

/// Why a DNS lookup gave no answer. `nxdomain` and `noData` are answers
/// (the name or record does not exist); the others are failures, which a
/// policy turns into a tempfail, never an accept.
public enum DNSError: Error, Sendable, Equatable, CustomStringConvertible {
    case nxdomain
    case noData
    case serverFailure(String)
    case timeout
    case resolver(String)

    public var isDefinite: Bool { self == .nxdomain || self == .noData }

    public var description: String {
        switch self {
        case .nxdomain: return "no such name"
        case .noData: return "no such record"
        case .serverFailure(let s): return "server failure (\(s))"
        case .timeout: return "timed out"
        case .resolver(let s): return "resolver error: \(s)"
        }
    }
}

/// An asynchronous, validating-capable stub resolver over libunbound,
/// pointed at configured servers (tests use a DNS server on loopback). One
/// thread pumps libunbound's results; queries from any task wait on a
/// continuation with a deadline, and a query past its deadline is cancelled.
public final class DNSResolver: @unchecked Sendable {
    // `ctx` is only used through libunbound's thread-safe API; `pending`
    // is guarded by its Mutex.
    private let ctx: OpaquePointer
    /// The longest one lookup may take.
    public let timeout: Double
    private let stopped = Atomic<Bool>(false)
    private let pumpDone = DispatchSemaphore(value: 0)
    /// Wakes the pump thread to stop, so it can sleep in poll(2) with no
    /// timeout instead of waking ten times a second to look at `stopped`.
    private let stopPipe: (read: Int32, write: Int32)
    /// Definite answers, for their TTL: asked again, they are answered without leaving the caller's thread.
    let answers = DNSAnswerCache()

    /// `servers` as "IP" or "IP@PORT" forms are built from "IP:PORT"; empty
    /// means the system's resolv.conf.
    public init(servers: [(String, Int)], timeout: Double) throws(DNSError) {
        guard let c = ub_ctx_create() else { throw .resolver("cannot create a libunbound context") }
        ctx = c
        self.timeout = timeout
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { ub_ctx_delete(c); throw .resolver("pipe: \(String(cString: strerror(errno)))") }
        for e in ends { _ = fcntl(e, F_SETFD, FD_CLOEXEC) }
        stopPipe = (ends[0], ends[1])
        _ = ub_ctx_set_option(c, "do-not-query-localhost:", "no")
        // Lookups here are for policy decisions; one slow server must not
        // hold a session for minutes, so keep libunbound's own retries short.
        _ = ub_ctx_set_option(c, "infra-cache-min-rtt:", "50")
        // libunbound answers reverse lookups for loopback and private ranges
        // itself (RFC 6303 local zones). A gateway asks its configured
        // servers instead: they know the names of internal clients.
        var privateZones = ["127.in-addr.arpa.", "10.in-addr.arpa.", "168.192.in-addr.arpa.", "254.169.in-addr.arpa.",
                            "d.f.ip6.arpa.", "8.e.f.ip6.arpa.", "9.e.f.ip6.arpa.", "a.e.f.ip6.arpa.", "b.e.f.ip6.arpa.",
                            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."]
        privateZones += (16...31).map { "\($0).172.in-addr.arpa." }
        for zone in privateZones { _ = ub_ctx_set_option(c, "local-zone:", "\(zone) transparent") }
        if servers.isEmpty {
            if ub_ctx_resolvconf(c, nil) != 0 { _ = ub_ctx_set_fwd(c, "127.0.0.1") }
        } else {
            for (host, port) in servers {
                let rc = ub_ctx_set_fwd(c, "\(host)@\(port)")
                if rc != 0 { ub_ctx_delete(c); Foundation.close(ends[0]); Foundation.close(ends[1]); throw .resolver("bad server \(host):\(port): \(String(cString: ub_strerror(rc)))") }
            }
        }
        // Async queries resolve in a thread libunbound starts; results come
        // back through ub_fd, which our pump thread processes.
        _ = ub_ctx_async(c, 1)
        detachNamedThread("mxgate-dns") { [self] in self.pump() }
    }

    deinit {
        ub_ctx_delete(ctx)
        Foundation.close(stopPipe.read)
        Foundation.close(stopPipe.write)
    }

    /// Stops the pump thread; pending queries fail with `.resolver`.
    public func close() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        var one: UInt8 = 1
        _ = write(stopPipe.write, &one, 1)
        pumpDone.wait()
    }

    private func pump() {
        let fd = ub_fd(ctx)
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)]
        while !stopped.load(ordering: .relaxed) {
            let r = poll(&fds, 2, -1)
            if r > 0 && fds[0].revents != 0 { _ = ub_process(ctx) }
        }
        pumpDone.signal()
    }

    /// One query's waiting side, handed to libunbound as `mydata`.
    final class Waiter: @unchecked Sendable {
        let state = Mutex<(done: Bool, continuation: CheckedContinuation<Result<[[UInt8]], DNSError>, Never>?)>((false, nil))
        var asyncID: Int32 = 0
        let key: DNSAnswerCache.Key
        let cache: DNSAnswerCache

        init(key: DNSAnswerCache.Key, cache: DNSAnswerCache) {
            self.key = key
            self.cache = cache
        }

        /// libunbound's answer, kept for its TTL and handed to the query.
        func answered(_ result: Result<[[UInt8]], DNSError>, ttl: Int32) {
            cache.keep(result, for: key, ttl: ttl)
            finish(result)
        }

        func finish(_ result: Result<[[UInt8]], DNSError>) {
            let c = state.withLock { s -> CheckedContinuation<Result<[[UInt8]], DNSError>, Never>? in
                guard !s.done else { return nil }
                s.done = true
                defer { s.continuation = nil }
                return s.continuation
            }
            c?.resume(returning: result)
        }
    }

    /// The raw rdata of every record of `type` (1 = A, 28 = AAAA, 12 = PTR)
    /// for `name`, waiting at most the resolver's timeout, or `timeout` if
    /// that is shorter (what is left of a message's DNS budget).
    public func query(_ name: String, type: Int32, timeout: Double? = nil) async -> Result<[[UInt8]], DNSError> {
        let key = DNSAnswerCache.Key(name: name.lowercased(), type: type)
        if let kept = answers.answer(key) { return kept }
        let wait = min(timeout ?? self.timeout, self.timeout)
        let waiter = Waiter(key: key, cache: answers)
        let box = Unmanaged.passRetained(waiter)
        let callback: ub_callback_type = { mydata, err, result in
            let w = Unmanaged<Waiter>.fromOpaque(mydata!).takeRetainedValue()
            defer { if let result { ub_resolve_free(result) } }
            if err != 0 {
                w.finish(.failure(.resolver(String(cString: ub_strerror(err)))))
                return
            }
            guard let r = result?.pointee else { w.finish(.failure(.resolver("no result"))); return }
            if r.nxdomain != 0 { w.answered(.failure(.nxdomain), ttl: r.ttl); return }
            if r.rcode != 0 { w.finish(.failure(.serverFailure("rcode \(r.rcode)"))); return }
            guard r.havedata != 0, let data = r.data, let len = r.len else { w.answered(.failure(.noData), ttl: r.ttl); return }
            var out: [[UInt8]] = []
            var i = 0
            while let p = data[i] {
                out.append(Array(UnsafeRawBufferPointer(start: p, count: Int(len[i]))))
                i += 1
            }
            w.answered(.success(out), ttl: r.ttl)
        }
        return await withCheckedContinuation { (c: CheckedContinuation<Result<[[UInt8]], DNSError>, Never>) in
            waiter.state.withLock { $0.continuation = c }
            var id: Int32 = 0
            let rc = ub_resolve_async(ctx, name, type, 1, box.toOpaque(), callback, &id)
            if rc != 0 {
                box.release()
                waiter.finish(.failure(.resolver(String(cString: ub_strerror(rc)))))
                return
            }
            waiter.asyncID = id
            let qid = id
            DispatchQueue.global().asyncAfter(deadline: .now() + wait) { [self] in
                // If still pending, cancel: then libunbound never calls back, so release here.
                let pending = waiter.state.withLock { !$0.done }
                if pending, ub_cancel(self.ctx, qid) == 0 {
                    box.release()
                    waiter.finish(.failure(.timeout))
                }
            }
        }
    }

    /// The addresses to try for mail to `domain` (RFC 5321 §5.1): its MX
    /// hosts by preference, each host's IPv4 then IPv6 addresses; with no MX
    /// records the domain's own addresses (the implicit MX). A null MX
    /// (RFC 7505) gives an empty list: the domain takes no mail.
    public func mailHosts(_ domain: String) async -> Result<[String], DNSError> {
        var hosts: [String]
        switch await query(domain, type: 15) {
        case .success(let records):
            let mx = records.compactMap { r -> (Int, String)? in
                guard r.count >= 3, let name = Self.decodeName(Array(r[2...])) else { return nil }
                return (Int(r[0]) << 8 | Int(r[1]), name)
            }.sorted { $0.0 < $1.0 }
            if mx.count == 1 && mx[0].1.isEmpty { return .success([]) }
            hosts = mx.map(\.1).filter { !$0.isEmpty }
        case .failure(.noData):
            hosts = [domain]
        case .failure(let e):
            return .failure(e)
        }
        var out: [String] = []
        var firstFailure: DNSError?
        for host in hosts.prefix(10) {
            for type: Int32 in [1, 28] {
                switch await query(host, type: type) {
                case .success(let rdata):
                    out += rdata.compactMap(Self.address).map(\.description).filter { !out.contains($0) }
                case .failure(let e) where !e.isDefinite:
                    firstFailure = firstFailure ?? e
                case .failure:
                    break
                }
            }
        }
        if out.isEmpty, let f = firstFailure { return .failure(f) }
        if out.isEmpty && hosts == [domain] { return .failure(.noData) }
        return .success(out)
    }

    /// A wire-format domain name (length-prefixed labels) as text without the final dot.
    static func decodeName(_ wire: [UInt8]) -> String? {
        var labels: [String] = []
        var i = 0
        while i < wire.count {
            let n = Int(wire[i])
            if n == 0 { return labels.joined(separator: ".").lowercased() }
            guard n < 64, i + 1 + n <= wire.count else { return nil }
            labels.append(String(decoding: wire[(i + 1)...(i + n)], as: UTF8.self))
            i += 1 + n
        }
        return nil
    }

    static func address(_ rdata: [UInt8]) -> IPAddress? {
        if rdata.count == 4 {
            return IPAddress(v4: rdata.reduce(0) { $0 << 8 | UInt32($1) })
        }
        if rdata.count == 16 {
            return IPAddress(v6: rdata.reduce(UInt128(0)) { $0 << 8 | UInt128($1) })
        }
        return nil
    }
}
