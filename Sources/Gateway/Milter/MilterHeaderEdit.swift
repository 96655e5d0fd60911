import MailMessage

/// A header change a milter asked for at end of message (SMFIR_ADDHEADER,
/// SMFIR_INSHEADER, SMFIR_CHGHEADER), kept until the message is written
/// out. Indexes are the milter's: insert positions count the message's own
/// fields from 0, changes count the fields of that name from 1.
struct MilterHeaderEdit: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case add
        case insert(UInt32)
        /// An empty value deletes the field.
        case change(UInt32)
    }
    var kind: Kind
    var name: String
    var value: String

    /// The header fields of `text` (up to the empty line) with the edits
    /// applied in order, and where those fields ended in `text`; nil when
    /// the text has no header section.
    static func apply(_ edits: [MilterHeaderEdit], to text: [UInt8]) -> (fields: [UInt8], replaces: Int)? {
        guard let end = HeaderSection.bounds(text)?.fieldsEnd else { return nil }
        var fields = split(text[0..<end])
        for e in edits {
            let field = render(e.name, e.value)
            switch e.kind {
            case .add:
                fields.append(field)
            case .insert(let i):
                fields.insert(field, at: min(Int(i), fields.count))
            case .change(let n):
                var seen: UInt32 = 0
                guard let at = fields.firstIndex(where: { f in
                    guard named(f, e.name) else { return false }
                    seen += 1
                    return seen == max(n, 1)
                }) else {
                    // libmilter: changing a field that is not there adds it.
                    if !e.value.isEmpty { fields.append(field) }
                    continue
                }
                if e.value.isEmpty { fields.remove(at: at) } else { fields[at] = field }
            }
        }
        return (fields.flatMap { $0 }, end)
    }

    /// Fields with their folds, each ending in its line end.
    static func split(_ section: ArraySlice<UInt8>) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var current: [UInt8] = []
        var lineStart = true
        for b in section {
            if lineStart && b != 32 && b != 9 && !current.isEmpty {
                out.append(current)
                current = []
            }
            current.append(b)
            lineStart = b == 10
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    private static func named(_ field: [UInt8], _ name: String) -> Bool {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return false }
        return String(decoding: field[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            .caseInsensitiveCompare(name) == .orderedSame
    }

    /// "Name: value" with CRLF line ends; a value the milter sent with its
    /// own leading space (SMFIP_HDR_LEADSPC) keeps it, others get one.
    static func render(_ name: String, _ value: String) -> [UInt8] {
        var out = Array(name.utf8) + [UInt8(ascii: ":")]
        if !(value.hasPrefix(" ") || value.hasPrefix("\t")) { out.append(32) }
        return out + DryRun.crlf(value.utf8.filter { $0 != 0 }) + [13, 10]
    }
}
