"""Signs a test message with dkimpy (a real signer) and verifies it with
dkimpy too, for DKIMVerifierTests. Prints JSON: the message as signed
(base64), the key record to publish, and dkimpy's own verdict.

  dkim_sign.py ALG(rsa|ed25519) BITS HEADER_CANON BODY_CANON LENGTH(0|1) TAMPER(none|body|header|revoke)"""
import base64
import json
import subprocess
import sys
import tempfile

import dkim

alg, bits, hc, bc, length, tamper = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1", sys.argv[6]
msg = (b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject:  a   test \t message\r\n"
       b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <t1@example.org>\r\n\r\n"
       b"Hello Bob,  \r\n\r\nthis  is\ta test.\r\n\r\n\r\n")

if alg == "rsa":
    with tempfile.NamedTemporaryFile() as f:
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", f.name, str(bits)], check=True, capture_output=True)
        priv = open(f.name, "rb").read()
        pub = subprocess.run(["openssl", "rsa", "-in", f.name, "-pubout", "-outform", "DER"], check=True,
                             capture_output=True).stdout
    p = base64.b64encode(pub).decode()
    record = f"v=DKIM1; k=rsa; p={p}"
    algorithm = b"rsa-sha256"
else:
    import nacl.signing
    key = nacl.signing.SigningKey.generate()
    priv = base64.b64encode(bytes(key))
    p = base64.b64encode(bytes(key.verify_key)).decode()
    record = f"v=DKIM1; k=ed25519; p={p}"
    algorithm = b"ed25519-sha256"

sig = dkim.sign(msg, b"sel", b"example.org", priv, canonicalize=(hc.encode(), bc.encode()),
                signature_algorithm=algorithm, include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                length=length)
signed = sig + msg
if tamper == "body":
    signed = signed.replace(b"a test.", b"a TEST.")
elif tamper == "header":
    signed = signed.replace(b"Subject:  a   test", b"Subject:  a   best")
elif tamper == "appended" :
    signed = signed + b"appended after the signed length\r\n"
if tamper == "revoke":
    record = record.split("p=")[0] + "p="


def dnsfunc(name, timeout=5):
    return record.encode()


ok = dkim.verify(signed, dnsfunc=dnsfunc) if tamper != "revoke" else False
print(json.dumps({"message": base64.b64encode(signed).decode(), "record": record, "dkimpy": bool(ok)}))
