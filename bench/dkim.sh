#!/usr/bin/env bash
# dkim.sh - CPU per message of DKIM verification (issue 16's goal: a 4 KB
# message with an rsa-2048 and an ed25519 signature costs at most 80 µs more
# than the same message unsigned). dkimpy signs the message here; the keys
# are answered from a zone in memory, as from a warm DNS cache.
# Tunables: COUNT=2000 (messages per round, 3 rounds each)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
COUNT=${COUNT:-2000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR" <<'PY'
import base64, subprocess, sys
import dkim, nacl.signing
d = sys.argv[1]
body = b"".join(b"Line %04d of a message body that is about four kilobytes long, nothing more.\r\n" % i for i in range(48))
msg = (b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: benchmark\r\n"
       b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <b1@example.org>\r\n\r\n" + body)
subprocess.run(["openssl", "genrsa", "-traditional", "-out", f"{d}/rsa.pem", "2048"], check=True, capture_output=True)
der = subprocess.run(["openssl", "rsa", "-in", f"{d}/rsa.pem", "-pubout", "-outform", "DER"], check=True, capture_output=True).stdout
ed = nacl.signing.SigningKey.generate()
hdrs = [b"from", b"to", b"subject", b"date", b"message-id"]
signed = dkim.sign(msg, b"rsa", b"example.org", open(f"{d}/rsa.pem", "rb").read(), canonicalize=(b"relaxed", b"relaxed"),
                   include_headers=hdrs) + msg
signed = dkim.sign(signed, b"ed", b"example.org", base64.b64encode(bytes(ed)), canonicalize=(b"relaxed", b"relaxed"),
                   signature_algorithm=b"ed25519-sha256", include_headers=hdrs) + signed
open(f"{d}/signed.eml", "wb").write(signed)
open(f"{d}/unsigned.eml", "wb").write(msg)
def txt(r): return " ".join(f'"{r[i:i + 200]}"' for i in range(0, len(r), 200))
with open(f"{d}/keys.zone", "w") as z:
    z.write(f"rsa._domainkey.example.org. IN TXT {txt('v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode())}\n")
    z.write(f"ed._domainkey.example.org. IN TXT {txt('v=DKIM1; k=ed25519; p=' + base64.b64encode(bytes(ed.verify_key)).decode())}\n")
PY
scripts/build-release.sh --product auth-bench -q >/dev/null
echo "# $(date -u +%FT%TZ) $(nproc) cpus, count=$COUNT"
"$(swift build -c release --show-bin-path)/auth-bench" "$DIR/signed.eml" "$DIR/unsigned.eml" "$DIR/keys.zone" "$COUNT"
