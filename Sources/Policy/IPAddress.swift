/// An IPv4 or IPv6 address as a 128-bit number (IPv4 mapped into
/// ::ffff:0:0/96), so one CIDR table serves both families.
public struct IPAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: UInt128
    public let isV4: Bool

    public init(v4 bits: UInt32) {
        value = (UInt128(0xFFFF) << 32) | UInt128(bits)
        isV4 = true
    }

    public init(v6 bits: UInt128) {
        if bits >> 32 == 0xFFFF {
            self.init(v4: UInt32(truncatingIfNeeded: bits))
        } else {
            self.init(raw: bits, isV4: false)
        }
    }

    private init(raw: UInt128, isV4: Bool) {
        value = raw
        self.isV4 = isV4
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool { a.value < b.value }

    /// Parses dotted IPv4 or RFC 4291 IPv6 text (with "::" and an embedded IPv4 tail).
    public init?(_ text: String) {
        if let v4 = IPAddress.parseV4(Substring(text)) {
            self.init(v4: v4)
        } else if let v6 = IPAddress.parseV6(text) {
            self.init(v6: v6)
        } else {
            return nil
        }
    }

    static func parseV4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(p), n <= 255 else { return nil }
            if p.count > 1 && p.first == "0" { return nil }  // no octal look-alikes
            out = out << 8 | n
        }
        return out
    }

    static func parseV6(_ text: String) -> UInt128? {
        var s = Substring(text)
        if let pct = s.firstIndex(of: "%") { s = s[..<pct] }  // zone id
        guard s.contains(":") else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawGap = false
        var halves: [String] = []
        if let r = s.firstRange(of: "::") {
            halves = [String(s[..<r.lowerBound]), String(s[r.upperBound...])]
            if halves[1].contains("::") { return nil }
        } else {
            halves = [String(s)]
        }
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, allowV4: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (i, item) in items.enumerated() {
                if allowV4 && i == items.count - 1 && item.contains(".") {
                    guard let v4 = parseV4(item) else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                } else {
                    guard (1...4).contains(item.count), let g = UInt16(item, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        if halves.count == 2 {
            sawGap = true
            guard let h = groups(halves[0], allowV4: false), let t = groups(halves[1], allowV4: true) else { return nil }
            head = h
            tail = t
        } else {
            guard let h = groups(halves[0], allowV4: true) else { return nil }
            head = h
        }
        let total = head.count + tail.count
        if sawGap { guard total <= 7 else { return nil } } else { guard total == 8 else { return nil } }
        let all = head + Array(repeating: 0, count: 8 - total) + tail
        return all.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
    }

    public var description: String {
        if isV4 {
            let v = UInt32(truncatingIfNeeded: value)
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        }
        let groups = (0..<8).map { UInt16(truncatingIfNeeded: value >> (112 - 16 * UInt128($0))) }
        // RFC 5952: compress the longest run of zero groups (length ≥ 2).
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: Range<Int>) -> String { r.map { String(groups[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }

    /// The reversed name for a PTR lookup (in-addr.arpa / ip6.arpa).
    public var reverseName: String {
        if isV4 {
            let v = UInt32(truncatingIfNeeded: value)
            return "\(v & 0xFF).\(v >> 8 & 0xFF).\(v >> 16 & 0xFF).\(v >> 24).in-addr.arpa"
        }
        var nibbles: [String] = []
        for k in 0..<32 { nibbles.append(String(UInt8(truncatingIfNeeded: value >> (4 * UInt128(k))) & 0xF, radix: 16)) }
        return nibbles.joined(separator: ".") + ".ip6.arpa"
    }
}

/// A network in CIDR notation. IPv4 prefixes are stored as /96+n.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let network: UInt128
    /// Prefix length in the 128-bit space.
    public let length: Int
    public let isV4: Bool

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let addr = IPAddress(String(parts[0])) else { return nil }
        let maxLen = addr.isV4 ? 32 : 128
        var len = maxLen
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...maxLen).contains(n), parts[1].allSatisfy(\.isNumber) else { return nil }
            len = n
        }
        isV4 = addr.isV4
        length = addr.isV4 ? 96 + len : len
        network = addr.value & CIDR.mask(length)
    }

    static func mask(_ length: Int) -> UInt128 {
        length == 0 ? 0 : ~UInt128(0) << (128 - length)
    }

    public func contains(_ ip: IPAddress) -> Bool { ip.value & CIDR.mask(length) == network }

    public var description: String {
        let a = isV4 ? IPAddress(v4: UInt32(truncatingIfNeeded: network)) : IPAddress(v6: network)
        return "\(a)/\(isV4 ? length - 96 : length)"
    }
}
