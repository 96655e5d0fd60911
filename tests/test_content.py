"""Content rules in a live session: attachments found by name and by
content, and body rules on decoded text, including a message large enough
to be walked from its spill file."""
import base64
import smtplib

import pytest

POLICY = """
at data match attachment-name *.exe, *.js reject "554 5.7.1 Attachment {value} not accepted"
at data match attachment-mismatch reject "554 5.7.1 {value} is not what it claims"
at data match body ~ /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/c reject "550 5.7.1 GTUBE"
"""
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(parts, filler=0):
    out = 'From: a@sender.test\r\nSubject: c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="Z"\r\n\r\n'
    if filler:
        out += "--Z\r\nContent-Type: text/plain\r\n\r\n" + ("filler " * 10 + "\r\n") * filler
    for p in parts:
        out += "--Z\r\n" + p + "\r\n"
    return (out + "--Z--\r\n").encode()


def b64part(ctype, name, data):
    return f'Content-Type: {ctype}; name="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n' + base64.encodebytes(data).decode().replace("\n", "\r\n")


CASES = [
    ("double-extension", message([b64part("application/pdf", "invoice.pdf.exe", b"MZ\x90\x00rest")]), 554, b"invoice.pdf.exe not accepted"),
    ("disguised-program", message([b64part("image/jpeg", "photo.jpg", b"MZ\x90\x00rest")]), 554, b"photo.jpg is not what it claims"),
    ("gtube-qp", message(["Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + GTUBE[:40] + "=\r\n" + GTUBE[40:]]),
     550, b"GTUBE"),
    # ~2 MB of text first, so the message is walked from the spill file
    ("large-spilled", message([b64part("application/octet-stream", "setup.exe", b"MZ" * 100)], filler=28000), 554, b"setup.exe"),
]


@pytest.mark.parametrize("name,msg,code,text", CASES, ids=[c[0] for c in CASES])
def test_content_rules(gateway_factory, name, msg, code, text):
    gw = gateway_factory(policy=POLICY, limits='memory_threshold = "64K"')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"], msg)
    assert e.value.smtp_code == code and text in e.value.smtp_error
    assert gw.maildir_files("bob@example.com") == []


def test_clean_attachments_pass(gateway_factory):
    gw = gateway_factory(policy=POLICY)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        s.sendmail("a@sender.test", ["bob@example.com"],
                   message([b64part("application/pdf", "report.pdf", b"%PDF-1.4 ok"), b64part("image/png", "p.png", b"\x89PNG\r\n")]))
    assert len(gw.maildir_files("bob@example.com")) == 1


def test_program_inside_zip(gateway_factory):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", "hello")
        z.writestr("dir/payload.JS", "alert(1)")
    gw = gateway_factory(policy=POLICY)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"], message([b64part("application/zip", "files.zip", buf.getvalue())]))
    assert e.value.smtp_code == 554 and b"files.zip/dir/payload.JS not accepted" in e.value.smtp_error


SPAM = """From: winner12345@lotto.example
To: undisclosed-recipients:;
Subject: CONGRATULATIONS YOU WON!!!
Message-ID: <nodomain>

Dear friend, you have won the national lottery jackpot of 2.5 million dollars.
To claim your funds send us your bank details and the processing fee.
http://203.0.113.5/claim
"""
HAM = """From: Alice <alice@b.example>
Subject: Lunch tomorrow?
Date: Mon, 30 Nov 2026 10:00:00 +0000
Message-ID: <abc@b.example>

Shall we meet at noon? The menu is at https://cafe.example/menu
"""


@pytest.mark.parametrize("text,verdict", [(SPAM, "rejected"), (HAM, "accepted")], ids=["spam", "ham"])
def test_shipped_spam_rules(mxgate_bin, tmp_path, text, verdict):
    import json
    import pathlib
    import subprocess
    root = pathlib.Path(__file__).resolve().parent.parent
    eml = tmp_path / "m.eml"
    eml.write_text(text)
    out = subprocess.run([mxgate_bin, "test", "--config", str(root / "mxgate.toml"), "--client-ip", "192.0.2.1",
                          "--from", "a@b.example", "--to", "bob@example.com", "--json", str(eml)], capture_output=True, text=True)
    rec = json.loads(out.stdout)
    assert rec["verdict"] == verdict
    if verdict == "rejected":
        assert rec["spam_score"] >= 15 and "policies/spam.policy:11 LOTTERY_WON" in rec["symbols"]
    else:
        assert (rec["spam_score"] or 0) < 5


@pytest.mark.parametrize("body,fires", [
    ("This message is sent in compliance with the new e-mail bill: Bill S. 1618 Title III.", True),
    ("This is not spam: you signed up for our offers.", True),
    ("Section 3 of the draft covers the release; 1618 lines changed.", False),
], ids=["bill-1618", "not-spam", "ordinary"])
def test_shipped_compliance_claim(mxgate_bin, tmp_path, body, fires):
    """A pitch that claims to be lawful or not spam (the shipped body table's COMPLIANCE_CLAIM)."""
    import json
    import pathlib
    import subprocess
    root = pathlib.Path(__file__).resolve().parent.parent
    eml = tmp_path / "m.eml"
    eml.write_text("From: Alice <alice@b.example>\nSubject: News\nDate: Mon, 30 Nov 2026 10:00:00 +0000\n"
                   "Message-ID: <abc@b.example>\n\n" + body + "\n")
    out = subprocess.run([mxgate_bin, "test", "--config", str(root / "mxgate.toml"), "--client-ip", "192.0.2.1",
                          "--from", "a@b.example", "--to", "bob@example.com", "--json", str(eml)], capture_output=True, text=True)
    rec = json.loads(out.stdout)
    assert any(s.endswith(" COMPLIANCE_CLAIM") for s in rec.get("symbols", {})) == fires
