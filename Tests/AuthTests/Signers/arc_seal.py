"""Builds an ARC chain with dkimpy's ARC sealer (a real signer) for
ARCChainTests, and validates it with dkimpy too. The author's domain signs
with DKIM; each hop records Authentication-Results, may change the message
(a mailing list's footer), and seals. Prints JSON: the message (base64), the
key records to publish, and dkimpy's chain validation status.

  arc_seal.py HOPS TAMPER(none|footer|body|aar|gap)"""
import base64
import json
import subprocess
import sys
import tempfile

import dkim

hops, tamper = int(sys.argv[1]), sys.argv[2]

with tempfile.NamedTemporaryFile() as f:
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", f.name, "2048"], check=True, capture_output=True)
    priv = open(f.name, "rb").read()
    pub = subprocess.run(["openssl", "rsa", "-in", f.name, "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
record = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
records = {"sel._domainkey.example.org": record}

msg = (b"From: Alice <alice@example.org>\r\nTo: list@lists.example.net\r\nSubject: forwarded\r\n"
       b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <a1@example.org>\r\n\r\nHello list,\r\nsee you.\r\n")
msg = dkim.sign(msg, b"sel", b"example.org", priv, canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + msg

for i in range(1, hops + 1):
    sealer = f"hop{i}.example".encode()
    records[f"arc._domainkey.hop{i}.example"] = record
    arc = "" if i == 1 else "; arc=pass"
    msg = (b"Authentication-Results: " + sealer + b"; dkim=pass header.d=example.org; "
           b"dmarc=pass header.from=example.org" + arc.encode() + b"\r\n" + msg)
    if i == 1 and tamper == "footer":
        msg = msg + b"-- \r\nThe list's footer\r\n"
    sigs = dkim.arc_sign(msg, b"arc", sealer, priv, sealer,
                         include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    msg = b"".join(sigs) + msg

if tamper == "body":
    msg = msg.replace(b"see you.", b"see you!")
elif tamper == "aar":
    at = msg.index(b"dmarc=pass", msg.index(b"ARC-Authentication-Results: i=1;"))
    msg = msg[:at] + b"dmarc=fail" + msg[at + len(b"dmarc=pass"):]
elif tamper == "gap":
    start = msg.index(b"ARC-Seal: i=1")
    end = msg.index(b"\r\n", start)
    while msg[end + 2:end + 3] in (b" ", b"\t"):
        end = msg.index(b"\r\n", end + 2)
    msg = msg[:start] + msg[end + 2:]


def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip("."), "").encode() or None


cv, _, why = dkim.arc_verify(msg, dnsfunc=dnsfunc)
print(json.dumps({"message": base64.b64encode(msg).decode(), "records": records,
                  "dkimpy": (cv or b"none").decode(), "why": why}))
