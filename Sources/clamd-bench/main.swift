// clamd-bench: what mxgate's clamd path costs over clamd's own INSTREAM rate (issue 4).
//
//   bench/clamd.sh        (starts a private clamd, then runs this against it)
//   clamd-bench SOCKET
//
// For 4 KB, 10 KB and 1 MB clean messages, sequentially and with 4 scans in
// flight, it measures:
//  - raw: a minimal blocking INSTREAM client (connect, zINSTREAM, chunks,
//    reply, close per scan; and the same over one IDSESSION), clamd's own
//    rate with nothing of mxgate in the way; the faster counts;
//  - mxgate: ClamdClient.scan reading the message from a MessageBody, as a
//    session's end of data does (a thread-pool job, pooled sessions).
// It prints scans per second for each and the ratio of mxgate's time per
// scan to the raw one (goal: under 1.2).
import Checks
import Foundation
import NIOCore
import Relay

let socketPath = CommandLine.arguments.dropFirst().first ?? "/tmp/mxgate-bench-clamd/clamd.sock"

func message(size: Int) -> [UInt8] {
    var m = Array("From: a@sender.example\r\nTo: b@example.com\r\nSubject: clean\r\n\r\n".utf8)
    let line = Array("The quarterly figures are in the attached report, nothing to see here.\r\n".utf8)
    while m.count + line.count <= size { m += line }
    return m
}

func connectUnix(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in path.utf8.enumerated() { raw[i] = b }
    }
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    precondition(rc == 0, "cannot connect to clamd at \(path)")
    return fd
}

func sendAll(_ fd: Int32, _ b: [UInt8]) {
    var off = 0
    while off < b.count { off += b.withUnsafeBytes { send(fd, $0.baseAddress! + off, b.count - off, 0) } }
}

func readUntilNul(_ fd: Int32) -> String {
    var out: [UInt8] = []
    var c: UInt8 = 0
    while recv(fd, &c, 1, 0) == 1 && c != 0 { out.append(c) }
    return String(decoding: out, as: UTF8.self)
}

func rawInstream(_ fd: Int32, _ msg: [UInt8]) -> String {
    sendAll(fd, Array("zINSTREAM\0".utf8))
    var i = 0
    while i < msg.count {
        let n = min(65536, msg.count - i)
        sendAll(fd, withUnsafeBytes(of: UInt32(n).bigEndian) { Array($0) } + msg[i..<(i + n)])
        i += n
    }
    sendAll(fd, [0, 0, 0, 0])
    return readUntilNul(fd)
}

/// Runs `body` `count` times in each of `parallel` threads; scans per second.
func rate(_ count: Int, parallel: Int, _ body: @escaping @Sendable () -> Void) -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    DispatchQueue.concurrentPerform(iterations: parallel) { _ in
        for _ in 0..<count { body() }
    }
    return Double(count * parallel) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
}

func mxgateRate(_ client: ClamdClient, _ msg: [UInt8], _ count: Int, parallel: Int) async -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    await withTaskGroup(of: Void.self) { group in
        for _ in 0..<parallel {
            group.addTask {
                for _ in 0..<count {
                    let body = MessageBody(memoryThreshold: 4 * 1024 * 1024, tempDirectory: "/tmp")
                    var b = ByteBuffer()
                    b.writeBytes(msg)
                    try! body.append(b)
                    let r = try! await client.scan { emit in try body.forEachPieceBlocking(emit) }
                    precondition(r == .clean)
                }
            }
        }
    }
    return Double(count * parallel) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

let client = ClamdClient(address: .unix(socketPath), timeout: 30)
print("clamd-bench socket=\(socketPath)")
for (label, size, count) in [("4KB", 4096, 400), ("10KB", 10 * 1024, 400), ("1MB", 1024 * 1024, 30)] {
    let msg = message(size: size)
    for parallel in [1, 4] {
        let n = count / parallel
        var raw: [Double] = [], ours: [Double] = []
        for _ in 0..<3 {
            let perScan = rate(n, parallel: parallel) {
                let fd = connectUnix(socketPath)
                precondition(rawInstream(fd, msg) == "stream: OK")
                close(fd)
            }
            let session = rate(1, parallel: parallel) {
                let fd = connectUnix(socketPath)
                sendAll(fd, Array("zIDSESSION\0".utf8))
                for i in 1...n { precondition(rawInstream(fd, msg) == "\(i): stream: OK") }
                sendAll(fd, Array("zEND\0".utf8))
                close(fd)
            } * Double(n)
            raw.append(max(perScan, session))
            ours.append(await mxgateRate(client, msg, n, parallel: parallel))
        }
        let r = median(raw), o = median(ours)
        print("size=\(label) parallel=\(parallel) scans=\(n * parallel)x3 raw_scans_per_sec=\(String(format: "%.0f", r)) mxgate_scans_per_sec=\(String(format: "%.0f", o)) overhead=\(String(format: "%.2f", r / o))x")
    }
}
client.close()
