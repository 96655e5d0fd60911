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
        // Cheap dispatch on the characters before any parsing.
        var hasColon = false
        var hasDot = false
        for b in text.utf8 {
            if b == 58 { hasColon = true } else if b == 46 { hasDot = true }
        }
        if !hasColon {
            guard hasDot, let v4 = IPAddress.parseV4Fast(text) else { return nil }
            self.init(v4: v4)
        } else if let v4 = IPAddress.parseV4(Substring(text)) {
            self.init(v4: v4)
        } else if let v6 = IPAddress.parseV6(text) {
            self.init(v6: v6)
        } else {
            return nil
        }
    }

    /// Dotted quad without allocation: four decimal parts 0–255, no leading zeros.
    static func parseV4Fast(_ s: String) -> UInt32? {
        var out: UInt32 = 0
        var part: UInt32 = 0
        var digits = 0
        var parts = 0
        var leadingZero = false
        for b in s.utf8 {
            if b == 46 {
                guard digits > 0, parts < 3 else { return nil }
                out = out << 8 | part
                parts += 1
                part = 0
                digits = 0
                leadingZero = false
            } else if b >= 48 && b <= 57 {
                if digits == 1 && leadingZero { return nil }
                if digits == 0 && b == 48 { leadingZero = true }
                part = part * 10 + UInt32(b - 48)
                digits += 1
                guard digits <= 3, part <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, parts == 3 else { return nil }
        return out << 8 | part
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

    /// RFC 4291 §2.2 text forms in one pass over the bytes: up to eight hex
    /// groups, one "::", an optional dotted IPv4 tail, an optional %zone.
    static func parseV6(_ text: String) -> UInt128? {
        var utf8 = Array(text.utf8)
        if let pct = utf8.firstIndex(of: 37) { utf8.removeSubrange(pct...) }  // zone id
        let n = utf8.count
        guard n >= 2 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var gap = false
        var i = 0
        if utf8[0] == 58 {
            guard utf8[1] == 58 else { return nil }
            gap = true
            i = 2
        }
        while i < n {
            // A dotted IPv4 tail ends the address.
            var j = i
            var isV4 = false
            while j < n && utf8[j] != 58 {
                if utf8[j] == 46 { isV4 = true }
                j += 1
            }
            if isV4 {
                guard j == n, let v4 = parseV4Fast(String(decoding: utf8[i..<n], as: UTF8.self)) else { return nil }
                let groups = [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
                if gap { tail += groups } else { head += groups }
                i = n
                break
            }
            guard j - i >= 1, j - i <= 4 else { return nil }
            var g: UInt16 = 0
            for k in i..<j {
                let b = utf8[k]
                let v: UInt16
                switch b {
                case 48...57: v = UInt16(b - 48)
                case 65...70: v = UInt16(b - 55)
                case 97...102: v = UInt16(b - 87)
                default: return nil
                }
                g = g << 4 | v
            }
            if gap { tail.append(g) } else { head.append(g) }
            i = j
            if i < n {
                i += 1  // the ':'
                if i < n && utf8[i] == 58 {
                    guard !gap else { return nil }
                    gap = true
                    i += 1
                } else if i == n {
                    return nil  // a trailing single ':'
                }
            }
        }
        let total = head.count + tail.count
        if gap { guard total <= 7 else { return nil } } else { guard total == 8 else { return nil } }
        var value: UInt128 = 0
        for g in head { value = value << 16 | UInt128(g) }
        for _ in 0..<(8 - total) { value <<= 16 }
        for g in tail { value = value << 16 | UInt128(g) }
        return value
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
        let slash = text.utf8.firstIndex(of: 47)
        guard let addr = IPAddress(slash.map { String(text[..<$0]) } ?? text) else { return nil }
        let maxLen = addr.isV4 ? 32 : 128
        var len = maxLen
        if let slash {
            let digits = text.utf8[text.utf8.index(after: slash)...]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
            let n = digits.reduce(0) { $0 * 10 + Int($1 - 48) }
            guard n <= maxLen else { return nil }
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

    /// The network's highest address, in the 128-bit space.
    public var lastValue: UInt128 { network | ~CIDR.mask(length) }

    public var description: String {
        let a = isV4 ? IPAddress(v4: UInt32(truncatingIfNeeded: network)) : IPAddress(v6: network)
        return "\(a)/\(isV4 ? length - 96 : length)"
    }
}
