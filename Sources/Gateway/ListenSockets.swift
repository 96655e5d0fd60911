import Foundation
import NIOCore

/// The listening sockets of one `[server] listen` address: one per event
/// loop, sharing the port with SO_REUSEPORT, so the kernel hands each new
/// connection to one loop's socket and the loop that accepts it serves it.
/// With one socket, NIO registers every accepted connection on the next loop
/// round-robin, so every other connection crossed threads (an eventfd
/// wake-up, a futex, an extra epoll_wait): without that, 3 fewer system
/// calls and 7 % less CPU per proxied message (BENCHMARKS.md).
///
/// SO_REUSEPORT alone would let a second process of the same user bind the
/// port and silently take part of the connections, so a fixed port is first
/// bound without it: that fails with "Address already in use" if anything
/// listens there, including another mxgate, which does the same check. Two
/// processes started in the same instant could both pass that probe, so once
/// listening, the listeners on the port are counted (`strangers`): one not
/// ours means another process got in, and the later of the two (or both)
/// gives up rather than share.
enum ListenSockets {
    /// Pending connections each socket queues (the kernel caps it at
    /// net.core.somaxconn): a burst of new connections waits, not refused.
    static let backlog: Int32 = 1024

    /// Bound and listening descriptors for `l`, `count` of them (at least one).
    /// `siblings` are all configured addresses (see `ipv6Only`).
    /// `inheritable` leaves close-on-exec off, for the exec into the
    /// unprivileged user (Privileges).
    static func open(_ l: GatewayConfig.Listen, count: Int, siblings: [GatewayConfig.Listen],
                     inheritable: Bool = false) throws -> [Int32] {
        let address: SocketAddress
        do {
            address = try (try? SocketAddress(ipAddress: l.host, port: l.port))
                ?? SocketAddress.makeAddressResolvingHost(l.host, port: l.port)
        } catch {
            throw Privileges.Failure.bind("\(l): cannot resolve \(l.host): \(error)")
        }
        let v6Only: Bool
        if case .v6 = address { v6Only = ipv6Only(l, siblings: siblings) } else { v6Only = false }
        if l.port != 0 {
            // The exclusivity probe: bound without SO_REUSEPORT, then closed.
            close(try socket(for: address, l, reusePort: false, v6Only: v6Only, inheritable: false, listen: false))
        }
        var fds: [Int32] = []
        var target = address
        do {
            for _ in 0..<max(1, count) {
                let fd = try socket(for: target, l, reusePort: true, v6Only: v6Only, inheritable: inheritable, listen: true)
                fds.append(fd)
                // Port 0: the rest join the port the kernel chose for the first.
                if l.port == 0, fds.count == 1 { target.port = boundPort(fd) }
            }
            if l.port != 0, strangers(sharing: fds) > 0 {
                throw Privileges.Failure.bind("\(l): Address already in use (another process bound it at the same moment)")
            }
        } catch {
            fds.forEach { close($0) }
            throw error
        }
        return fds
    }

    /// Sockets of other processes (or other code) listening on the port of
    /// `fds` at an overlapping address, from /proc/net/tcp{,6}; sockets only
    /// bound are not listed there. 0 when /proc cannot be read: the probe
    /// then stands alone.
    static func strangers(sharing fds: [Int32]) -> Int {
        var ours = Set<String>()
        for fd in fds {
            var st = stat()
            if fstat(fd, &st) == 0 { ours.insert(String(st.st_ino)) }
        }
        var count = 0
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            // local_address is HEXADDR:HEXPORT; st 0A is LISTEN.
            let rows = text.split(separator: "\n").dropFirst().map { $0.split(separator: " ") }.filter { $0.count > 9 }
            let mine = rows.filter { ours.contains(String($0[9])) }.map { String($0[1]) }
            guard let local = mine.first, let colon = local.lastIndex(of: ":") else { continue }
            let address = local[..<colon], port = local[colon...]
            let wildcard = { (a: Substring) in a.allSatisfy { $0 == "0" } }
            for row in rows where !ours.contains(String(row[9])) && row[3] == "0A" {
                let other = row[1]
                guard let c = other.lastIndex(of: ":"), other[c...] == port else { continue }
                let otherAddress = other[..<c]
                if otherAddress == address || wildcard(otherAddress) || wildcard(address) { count += 1 }
            }
        }
        return count
    }

    /// An IPv6 address serves IPv6 only when an IPv4 address is listed with
    /// the same port: `[::]:25` would otherwise also take `0.0.0.0:25`'s
    /// connections, and the second bind fail.
    static func ipv6Only(_ l: GatewayConfig.Listen, siblings: [GatewayConfig.Listen]) -> Bool {
        l.port != 0 && siblings.contains { $0.port == l.port && !$0.host.contains(":") }
    }

    /// The port a socket is bound to (the one the kernel chose for port 0).
    static func boundPort(_ fd: Int32) -> Int {
        var storage = sockaddr_in6()  // the port sits at the same offset in sockaddr_in
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: storage.sin6_port))
    }

    private static func socket(for address: SocketAddress, _ l: GatewayConfig.Listen, reusePort: Bool,
                               v6Only: Bool, inheritable: Bool, listen: Bool) throws -> Int32 {
        let family: Int32
        switch address {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        default: throw Privileges.Failure.bind("\(l): not an IP address")
        }
        let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | (inheritable ? 0 : Int32(SOCK_CLOEXEC.rawValue)), 0)
        guard fd >= 0 else { throw Privileges.Failure.bind("\(l): \(String(cString: strerror(errno)))") }
        func set(_ level: Int32, _ name: Int32, _ on: Bool) {
            var v: Int32 = on ? 1 : 0
            setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
        set(SOL_SOCKET, SO_REUSEADDR, true)
        if reusePort { set(SOL_SOCKET, SO_REUSEPORT, true) }
        if family == AF_INET6 { set(Int32(IPPROTO_IPV6), IPV6_V6ONLY, v6Only) }
        let rc = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
        guard rc == 0, !listen || Glibc.listen(fd, backlog) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw Privileges.Failure.bind("\(l): \(e)")
        }
        return fd
    }
}
