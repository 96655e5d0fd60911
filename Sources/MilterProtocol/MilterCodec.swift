/// Splits a byte stream into milter packets: fed whatever the socket gave,
/// it hands back each whole packet's code and data, and refuses a length
/// that is zero or over `Milter.maxPacket` (a peer that is not speaking
/// the protocol) before buffering any of it.
public struct MilterFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    public let limit: Int

    public init(limit: Int = Milter.maxPacket) { self.limit = limit }

    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if start > 4096 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole packet, nil when more bytes are needed.
    public mutating func next() throws(MilterProtocolError) -> (code: UInt8, data: [UInt8])? {
        guard buffer.count - start >= 4 else { return nil }
        let n = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard n >= 1 else { throw MilterProtocolError("a packet of length 0") }
        guard n <= limit else { throw MilterProtocolError("a packet of \(n) bytes, over the \(limit) allowed") }
        guard buffer.count - start >= 4 + n else { return nil }
        let code = buffer[start + 4]
        let data = Array(buffer[(start + 5)..<(start + 4 + n)])
        start += 4 + n
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return (code, data)
    }
}

/// Reads the fields of one packet's data.
struct MilterReader {
    let bytes: [UInt8]
    var pos = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { pos >= bytes.count }

    mutating func uint32() throws(MilterProtocolError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw MilterProtocolError("a 32-bit field runs past the packet") }
        defer { pos += 4 }
        return UInt32(bytes[pos]) << 24 | UInt32(bytes[pos + 1]) << 16 | UInt32(bytes[pos + 2]) << 8 | UInt32(bytes[pos + 3])
    }

    mutating func uint16() throws(MilterProtocolError) -> UInt16 {
        guard pos + 2 <= bytes.count else { throw MilterProtocolError("a 16-bit field runs past the packet") }
        defer { pos += 2 }
        return UInt16(bytes[pos]) << 8 | UInt16(bytes[pos + 1])
    }

    mutating func byte() throws(MilterProtocolError) -> UInt8 {
        guard pos < bytes.count else { throw MilterProtocolError("a field is missing") }
        defer { pos += 1 }
        return bytes[pos]
    }

    /// A NUL-terminated string (bytes that are not UTF-8 are kept as U+FFFD).
    mutating func string() throws(MilterProtocolError) -> String {
        guard let end = bytes[pos...].firstIndex(of: 0) else { throw MilterProtocolError("a string without its NUL") }
        defer { pos = end + 1 }
        return String(decoding: bytes[pos..<end], as: UTF8.self)
    }

    mutating func strings() throws(MilterProtocolError) -> [String] {
        var out: [String] = []
        while !atEnd { out.append(try string()) }
        return out
    }

    mutating func rest() -> [UInt8] {
        defer { pos = bytes.count }
        return Array(bytes[pos...])
    }
}

