/// The header section of an RFC 5322 message, parsed just far enough to read
/// trace and identity fields (Message-ID, Subject). Full MIME walking lives
/// beside it; this part never needs more than the header bytes.
public struct HeaderBlock: Sendable {
    public struct Field: Sendable, Hashable {
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }

        public var name: String
        /// The unfolded value without the leading space.
        public var value: String
    }

    public private(set) var fields: [Field] = []
    /// True when the header section ended with an empty line inside the given bytes.
    public private(set) var complete = false

    /// Parses fields from the start of a CRLF message until the empty line.
    public init(_ bytes: some Collection<UInt8>) {
        let done: ()? = bytes.withContiguousStorageIfAvailable { buf in
            self.parse(UnsafeRawBufferPointer(buf))
        }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBytes { self.parse($0) }
        }
    }

    /// One pass over the bytes: no copy per line, one String per field.
    private mutating func parse(_ raw: UnsafeRawBufferPointer) {
        var name: String?
        var value: [UInt8] = []
        func flush(_ fields: inout [Field]) {
            guard let n = name else { return }
            var lo = 0
            var hi = value.count
            while lo < hi, value[lo] == 32 || value[lo] == 9 { lo += 1 }
            while hi > lo, value[hi - 1] == 32 || value[hi - 1] == 9 { hi -= 1 }
            fields.append(Field(name: n, value: String(decoding: value[lo..<hi], as: UTF8.self)))
            name = nil
            value.removeAll(keepingCapacity: true)
        }
        var i = 0
        let n = raw.count
        while i < n {
            var end = i
            while end < n && raw[end] != 10 { end += 1 }
            guard end < n else { break }  // an unterminated last line is not a whole field yet
            var lineEnd = end
            if lineEnd > i && raw[lineEnd - 1] == 13 { lineEnd -= 1 }
            let next = end + 1
            if lineEnd == i {
                flush(&fields)
                complete = true
                return
            }
            if raw[i] == 32 || raw[i] == 9 {
                if name != nil { value.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[i..<lineEnd])) }  // folded (RFC 5322 §2.2.3)
            } else {
                flush(&fields)
                var colon = i
                while colon < lineEnd && raw[colon] != 58 { colon += 1 }
                if colon < lineEnd {
                    var nameEnd = colon
                    while nameEnd > i && (raw[nameEnd - 1] == 32 || raw[nameEnd - 1] == 9) { nameEnd -= 1 }
                    name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[i..<nameEnd]), as: UTF8.self)
                    value.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[(colon + 1)..<lineEnd]))
                }
            }
            i = next
        }
        flush(&fields)
    }

    public func first(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    /// Every value of the fields with this name, in order (Received, say).
    public func all(_ name: String) -> [String] {
        fields.compactMap { $0.name.caseInsensitiveEquals(name) ? $0.value : nil }
    }

    /// How many fields have this name (ASCII case ignored, as RFC 5322 names are).
    public func count(_ name: String) -> Int {
        fields.reduce(0) { $0 + ($1.name.caseInsensitiveEquals(name) ? 1 : 0) }
    }

    /// The fields with RFC 2047 encoded-words decoded, for header rules.
    public var decodedFields: [Field] {
        fields.map { Field(name: $0.name, value: EncodedWords.decode($0.value)) }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (what folding leaves around a header value).
    public func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }

    /// ASCII case-insensitive equality (header field names are ASCII), byte by byte.
    func caseInsensitiveEquals(_ other: String) -> Bool {
        guard self.utf8.count == other.utf8.count else { return false }
        return zip(self.utf8, other.utf8).allSatisfy { a, b in
            a == b || (a | 0x20 == b | 0x20 && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7A)
        }
    }
}
