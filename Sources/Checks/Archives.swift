/// Names of the entries inside a zip attachment, read from the archive's
/// central directory (PKWARE APPNOTE §4.3.12 and §4.3.16), so attachment
/// rules see `invoice.exe` inside `invoice.zip`. Only names are read, nothing
/// is decompressed; an archive that does not parse yields nil, never a crash.
/// (ZIPFoundation does the same but its package warns on every build.)
public enum ArchiveInspector {
    public static func entryNames(_ bytes: [UInt8], limit: Int = 1000) -> [String]? {
        func u16(_ i: Int) -> Int { i + 2 <= bytes.count ? Int(bytes[i]) | Int(bytes[i + 1]) << 8 : 0 }
        func u32(_ i: Int) -> Int { i + 4 <= bytes.count ? u16(i) | u16(i + 2) << 16 : 0 }
        // End of central directory: 22 bytes plus a comment of up to 65535.
        guard bytes.count >= 22 else { return nil }
        var eocd = bytes.count - 22
        let lowest = max(0, bytes.count - 22 - 65535)
        while eocd >= lowest && u32(eocd) != 0x0605_4B50 { eocd -= 1 }
        guard eocd >= lowest else { return nil }
        let count = u16(eocd + 10)
        var at = u32(eocd + 16)
        var names: [String] = []
        for _ in 0..<min(count, limit) {
            guard at + 46 <= bytes.count, u32(at) == 0x0201_4B50 else { return names.isEmpty ? nil : names }
            let nameLength = u16(at + 28)
            let extra = u16(at + 30)
            let comment = u16(at + 32)
            guard at + 46 + nameLength <= bytes.count else { break }
            names.append(String(decoding: bytes[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self))
            at += 46 + nameLength + extra + comment
        }
        return names
    }
}
