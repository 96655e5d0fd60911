"""DKIM (RFC 6376) in a live session: messages signed at test time by a
real signer (dkimpy), keys published by the DNS server on loopback, the
results in the policy, the audit record and Authentication-Results; and
`mxgate test --dns-zone` giving the same result offline."""
import base64
import json
import smtplib
import subprocess

import dkim
import nacl.signing
import pytest

from helpers import wait_for

MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: signed\r\n"
           b"Message-ID: <d1@example.org>\r\n\r\nHello Bob,\r\nthis is signed.\r\n")
POLICY = """
at data match dkim fail, permerror reject "550 5.7.20 DKIM: {value}"
at data match dkim-domain example.org score -2
"""


def ed25519_key():
    key = nacl.signing.SigningKey.generate()
    return base64.b64encode(bytes(key)), "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key)).decode()


def rsa_key(tmp_path):
    pem = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(pem), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(pem), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return pem.read_bytes(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def sign(msg, priv, algorithm, selector=b"sel"):
    return dkim.sign(msg, selector, b"example.org", priv, canonicalize=(b"relaxed", b"relaxed"),
                     signature_algorithm=algorithm, include_headers=[b"from", b"to", b"subject", b"message-id"]) + msg


def txt(record):
    """A TXT record's text in zone syntax: strings of at most 200 characters."""
    return " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))


@pytest.fixture
def keys(tmp_path):
    return {"ed": ed25519_key(), "rsa": rsa_key(tmp_path)}


@pytest.fixture
def gw(gateway_factory, dns_factory, keys):
    dns = dns_factory({"records": [["ed._domainkey.example.org", "TXT", txt(keys["ed"][1])],
                                   ["rsa._domainkey.example.org", "TXT", txt(keys["rsa"][1])]]})
    return gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n')


def transactions(gw, n):
    wait_for(lambda: len([r for r in gw.audit() if r["event"] == "transaction"]) >= n, what=f"{n} transactions")
    return [r for r in gw.audit() if r["event"] == "transaction"]


@pytest.mark.parametrize("kind", ["ed", "rsa"])
def test_signed_message_passes_and_is_recorded(gw, keys, kind):
    alg = b"ed25519-sha256" if kind == "ed" else b"rsa-sha256"
    signed = sign(MESSAGE, keys[kind][0], alg, selector=kind.encode())
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("alice@example.org", ["bob@example.com"], signed)
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "accepted" and rec["spam_score"] == -2
    assert rec["auth"]["dkim"] == [{"result": "pass", "domain": "example.org", "selector": kind}]
    text = open(gw.maildir_files("bob@example.com")[0], "rb").read()
    assert f"dkim=pass header.d=example.org header.s={kind}".encode() in text


def test_changed_body_is_refused(gw, keys):
    signed = sign(MESSAGE, keys["ed"][0], b"ed25519-sha256", selector=b"ed").replace(b"this is signed", b"this is forged")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("alice@example.org", ["bob@example.com"], signed)
    assert e.value.smtp_code == 550 and b"5.7.20 DKIM: fail" in e.value.smtp_error
    assert transactions(gw, 1)[-1]["auth"]["dkim"][0]["result"] == "fail"


def test_unsigned_message_has_dkim_none(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "accepted" and rec["auth"]["dkim"] == []
    assert b"dkim=none" in open(gw.maildir_files("bob@example.com")[0], "rb").read()


def test_mxgate_test_verifies_with_a_zone_file(gateway_factory, mxgate_bin, keys, tmp_path):
    gw = gateway_factory(policy=POLICY)
    zone = tmp_path / "k.zone"
    zone.write_text(f"ed._domainkey.example.org. IN TXT {txt(keys['ed'][1])}\n")
    eml = tmp_path / "m.eml"
    eml.write_bytes(sign(MESSAGE, keys["ed"][0], b"ed25519-sha256", selector=b"ed"))
    out = subprocess.run([mxgate_bin, "test", "--config", str(gw.config), "--client-ip", "192.0.2.9",
                          "--from", "alice@example.org", "--to", "bob@example.com", "--dns-zone", str(zone), "--json",
                          str(eml)], capture_output=True, text=True)
    rec = json.loads(out.stdout)
    assert rec["verdict"] == "accepted" and rec["auth"]["dkim"][0]["result"] == "pass", out.stdout + out.stderr


class OpenDKIM:
    """A private OpenDKIM milter in signing mode (Debian's opendkim), on a
    loopback port, with a key made by opendkim-genkey: the second real
    signer, put where it runs in production, behind a real Postfix."""

    def __init__(self, directory, domain="example.org", selector="odk"):
        import os
        from helpers import free_port
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["/usr/sbin/opendkim-genkey", "-b", "2048", "-d", domain, "-s", selector, "-D", str(self.dir)],
                       check=True, capture_output=True)
        os.chmod(self.dir / f"{selector}.private", 0o600)
        zone_text = (self.dir / f"{selector}.txt").read_text()
        self.record = "".join(part.split('"')[1] for part in zone_text.split("(")[1].split(")")[0].split("\n") if '"' in part)
        self.port = free_port()
        conf = self.dir / "opendkim.conf"
        conf.write_text(f"Mode s\nDomain {domain}\nSelector {selector}\nKeyFile {self.dir}/{selector}.private\n"
                        f"Socket inet:{self.port}@127.0.0.1\nSignatureAlgorithm rsa-sha256\n"
                        f"Canonicalization relaxed/relaxed\nInternalHosts 127.0.0.1\nBackground no\nSyslog no\n"
                        f"RequireSafeKeys no\nPidFile {self.dir}/opendkim.pid\n")
        self.proc = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        from helpers import wait_port
        wait_port(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def test_opendkim_signed_mail_through_postfix_verifies(gateway_factory, dns_factory, postfix_factory, tmp_path):
    """Postfix with OpenDKIM as its signing milter relays to mxgate, which
    verifies OpenDKIM's signature against the key OpenDKIM's own tool made."""
    signer = OpenDKIM(tmp_path / "opendkim")
    try:
        dns = dns_factory({"records": [["odk._domainkey.example.org", "TXT", txt(signer.record)]]})
        gw = gateway_factory(policy=POLICY, relay_extra='tls = "none"',
                             config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n')
        pf = postfix_factory("signer", relayhost=gw.port, relay_domains="example.com", tls_level="none",
                             extra_main=f"smtpd_milters = inet:127.0.0.1:{signer.port}\nmilter_default_action = tempfail\n")
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.sendmail("alice@example.org", ["bob@example.com"],
                       MESSAGE.replace(b"Message-ID: <d1@example.org>", b"Message-ID: <odk1@example.org>\r\n"
                                                                         b"Date: Tue, 01 Dec 2026 12:00:00 +0000"))
        wait_for(lambda: gw.maildir_files("bob@example.com"), 30, "the message through Postfix and OpenDKIM")
        text = open(gw.maildir_files("bob@example.com")[0], "rb").read()
        assert b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;" in text.replace(b"\r\n\t", b" ")
        rec = transactions(gw, 1)[-1]
        assert rec["auth"]["dkim"] == [{"result": "pass", "domain": "example.org", "selector": "odk"}]
        assert b"dkim=pass header.d=example.org header.s=odk" in text
    finally:
        signer.stop()
