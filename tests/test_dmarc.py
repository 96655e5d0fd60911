"""DMARC (RFC 7489, RFC 9989) and ARC (RFC 8617) end to end over SMTP, with
the DNS server on loopback publishing SPF, DKIM and DMARC records, messages
signed at test time by dkimpy and ARC-sealed by dkimpy's sealer, and the
shipped policy's own DMARC rules (read from policies/inbound.policy)."""
import base64
import json
import pathlib
import smtplib
import subprocess

import dkim
import nacl.signing
import pytest

from helpers import wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = (ROOT / "policies" / "inbound.policy").read_text().splitlines()
# The shipped policy's DMARC lines, as shipped: the forwarders table and the rules that use it.
DMARC_RULES = "\n".join(l for l in SHIPPED if "dmarc-disposition" in l or l.startswith("table dmarc-forwarders")) + "\n"
NO_FORWARDERS = {"dmarc-forwarders.cidr": "# none\n"}

MESSAGE = (b"From: Bank <alerts@bank.example>\r\nTo: bob@example.com\r\nSubject: Your account\r\n"
           b"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\nMessage-ID: <m1@bank.example>\r\n\r\n"
           b"Please log in.\r\n")


def txt(record):
    return " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    ed = nacl.signing.SigningKey.generate()
    pem = tmp_path_factory.mktemp("arc") / "rsa.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(pem), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(pem), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return {"ed": base64.b64encode(bytes(ed)),
            "ed_record": "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(ed.verify_key)).decode(),
            "rsa": pem.read_bytes(), "rsa_record": "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()}


def zone(keys, extra=()):
    return {"records": [
        ["bank.example", "TXT", '"v=spf1 ip4:192.0.2.1 -all"'],
        ["_dmarc.bank.example", "TXT", '"v=DMARC1; p=reject; rua=mailto:d@bank.example"'],
        ["_dmarc.shop.example", "TXT", '"v=DMARC1; p=quarantine"'],
        ["shop.example", "TXT", '"v=spf1 -all"'],
        ["_dmarc.slow.example", "TXT", '"v=DMARC1; p=reject"'],
        ["ed._domainkey.bank.example", "TXT", txt(keys["ed_record"])],
        ["arc._domainkey.lists.example.net", "TXT", txt(keys["rsa_record"])],
        *extra], "servfail": ["k._domainkey.slow.example"]}


