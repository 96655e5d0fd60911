"""make_mail.py DIR: the mail the full-stack benchmark sends and trains on,
made here (no corpus file is used). Writes

  DIR/message.eml   a 4 KB ham message from alice@example.org, text and
                    HTML alternatives with two links, DKIM-signed (rsa-2048,
                    relaxed/relaxed) by example.org; LF line ends, as
                    smtp-source -F wants them (it sends CRLF)
  DIR/zone.json     tests/dns_server.py's zone: SPF, DKIM key and DMARC of
                    example.org, forward and reverse names of the client
  DIR/train/spam, DIR/train/ham   60 messages each for mxgate learn
"""
import base64
import email.utils
import json
import os
import random
import subprocess
import sys

import dkim

if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
    sys.exit(__doc__)
d = sys.argv[1]
os.makedirs(f"{d}/train/spam", exist_ok=True)
os.makedirs(f"{d}/train/ham", exist_ok=True)
rnd = random.Random(17)

HAM = ("meeting schedule release notes review project budget quarterly report agenda minutes draft "
       "team update design document customer feedback roadmap milestone deadline contract invoice "
       "attached summary proposal planning workshop travel conference slides thanks regards").split()
SPAM = ("free offer winner cheap pills viagra casino lottery prize claim urgent money loan credit "
        "discount limited deal click unsubscribe bonus cash guaranteed investment crypto bitcoin "
        "pharmacy replica watches weight loss dating singles").split()


def words(vocab, n):
    return " ".join(rnd.choice(vocab) for _ in range(n))


def simple(frm, subject, body, n):
    return (f"From: {frm}\nTo: bob@dest.test\nSubject: {subject}\n"
            f"Date: {email.utils.formatdate()}\nMessage-ID: <train{n}@{frm.split('@')[1]}>\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n")


for i in range(60):
    open(f"{d}/train/ham/{i}.eml", "w").write(simple(
        "colleague@partner.test", words(HAM, 5), "\n".join(words(HAM, 12) for _ in range(8)), i))
    open(f"{d}/train/spam/{i}.eml", "w").write(simple(
        "promo@bulk.test", words(SPAM, 5), "\n".join(words(SPAM, 12) for _ in range(8)), i))

text = "\r\n".join(
    f"Item {i}: we went through the {words(HAM, 3)} and agreed on the next steps for the release."
    for i in range(14))
html = "\r\n".join(f"<p>{line}</p>" for line in text.split("\r\n"))
msg = ("From: Alice Example <alice@example.org>\r\nTo: Bob <bob@dest.test>\r\n"
       "Subject: Minutes of the planning meeting\r\n"
       f"Date: {email.utils.formatdate()}\r\nMessage-ID: <minutes-2026@example.org>\r\n"
       "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
       "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
       f"Hello Bob,\r\n\r\n{text}\r\n\r\nThe notes are at https://wiki.example.org/planning/2026\r\n\r\nAlice\r\n"
       "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
       f"<html><body><p>Hello Bob,</p>\r\n{html}\r\n"
       "<p>The notes are <a href=\"https://wiki.example.org/planning/2026\">on the wiki</a>.</p>"
       "<p>Alice</p></body></html>\r\n--b1--\r\n").encode()
subprocess.run(["openssl", "genrsa", "-traditional", "-out", f"{d}/dkim.pem", "2048"], check=True, capture_output=True)
der = subprocess.run(["openssl", "rsa", "-in", f"{d}/dkim.pem", "-pubout", "-outform", "DER"],
                     check=True, capture_output=True).stdout
signed = dkim.sign(msg, b"bench", b"example.org", open(f"{d}/dkim.pem", "rb").read(),
                   canonicalize=(b"relaxed", b"relaxed"),
                   include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + msg
open(f"{d}/message.eml", "wb").write(signed.replace(b"\r\n", b"\n"))

key = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
zone = {"records": [
    ["example.org", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"'],
    ["example.org", "MX", "10 mx.example.org."],
    ["example.org", "A", "127.0.0.1"],
    ["_dmarc.example.org", "TXT", '"v=DMARC1; p=reject"'],
    ["bench._domainkey.example.org", "TXT", " ".join(f'"{key[i:i + 200]}"' for i in range(0, len(key), 200))],
    ["1.0.0.127.in-addr.arpa", "PTR", "client.source.test."],
    ["client.source.test", "A", "127.0.0.1"],
]}
json.dump(zone, open(f"{d}/zone.json", "w"))
print(f"message {len(signed)} bytes")

eicar = ("From: alice@example.org\nTo: bob@dest.test\nSubject: test file\n"
         f"Date: {email.utils.formatdate()}\nMessage-ID: <eicar-2026@example.org>\n\n"
         "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\n")
open(f"{d}/eicar.eml", "w").write(eicar)
