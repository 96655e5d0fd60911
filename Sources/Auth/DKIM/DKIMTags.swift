/// A DKIM tag=value list (RFC 6376 §3.2): the DKIM-Signature field's value
/// and a key record's text. White space around tags and values is ignored;
/// a duplicate tag makes the list invalid.
struct DKIMTags {
    var values: [String: String] = [:]

    init?(_ text: String) {
        for part in text.split(separator: ";", omittingEmptySubsequences: false) {
            let p = part.trimmingCharacters(in: .dkimWhitespace)
            if p.isEmpty { continue }
            guard let eq = p.firstIndex(of: "=") else { return nil }
            let name = p[..<eq].trimmingCharacters(in: .dkimWhitespace)
            let value = p[p.index(after: eq)...].trimmingCharacters(in: .dkimWhitespace)
            guard !name.isEmpty, values[name] == nil else { return nil }
            values[name] = value
        }
    }

    subscript(_ name: String) -> String? { values[name] }

    /// A value with all folding white space removed (b=, bh=, p=).
    func compact(_ name: String) -> String? {
        values[name].map { String($0.unicodeScalars.filter { !CharacterSet.dkimWhitespace.contains($0) }) }
    }
}

import Foundation

extension CharacterSet {
    /// WSP and the CR/LF of folded lines.
    static let dkimWhitespace = CharacterSet(charactersIn: " \t\r\n")
}
