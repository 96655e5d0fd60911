"""External scorers against the real daemons on loopback: SpamAssassin's
spamd (SPAMC protocol) and rspamd (/checkv2). Their symbols join mxgate's
(weighted) and reach the audit record; a scorer that is down or hangs
tempfails by default and is skipped, with a warning, when on_error =
"accept"."""
import smtplib
import time

import pytest

from helpers import free_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
POLICY = 'at data match spam-score >= 15 reject "550 5.7.1 Spam, score {score}"\nat data match spam-score >= 5 tag\n'


def scorer(kind, port, extra=""):
    timeout = "" if "timeout" in extra else 'timeout = "3s"\n'
    return f'[[scorers]]\ntype = "{kind}"\naddress = "127.0.0.1:{port}"\n{timeout}{extra}\n'


def message(subject, body):
    return (f"From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject))}@sender.example>\r\n\r\n{body}\r\n").encode()


def send(gw, data):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        try:
            s.sendmail("alice@sender.example", ["bob@example.com"], data)
            return 250, ""
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()


def last_transaction(gw, n):
    return [r for r in gw.audit(n) if r["event"] == "transaction"][-1]


def test_spamd_symbols_join_the_score(gateway_factory, spamd):
    gw = gateway_factory(policy=POLICY, config_extra=scorer("spamd", spamd.port))
    code, text = send(gw, message("test", GTUBE))
    assert code == 550 and "Spam, score" in text
    rec = last_transaction(gw, 1)
    assert rec["symbols"]["spamd:GTUBE"] >= 999
    code, _ = send(gw, message("minutes of the meeting", "We agreed to meet again next week.\r\n" * 10))
    assert code == 250
    rec = last_transaction(gw, 2)
    assert rec["verdict"] == "accepted" and (rec["spam_score"] or 0) < 5


def test_rspamd_symbols_weighted(gateway_factory, rspamd):
    gw = gateway_factory(policy=POLICY, config_extra=scorer("rspamd", rspamd.port, "weight = 2"))
    code, _ = send(gw, message("test", GTUBE))
    assert code == 550
    rec = last_transaction(gw, 1)
    names = [k for k in rec["symbols"] if k.startswith("rspamd:")]
    # rspamd scores GTUBE 15 as a pre-result (its GTUBE symbol itself has 0): twice that with weight 2.
    assert "rspamd:GTUBE" in names or "rspamd:OTHER" in names
    assert sum(rec["symbols"][k] for k in names) == 30
    code, _ = send(gw, message("minutes of the meeting", "We agreed to meet again next week.\r\n" * 10))
    assert code == 250


@pytest.mark.parametrize("kind", ["spamd", "rspamd"])
def test_a_scorer_that_is_down_tempfails_unless_told_to_carry_on(gateway_factory, kind):
    dead = free_port()
    gw = gateway_factory(policy=POLICY, config_extra=scorer(kind, dead))
    code, text = send(gw, message("hello", "a plain message"))
    assert code == 451 and "Temporary" in text
    gw2 = gateway_factory(policy=POLICY, config_extra=scorer(kind, dead, 'on_error = "accept"'))
    code, _ = send(gw2, message("hello", "a plain message"))
    assert code == 250
    rec = last_transaction(gw2, 1)
    assert any("failed, scored without it" in w for w in rec["warnings"])


def test_a_hanging_spamd_times_out(gateway_factory, spamd):
    gw = gateway_factory(policy=POLICY, config_extra=scorer("spamd", spamd.port, 'timeout = "2s"'))
    spamd.pause()
    try:
        started = time.time()
        code, _ = send(gw, message("hello", "a plain message"))
        took = time.time() - started
    finally:
        spamd.resume()
    assert code == 451 and took < 20
    rec = last_transaction(gw, 1)
    assert rec["verdict"] == "tempfailed"
