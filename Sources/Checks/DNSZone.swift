import Foundation
import Policy

/// DNS answers from a zone held in memory, not the network: what
/// `mxgate test --dns-zone FILE` answers from, so a verdict that depended
/// on DNS can be reproduced offline, and what the SPF conformance suite runs
/// against. A name that is not in the zone does not exist (NXDOMAIN); a name
/// with no record of the type asked has no data; CNAMEs are followed.
public final class DNSZone: DNSLookup, @unchecked Sendable {
    // Filled before use, then only read: no lock on the lookup path.
    private struct Node {
        var records: [(type: Int32, rdata: [UInt8])] = []
        var cname: String?
        /// Queries for a type this name has no record of time out (the suite's TIMEOUT).
        var timesOut = false
    }

    private var nodes: [String: Node] = [:]

    public init() {}

    /// Answers from memory never time out (but a name marked with `addTimeout`).
    public var timeout: Double { .infinity }

    /// A name as compared: lower case, without the final dot.
    public static func key(_ name: String) -> String {
        var n = name.lowercased()
        while n.hasSuffix(".") { n.removeLast() }
        return n
    }

    public func add(_ name: String, type: Int32, rdata: [UInt8]) {
        let k = Self.key(name)
        if type == DNSType.cname, let target = DNSRecord.name(rdata) { nodes[k, default: Node()].cname = target }
        nodes[k, default: Node()].records.append((type, rdata))
    }

    /// The name exists; what it has no record of times out when asked.
    public func addTimeout(_ name: String) { nodes[Self.key(name), default: Node()].timesOut = true }

    /// The name exists with no records (yet).
    public func addName(_ name: String) { _ = nodes[Self.key(name), default: Node()] }

    public func query(_ name: String, type: Int32, timeout: Double?) async -> Result<[[UInt8]], DNSError> {
        answer(name, type: type)
    }

    public func answer(_ name: String, type: Int32) -> Result<[[UInt8]], DNSError> {
        var k = Self.key(name)
        for _ in 0..<8 {
            guard let node = nodes[k] else { return .failure(.nxdomain) }
            let found = node.records.filter { $0.type == type }.map(\.rdata)
            if !found.isEmpty { return .success(found) }
            if let target = node.cname, type != DNSType.cname {
                k = Self.key(target)
                continue
            }
            return .failure(node.timesOut ? .timeout : .noData)
        }
        return .failure(.serverFailure("CNAME chain too long"))
    }

    // MARK: rdata encoders

    public static func wireName(_ name: String) -> [UInt8] {
        var out: [UInt8] = []
        for label in key(name).split(separator: ".", omittingEmptySubsequences: true) {
            let bytes = Array(label.utf8.prefix(63))
            out.append(UInt8(bytes.count))
            out += bytes
        }
        out.append(0)
        return out
    }

    public static func address(_ ip: IPAddress) -> [UInt8] {
        if ip.isV4 { return (0..<4).map { UInt8(truncatingIfNeeded: ip.value >> (24 - 8 * UInt128($0))) } }
        return (0..<16).map { UInt8(truncatingIfNeeded: ip.value >> (120 - 8 * UInt128($0))) }
    }

    /// TXT rdata from its strings; a string over 255 bytes is split, as a zone compiler does.
    public static func text(_ strings: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for s in strings {
            var rest = s[...]
            repeat {
                let piece = rest.prefix(255)
                out.append(UInt8(piece.count))
                out += piece
                rest = rest.dropFirst(piece.count)
            } while !rest.isEmpty
        }
        return out
    }

    public static func mx(_ preference: Int, _ host: String) -> [UInt8] {
        [UInt8(truncatingIfNeeded: preference >> 8), UInt8(truncatingIfNeeded: preference)] + wireName(host)
    }
}
