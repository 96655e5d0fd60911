/// Where a message's header section ends, in raw bytes (LF or CRLF line
/// ends): the header rewriters, the Authentication-Results stripper and the
/// DKIM and ARC body hashes all need the same boundary.
public enum HeaderSection {
    /// `fieldsEnd`: past the last field's line end, where the empty line
    /// begins (0 when the text starts with it); `bodyStart`: past the empty
    /// line. Nil when the text has no empty line. `from` skips what an
    /// earlier call already searched (the text growing as it arrives).
    public static func bounds(_ text: [UInt8], from: Int = 0) -> (fieldsEnd: Int, bodyStart: Int)? {
        func emptyLine(at i: Int) -> Int? {
            if i < text.count && text[i] == 10 { return i + 1 }
            if i + 1 < text.count && text[i] == 13 && text[i + 1] == 10 { return i + 2 }
            return nil
        }
        if from == 0, let body = emptyLine(at: 0) { return (0, body) }
        var i = max(0, from)
        while i < text.count {
            if text[i] == 10, let body = emptyLine(at: i + 1) { return (i + 1, body) }
            i += 1
        }
        return nil
    }
}
