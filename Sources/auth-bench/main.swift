import Auth
import Checks
import Foundation

// bench/dkim.sh: the CPU one message's DKIM verification costs, for a 4 KB
// message with two signatures (rsa-2048 and ed25519, signed by dkimpy) over
// the same message unsigned. Keys come from a zone in memory, as from a warm
// DNS cache. Arguments: SIGNED.eml UNSIGNED.eml ZONEFILE [COUNT].

func cpuMicros() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec)
}

let args = CommandLine.arguments
guard args.count >= 4, let signed = FileManager.default.contents(atPath: args[1]),
      let unsigned = FileManager.default.contents(atPath: args[2]),
      let zoneText = try? String(contentsOfFile: args[3], encoding: .utf8) else {
    print("usage: auth-bench SIGNED.eml UNSIGNED.eml ZONEFILE [COUNT]")
    exit(2)
}
let count = args.count > 4 ? Int(args[4]) ?? 2000 : 2000
let zone = try DNSZone.load(masterFile: zoneText)
let verifier = DKIMVerifier(dns: zone)

func verify(_ message: [UInt8]) async -> [DKIMOutcome] {
    let m = DKIMMessage(header: message)
    if let offset = m.bodyOffset, m.signatureCount > 0 { message[offset...].withUnsafeBytes { m.feedBody($0) } }
    m.finishBody()
    return await m.verify(with: verifier)
}

let s = Array(signed), u = Array(unsigned)
let check = await verify(s)
precondition(check.count == 2 && check.allSatisfy { $0.result == .pass }, "both signatures must pass: \(check)")
for (label, msg) in [("unsigned", u), ("signed", s)] {
    var rounds: [Double] = []
    for _ in 0..<3 {
        let t0 = cpuMicros()
        for _ in 0..<count { _ = await verify(msg) }
        rounds.append((cpuMicros() - t0) / Double(count))
    }
    let r = rounds.sorted()
    print("\(label) bytes=\(msg.count) messages=\(count)x3 cpu_us_per_message=\(r.map { String(format: "%.1f", $0) }.joined(separator: ",")) median=\(String(format: "%.1f", r[1]))")
}
