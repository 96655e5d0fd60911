import Crypto
import CryptoExtras
import Foundation

/// A DKIM key record (RFC 6376 §3.6.1) read into a public key. Kept by the
/// record's text, for every signature that names it: the same sender's key
/// comes with every one of its messages, and decoding the record and the
/// key's DER was a third of a signature's verification.
enum DKIMKey: Sendable {
    case rsa(_RSA.Signing.PublicKey)
    case ed25519(Curve25519.Signing.PublicKey)
    /// The record revokes the key (an empty p=).
    case revoked
    /// Why the record is unusable, as the permerror's reason.
    case invalid(String)

    static let unreadable = "no single key record"

    /// The key type the record names (k=, RSA when absent), and whether it allows sha256 (h=).
    static func read(_ text: String) -> (kind: String, key: DKIMKey) {
        guard let tags = DKIMTags(text) else { return ("", .invalid(unreadable)) }
        if let v = tags["v"], v != "DKIM1" { return ("", .invalid("key record v= is not DKIM1")) }
        let k = tags["k"]?.lowercased() ?? "rsa"
        if let h = tags["h"], !DKIMTags.list(h).contains("sha256") { return (k, .invalid("key does not allow sha256")) }
        // t=y (testing) changes nothing here: the result is still reported as verified (§3.6.1).
        guard let p = tags.compact("p") else { return (k, .invalid("key record has no p=")) }
        guard !p.isEmpty else { return (k, .revoked) }
        guard let bytes = Data(base64Encoded: p) else { return (k, .invalid("key p= is not base64")) }
        switch k {
        case "ed25519":
            guard bytes.count == 32, let pub = try? Curve25519.Signing.PublicKey(rawRepresentation: bytes) else {
                return (k, .invalid("bad ed25519 key"))
            }
            return (k, .ed25519(pub))
        case "rsa":
            guard let pub = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: bytes) else {
                return (k, .invalid("bad RSA key or shorter than 1024 bits"))
            }
            return (k, .rsa(pub))
        default:
            return (k, .invalid("unknown key type \(k)"))
        }
    }

    /// Records read before, by their text (a busy MX sees a few hundred senders' keys).
    static let known = RecordCache<(kind: String, key: DKIMKey)>(limit: 4096)

    /// `read`, once per distinct record text while it stays in the table.
    static func cached(_ text: String) -> (kind: String, key: DKIMKey) { known.value(for: text, read) }
}