/// Writes packets.
struct MilterWriter {
    var out: [UInt8] = []
    mutating func uint32(_ v: UInt32) { out += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    mutating func uint16(_ v: UInt16) { out += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    /// A string and its NUL; a NUL inside would end it early on the other side, so it cannot be sent.
    mutating func string(_ s: String) {
        out += s.utf8.filter { $0 != 0 }
        out.append(0)
    }

    static func packet(_ code: UInt8, _ data: [UInt8]) -> [UInt8] {
        var w = MilterWriter()
        w.uint32(UInt32(data.count + 1))
        return w.out + [code] + data
    }
}

extension Milter.Stage {
    init?(symbolListIndex i: UInt32) {
        guard let s = Milter.Stage.allCases.first(where: { $0.symbolListIndex == i }) else { return nil }
        self = s
    }
}

extension MilterCommand {
    /// The command a packet carries (from the MTA).
    public static func parse(code: UInt8, data: [UInt8]) throws(MilterProtocolError) -> MilterCommand {
        var r = MilterReader(data)
        switch code {
        case UInt8(ascii: "O"):
            return .negotiate(version: try r.uint32(), actions: Milter.Actions(rawValue: try r.uint32()),
                              steps: Milter.Steps(rawValue: try r.uint32()))
        case UInt8(ascii: "D"):
            let stage = Milter.Stage(rawValue: try r.byte())
            let items = try r.strings()
            var pairs: [(String, String)] = []
            var i = 0
            while i + 1 < items.count {
                pairs.append((items[i], items[i + 1]))
                i += 2
            }
            return .macros(stage, pairs)
        case UInt8(ascii: "C"):
            let host = try r.string()
            let family = try r.byte()
            switch family {
            case UInt8(ascii: "U"): return .connect(hostname: host, address: .unknown)
            case UInt8(ascii: "L"):
                _ = try? r.uint16()
                return .connect(hostname: host, address: .unix(try r.string()))
            case UInt8(ascii: "4"):
                let port = try r.uint16()
                return .connect(hostname: host, address: .inet(try r.string(), port: port))
            case UInt8(ascii: "6"):
                let port = try r.uint16()
                var a = try r.string()
                if a.lowercased().hasPrefix("ipv6:") { a.removeFirst(5) }
                return .connect(hostname: host, address: .inet6(a, port: port))
            default:
                throw MilterProtocolError("an unknown address family '\(Character(UnicodeScalar(family)))'")
            }
        case UInt8(ascii: "H"): return .helo(try r.string())
        case UInt8(ascii: "M"):
            let all = try r.strings()
            guard let first = all.first else { throw MilterProtocolError("MAIL without a sender") }
            return .mail(first, arguments: Array(all.dropFirst()))
        case UInt8(ascii: "R"):
            let all = try r.strings()
            guard let first = all.first else { throw MilterProtocolError("RCPT without a recipient") }
            return .recipient(first, arguments: Array(all.dropFirst()))
        case UInt8(ascii: "T"): return .data
        case UInt8(ascii: "L"): return .header(name: try r.string(), value: try r.string())
        case UInt8(ascii: "N"): return .endOfHeaders
        case UInt8(ascii: "B"): return .body(data)
        case UInt8(ascii: "E"): return .endOfMessage(data)
        case UInt8(ascii: "A"): return .abort
        case UInt8(ascii: "Q"): return .quit
        case UInt8(ascii: "K"): return .quitNewConnection
        case UInt8(ascii: "U"): return .unknown(try r.string())
        default:
            throw MilterProtocolError("an unknown command '\(code >= 32 && code < 127 ? String(UnicodeScalar(code)) : "0x" + String(code, radix: 16))'")
        }
    }

    /// The packet for this command (what mxgate sends when it calls a milter).
    public func encoded() -> [UInt8] {
        var w = MilterWriter()
        let code: Character
        switch self {
        case .negotiate(let v, let a, let s):
            code = "O"
            w.uint32(v)
            w.uint32(a.rawValue)
            w.uint32(s.rawValue)
        case .macros(let stage, let pairs):
            code = "D"
            w.out.append(stage?.rawValue ?? UInt8(ascii: "C"))
            for (k, v) in pairs {
                w.string(k)
                w.string(v)
            }
        case .connect(let host, let address):
            code = "C"
            w.string(host)
            switch address {
            case .unknown: w.out.append(UInt8(ascii: "U"))
            case .unix(let path):
                w.out.append(UInt8(ascii: "L"))
                w.uint16(0)
                w.string(path)
            case .inet(let a, let port):
                w.out.append(UInt8(ascii: "4"))
                w.uint16(port)
                w.string(a)
            case .inet6(let a, let port):
                w.out.append(UInt8(ascii: "6"))
                w.uint16(port)
                w.string(a)
            }
        case .helo(let h):
            code = "H"
            w.string(h)
        case .mail(let s, let args):
            code = "M"
            ([s] + args).forEach { w.string($0) }
        case .recipient(let s, let args):
            code = "R"
            ([s] + args).forEach { w.string($0) }
        case .data: code = "T"
        case .header(let n, let v):
            code = "L"
            w.string(n)
            w.string(v)
        case .endOfHeaders: code = "N"
        case .body(let b):
            code = "B"
            w.out = b
        case .endOfMessage(let b):
            code = "E"
            w.out = b
        case .abort: code = "A"
        case .quit: code = "Q"
        case .quitNewConnection: code = "K"
        case .unknown(let c):
            code = "U"
            w.string(c)
        }
        return MilterWriter.packet(code.asciiValue!, w.out)
    }
}

extension MilterResponse {
    /// The response a packet carries (from a milter).
    public static func parse(code: UInt8, data: [UInt8]) throws(MilterProtocolError) -> MilterResponse {
        var r = MilterReader(data)
        switch code {
        case UInt8(ascii: "O"):
            let v = try r.uint32()
            let a = Milter.Actions(rawValue: try r.uint32())
            let s = Milter.Steps(rawValue: try r.uint32())
            var symbols: [Milter.Stage: [String]] = [:]
            while !r.atEnd {
                let i = try r.uint32()
                let list = try r.string()
                if let stage = Milter.Stage(symbolListIndex: i) { symbols[stage] = list.split(separator: " ").map(String.init) }
            }
            return .negotiate(version: v, actions: a, steps: s, symbols: symbols)
        case UInt8(ascii: "c"): return .continue
        case UInt8(ascii: "a"): return .accept
        case UInt8(ascii: "r"): return .reject
        case UInt8(ascii: "t"): return .tempfail
        case UInt8(ascii: "d"): return .discard
        case UInt8(ascii: "y"):
            let text = try r.string()
            guard let first = text.first, first == "4" || first == "5", text.count >= 3 else {
                throw MilterProtocolError("a reply code that is not 4xx or 5xx: \(text.prefix(40))")
            }
            return .replyCode(text)
        case UInt8(ascii: "q"): return .quarantine(try r.string())
        case UInt8(ascii: "s"): return .skip
        case UInt8(ascii: "p"): return .progress
        case UInt8(ascii: "f"): return .connectionFailure
        case UInt8(ascii: "4"): return .shutdown
        case UInt8(ascii: "h"): return .addHeader(name: try r.string(), value: try r.string())
        case UInt8(ascii: "i"): return .insertHeader(index: try r.uint32(), name: try r.string(), value: try r.string())
        case UInt8(ascii: "m"): return .changeHeader(index: try r.uint32(), name: try r.string(), value: try r.string())
        case UInt8(ascii: "+"): return .addRecipient(try r.string())
        case UInt8(ascii: "2"): return .addRecipientWithArgs(try r.string(), try r.string())
        case UInt8(ascii: "-"): return .deleteRecipient(try r.string())
        case UInt8(ascii: "e"):
            let from = try r.string()
            return .changeFrom(from, r.atEnd ? nil : try r.string())
        case UInt8(ascii: "b"): return .replaceBody(data)
        default:
            throw MilterProtocolError("an unknown response '\(code >= 32 && code < 127 ? String(UnicodeScalar(code)) : "0x" + String(code, radix: 16))'")
        }
    }

    /// The packet for this response (what mxgate sends as a milter).
    public func encoded() -> [UInt8] {
        var w = MilterWriter()
        let code: Character
        switch self {
        case .negotiate(let v, let a, let s, let symbols):
            code = "O"
            w.uint32(v)
            w.uint32(a.rawValue)
            w.uint32(s.rawValue)
            for stage in Milter.Stage.allCases {
                guard let list = symbols[stage], let i = stage.symbolListIndex else { continue }
                w.uint32(i)
                w.string(list.joined(separator: " "))
            }
        case .continue: code = "c"
        case .accept: code = "a"
        case .reject: code = "r"
        case .tempfail: code = "t"
        case .discard: code = "d"
        case .replyCode(let text):
            code = "y"
            w.string(text)
        case .quarantine(let reason):
            code = "q"
            w.string(reason)
        case .skip: code = "s"
        case .progress: code = "p"
        case .connectionFailure: code = "f"
        case .shutdown: code = "4"
        case .addHeader(let n, let v):
            code = "h"
            w.string(n)
            w.string(v)
        case .insertHeader(let i, let n, let v):
            code = "i"
            w.uint32(i)
            w.string(n)
            w.string(v)
        case .changeHeader(let i, let n, let v):
            code = "m"
            w.uint32(i)
            w.string(n)
            w.string(v)
        case .addRecipient(let r):
            code = "+"
            w.string(r)
        case .addRecipientWithArgs(let r, let args):
            code = "2"
            w.string(r)
            w.string(args)
        case .deleteRecipient(let r):
            code = "-"
            w.string(r)
        case .changeFrom(let f, let args):
            code = "e"
            w.string(f)
            if let args { w.string(args) }
        case .replaceBody(let b):
            code = "b"
            w.out = b
        }
        return MilterWriter.packet(code.asciiValue!, w.out)
    }
}