def sign(msg, keys, domain=b"bank.example", selector=b"ed"):
    return dkim.sign(msg, selector, domain, keys["ed"], canonicalize=(b"relaxed", b"relaxed"),
                     signature_algorithm=b"ed25519-sha256",
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + msg


def through_list(signed, keys):
    """What a mailing list does: record what it saw, add its footer (which
    breaks the author's DKIM signature), and ARC-seal the result."""
    msg = (b"Authentication-Results: lists.example.net; dkim=pass header.d=bank.example;\r\n"
           b" spf=pass smtp.mailfrom=bank.example; dmarc=pass header.from=bank.example\r\n" + signed
           + b"-- \r\nYou are subscribed to the bank list.\r\n")
    seal = dkim.arc_sign(msg, b"arc", b"lists.example.net", keys["rsa"], b"lists.example.net",
                         include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    assert seal, "dkimpy did not seal"
    return b"".join(seal) + msg


def gateway(gateway_factory, dns, extra_auth="", policy=DMARC_RULES):
    return gateway_factory(policy=policy, tables=NO_FORWARDERS, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
                                                      f'[auth]\n{extra_auth}')


def transactions(gw, n):
    wait_for(lambda: len([r for r in gw.audit() if r["event"] == "transaction"]) >= n, what=f"{n} transactions")
    return [r for r in gw.audit() if r["event"] == "transaction"]


def send(gw, sender, msg):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("mx.sender.example")
        return s.sendmail(sender, ["bob@example.com"], msg)


def test_spoofed_p_reject_domain_is_refused_at_end_of_data(gateway_factory, dns_factory, keys):
    gw = gateway(gateway_factory, dns_factory(zone(keys)))
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(gw, "alerts@bank.example", MESSAGE)
    assert e.value.smtp_code == 550
    assert b"5.7.1 DMARC: bank.example asks to reject" in e.value.smtp_error
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "rejected"
    assert rec["auth"]["dmarc"] == {"result": "fail", "domain": "bank.example", "policy": "reject", "disposition": "reject"}
    assert rec["auth"]["spf"]["result"] == "fail"
    assert gw.maildir_files("bob@example.com") == []


def test_signed_mail_passes_and_header_reaches_the_mailbox_byte_for_byte(gateway_factory, dns_factory, keys):
    gw = gateway(gateway_factory, dns_factory(zone(keys)), extra_auth="arc = true\n")
    send(gw, "bounce@other.example", sign(MESSAGE, keys))
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "accepted"
    assert rec["auth"]["dmarc"] == {"result": "pass", "domain": "bank.example", "policy": "reject", "disposition": "none"}
    assert rec["auth"]["arc"] == {"result": "none"}
    text = open(gw.maildir_files("bob@example.com")[0], "rb").read()
    assert (b"Authentication-Results: mx.test.example;\r\n"
            b"\tspf=none smtp.mailfrom=other.example;\r\n"
            b"\tspf=none smtp.helo=mx.sender.example;\r\n"
            b"\tdkim=pass header.d=bank.example header.s=ed;\r\n"
            b"\tdmarc=pass (p=reject dis=none) header.from=bank.example;\r\n"
            b"\tarc=none\r\n") in text


def test_trusted_arc_sealer_lets_a_list_message_pass(gateway_factory, dns_factory, keys):
    listed = through_list(sign(MESSAGE, keys), keys)
    dns = dns_factory(zone(keys))
    # Without trust in the list, its footer broke DKIM and DMARC refuses the message.
    plain = gateway(gateway_factory, dns)
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(plain, "list-bounces@lists.example.net", listed)
    assert e.value.smtp_code == 550
    rec = transactions(plain, 1)[-1]
    assert rec["auth"]["dkim"][0]["result"] == "fail" and rec["auth"]["dmarc"]["result"] == "fail"
    # Trusting the list's ARC seal: it saw DMARC pass before it added the footer.
    trusting = gateway(gateway_factory, dns, extra_auth='trusted_arc_sealers = ["lists.example.net"]\n')
    send(trusting, "list-bounces@lists.example.net", listed)
    rec = transactions(trusting, 1)[-1]
    assert rec["verdict"] == "accepted"
    assert rec["auth"]["arc"] == {"result": "pass"}
    assert rec["auth"]["dmarc"]["result"] == "pass" and rec["auth"]["dmarc"]["disposition"] == "none"
    text = open(trusting.maildir_files("bob@example.com")[0], "rb").read()
    assert b"\tdmarc=pass (p=reject dis=none) header.from=bank.example;\r\n\tarc=pass (i=1 d=lists.example.net)\r\n" in text
    # A chain broken after sealing is no voucher.
    broken = listed.replace(b"Please log in.", b"Please log in here.")
    with pytest.raises(smtplib.SMTPDataError):
        send(trusting, "list-bounces@lists.example.net", broken)
    rec = transactions(trusting, 2)[-1]
    assert rec["auth"]["arc"] == {"result": "fail"} and rec["auth"]["dmarc"]["result"] == "fail"


def test_p_quarantine_failure_is_quarantined(gateway_factory, dns_factory, keys):
    gw = gateway(gateway_factory, dns_factory(zone(keys)))
    send(gw, "orders@shop.example", MESSAGE.replace(b"bank.example", b"shop.example"))
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "quarantined"
    assert rec["auth"]["dmarc"] == {"result": "fail", "domain": "shop.example", "policy": "quarantine",
                                    "disposition": "quarantine"}


def test_forwarders_table_overrides_the_policy(gateway_factory, dns_factory, keys):
    gw = gateway_factory(policy=DMARC_RULES, tables={"dmarc-forwarders.cidr": "127.0.0.1\n"},
                         config_extra=f'[dns]\nservers = ["127.0.0.1:{dns_factory(zone(keys)).port}"]\ntimeout = "2s"\n')
    send(gw, "alerts@bank.example", MESSAGE)
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "accepted" and rec["auth"]["dmarc"]["result"] == "fail"


def test_temperror_for_a_p_reject_domain_is_451_never_accept(gateway_factory, dns_factory, keys):
    gw = gateway(gateway_factory, dns_factory(zone(keys)))
    msg = MESSAGE.replace(b"bank.example", b"slow.example")
    # Signed by slow.example, whose key lookup fails: the signature could have aligned.
    signed = dkim.sign(msg, b"k", b"slow.example", keys["ed"], canonicalize=(b"relaxed", b"relaxed"),
                       signature_algorithm=b"ed25519-sha256", include_headers=[b"from", b"subject"]) + msg
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(gw, "alerts@slow.example", signed)
    assert e.value.smtp_code == 451
    rec = transactions(gw, 1)[-1]
    assert rec["verdict"] == "tempfailed" and rec["auth"]["dmarc"]["result"] == "temperror"
    assert rec["auth"]["dmarc"]["policy"] == "reject"


def test_allow_list_needs_dmarc_pass(gateway_factory, dns_factory, keys):
    policy = ("table allowed list:allowed.list\n"
              "at data match from <allowed> and dmarc pass accept\n"
              "at data match all reject \"550 5.7.1 not allowed\"\n")
    gw = gateway_factory(policy=policy, tables={"allowed.list": "@bank.example\n"},
                         config_extra=f'[dns]\nservers = ["127.0.0.1:{dns_factory(zone(keys)).port}"]\ntimeout = "2s"\n')
    # The forged From is on the list, but it does not authenticate.
    with pytest.raises(smtplib.SMTPDataError):
        send(gw, "alerts@bank.example", MESSAGE)
    send(gw, "alerts@bank.example", sign(MESSAGE, keys))
    recs = transactions(gw, 2)
    assert [r["verdict"] for r in recs] == ["rejected", "accepted"]


def test_log_filters_and_shows_authentication(gateway_factory, dns_factory, keys, mxgate_bin):
    gw = gateway(gateway_factory, dns_factory(zone(keys)))
    with pytest.raises(smtplib.SMTPDataError):
        send(gw, "alerts@bank.example", MESSAGE)
    send(gw, "alerts@bank.example", sign(MESSAGE, keys))
    transactions(gw, 2)
    out = subprocess.run([mxgate_bin, "log", "--config", str(gw.config), "--dmarc", "fail", "--json"],
                         capture_output=True, text=True)
    recs = [json.loads(l) for l in out.stdout.splitlines()]
    assert len(recs) == 1 and recs[0]["verdict"] == "rejected"
    out = subprocess.run([mxgate_bin, "log", "--config", str(gw.config), "--dkim", "pass", "--detail"],
                         capture_output=True, text=True)
    assert "\ndmarc       pass (bank.example): policy reject, disposition none\n" in out.stdout, out.stdout
    assert "\ndkim        pass d=bank.example s=ed\n" in out.stdout


def test_mxgate_test_replays_dmarc_from_a_zone_file(gateway_factory, mxgate_bin, tmp_path):
    gw = gateway_factory(policy=DMARC_RULES, tables=NO_FORWARDERS)
    z = tmp_path / "z.zone"
    z.write_text('$ORIGIN bank.example.\n$TTL 300\n@ IN TXT "v=spf1 ip4:192.0.2.1 -all"\n_dmarc IN TXT "v=DMARC1; p=reject"\n')
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGE)
    base = [mxgate_bin, "test", "--config", str(gw.config), "--helo", "mx.bank.example", "--from", "alerts@bank.example",
            "--to", "bob@example.com", "--dns-zone", str(z)]
    out = subprocess.run(base + ["--client-ip", "203.0.113.9", str(eml)], capture_output=True, text=True)
    assert "verdict:    rejected at data" in out.stdout, out.stdout + out.stderr
    assert "auth:       dmarc fail (bank.example): policy reject, disposition reject" in out.stdout
    out = subprocess.run(base + ["--client-ip", "192.0.2.1", str(eml)], capture_output=True, text=True)
    assert "verdict:    accepted" in out.stdout and "auth:       dmarc pass (bank.example)" in out.stdout, out.stdout
