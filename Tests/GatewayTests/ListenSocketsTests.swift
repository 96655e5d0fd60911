import Foundation
import Testing

@testable import Gateway

/// The listening sockets, checked on the kernel's side (getsockname,
/// getsockopt), on loopback only.
struct ListenSocketsTests {
    typealias Listen = GatewayConfig.Listen

    func port(_ fd: Int32) -> Int { ListenSockets.boundPort(fd) }

    func option(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
        var v: Int32 = -1
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, level, name, &v, &len)
        return v
    }

    @Test func portZeroGivesEveryLoopTheSamePort() throws {
        let fds = try ListenSockets.open(Listen(host: "127.0.0.1", port: 0), count: 3, siblings: [])
        defer { fds.forEach { close($0) } }
        #expect(fds.count == 3)
        let p = port(fds[0])
        #expect(p > 0)
        #expect(fds.map(port) == [p, p, p])
        #expect(fds.allSatisfy { option($0, SOL_SOCKET, SO_REUSEPORT) == 1 })
        // Not inherited by programs mxgate might start.
        #expect(fds.allSatisfy { fcntl($0, F_GETFD) & FD_CLOEXEC != 0 })
    }

    @Test func aSecondGatewayOnTheSamePortIsRefused() throws {
        let first = try ListenSockets.open(Listen(host: "127.0.0.1", port: 0), count: 2, siblings: [])
        defer { first.forEach { close($0) } }
        let taken = Listen(host: "127.0.0.1", port: port(first[0]))
        // SO_REUSEPORT on both sides would have let it in; the probe does not.
        #expect {
            try ListenSockets.open(taken, count: 2, siblings: [])
        } throws: { "\($0)".contains("Address already in use") && "\($0)".contains("127.0.0.1:\(taken.port)") }
    }

    /// What closes the probe's window: a listening socket on the port that is
    /// not ours. One only bound is not listed by the kernel, but each side
    /// counts after its own listen, so the later of two always sees the other.
    @Test func strangersOnThePortAreSeen() throws {
        let fds = try ListenSockets.open(Listen(host: "127.0.0.1", port: 0), count: 2, siblings: [])
        defer { fds.forEach { close($0) } }
        let p = port(fds[0])
        #expect(ListenSockets.strangers(sharing: fds) == 0)
        func foreign(_ host: String) throws -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var on: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, socklen_t(MemoryLayout<Int32>.size))
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(p).bigEndian
            inet_pton(AF_INET, host, &a.sin_addr)
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try #require(rc == 0)
            return fd
        }
        // Another address on the same port shares nothing.
        let elsewhere = try foreign("127.0.0.2")
        defer { close(elsewhere) }
        #expect(ListenSockets.strangers(sharing: fds) == 0)
        let intruder = try foreign("127.0.0.1")
        defer { close(intruder) }
        #expect(ListenSockets.strangers(sharing: fds) == 0)
        listen(intruder, 1)
        #expect(ListenSockets.strangers(sharing: fds) == 1)
        // From the other side, ours are the strangers.
        #expect(ListenSockets.strangers(sharing: [intruder]) == 2)
    }

    /// The kernel sets IPV6_V6ONLY itself on a socket bound to ::1, so the
    /// decision is checked here; a wildcard bind would leave loopback.
    @Test func ipv6ServesIPv6OnlyWhenTheSamePortIsListedForIPv4() {
        let v4 = Listen(host: "0.0.0.0", port: 25), v6 = Listen(host: "::", port: 25)
        #expect(ListenSockets.ipv6Only(v6, siblings: [v4, v6]))
        #expect(!ListenSockets.ipv6Only(v6, siblings: [v6]))
        #expect(!ListenSockets.ipv6Only(v6, siblings: [Listen(host: "0.0.0.0", port: 2525), v6]))
    }

    @Test func inheritedDescriptorsStayOpenAcrossExec() throws {
        let fds = try ListenSockets.open(Listen(host: "127.0.0.1", port: 0), count: 2, siblings: [], inheritable: true)
        defer { fds.forEach { close($0) } }
        #expect(fds.allSatisfy { fcntl($0, F_GETFD) & FD_CLOEXEC == 0 })
    }

    @Test func aNameThatDoesNotResolveIsAClearError() {
        #expect {
            try ListenSockets.open(Listen(host: "no-such-host.invalid", port: 0), count: 1, siblings: [])
        } throws: { "\($0)".contains("cannot resolve no-such-host.invalid") }
    }
}
