/// Upper-case, zero-padded hex for session and queue IDs: made per
/// connection and per message, where `String(format:)` (Foundation's
/// printf) is a measurable share of a short session's CPU.
public func upperHex(_ value: UInt64, width: Int) -> String {
    String(unsafeUninitializedCapacity: width) { buf in
        var v = value
        for i in stride(from: width - 1, through: 0, by: -1) {
            let d = UInt8(v & 0xF)
            buf[i] = d < 10 ? 0x30 + d : 0x37 + d
            v >>= 4
        }
        return width
    }
}

/// Lower-case hex of bytes (digests, tokens), two digits each.
public func lowerHex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
