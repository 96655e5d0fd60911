import MailMessage

/// Attachments that carry code or hide from scanners: Office files with
/// VBA macros, password-protected archives (a scanner cannot look inside),
/// disk images and OneNote files (used to slip executables past filters),
/// and HTML attachments, which open a local page that can phish or build
/// a file in script ("HTML smuggling").
struct AttachmentSignals: SignalDetector {
    static let names = ["OFFICE_MACRO", "ARCHIVE_ENCRYPTED", "DISK_IMAGE", "ONENOTE", "HTML_ATTACHMENT",
                        "HTML_ATTACHMENT_FORM", "HTML_ATTACHMENT_BUILDS_FILE"]

    static let oneNoteMagic: [UInt8] = [0xE4, 0x52, 0x5C, 0x7B, 0x8C, 0xD8, 0xA7, 0x4D]

    static func detect(_ input: HeuristicInput, into out: inout [Signal]) {
        for part in input.mime.attachments {
            let name = part.filename?.lowercased() ?? ""
            let label = part.filename.map { "\"\($0.prefix(60))\"" } ?? "an attachment"
            let ext = name.split(separator: ".").last.map(String.init) ?? ""
            if ["docm", "xlsm", "pptm", "dotm", "xltm", "xlam", "ppam"].contains(ext)
                || part.archive.map({ contains($0, Array("vbaProject.bin".utf8)) }) == true
                || part.sample.map({ contains($0, utf16("_VBA_PROJECT")) }) == true {
                out.append(Signal("OFFICE_MACRO", "\(label) carries VBA macros"))
            }
            if let zip = part.archive, encryptedZip(zip) {
                out.append(Signal("ARCHIVE_ENCRYPTED", "\(label) is a password-protected archive"))
            }
            if ["iso", "img", "vhd", "vhdx", "dmg", "udf"].contains(ext) {
                out.append(Signal("DISK_IMAGE", "\(label) is a disk image"))
            }
            if ["one", "onepkg"].contains(ext) || part.sample.map({ $0.starts(with: oneNoteMagic) }) == true {
                out.append(Signal("ONENOTE", "\(label) is a OneNote file"))
            }
            let html = ["htm", "html", "shtml", "xhtml", "svg"].contains(ext) || part.contentType == "text/html" || part.contentType == "image/svg+xml"
            guard html else { continue }
            out.append(Signal("HTML_ATTACHMENT", "\(label) is a web page"))
            guard let sample = part.sample else { continue }
            let text = String(decoding: sample, as: UTF8.self).lowercased()
            if text.contains("<form") || text.contains("type=\"password\"") || text.contains("type='password'") || text.contains("type=password") {
                out.append(Signal("HTML_ATTACHMENT_FORM", "\(label) asks for input (a form or a password field)"))
            }
            let builders = ["new blob(", "createobjecturl", "mssaveoropenblob", "atob(", "fromcharcode", "document.write(unescape", "download="]
            if let b = builders.first(where: text.contains), text.contains("<script") {
                out.append(Signal("HTML_ATTACHMENT_BUILDS_FILE", "\(label) builds content in script (\(b.trimmingCharacters(in: ["("])))"))
            }
        }
    }

    /// A zip whose local file headers set the encryption flag (bit 0 of the general purpose flags).
    static func encryptedZip(_ b: [UInt8]) -> Bool {
        var i = 0
        var seen = 0
        while i + 30 <= b.count && seen < 1000 {
            guard b[i] == 0x50, b[i + 1] == 0x4B, b[i + 2] == 3, b[i + 3] == 4 else { break }
            if b[i + 6] & 1 == 1 { return true }
            let compressed = Int(b[i + 18]) | Int(b[i + 19]) << 8 | Int(b[i + 20]) << 16 | Int(b[i + 21]) << 24
            let nameLen = Int(b[i + 26]) | Int(b[i + 27]) << 8
            let extraLen = Int(b[i + 28]) | Int(b[i + 29]) << 8
            // With a data descriptor (bit 3) the size is not here: stop at the first such entry.
            if b[i + 6] & 8 == 8 { break }
            i += 30 + nameLen + extraLen + compressed
            seen += 1
        }
        return false
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool { ByteSearch.firstIndex(of: needle, in: hay) != nil }

    static func utf16(_ s: String) -> [UInt8] { s.utf8.flatMap { [$0, 0] } }
}
