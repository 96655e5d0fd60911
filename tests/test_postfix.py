"""mxgate between real Postfix instances: Postfix as the upstream client
(relayhost = mxgate, with PIPELINING) and Postfix as the downstream."""
import smtplib

from helpers import wait_for

MSG = "From: a@sender.test\r\nTo: {rcpt}\r\nSubject: via postfix\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n"


def test_postfix_upstream_relays_through_mxgate(gateway_factory, postfix_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"')
    pf = postfix_factory("up", relayhost=gw.port, relay_domains="example.com",
                         tls_level="none")
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com", "carol@example.com"],
                   MSG.format(rcpt="bob@example.com", mid="pf-up-1@sender.test").encode())
    dump = sink.dumps(1, timeout=30)[0]
    assert dump.count(b"X-Rcpt-Args:") == 2
    assert b"Received: from pf.test.example ([127.0.0.1])" in dump
    assert b"by mx.test.example (mxgate) with ESMTP" in dump
    assert b"Message-ID: <pf-up-1@sender.test>" in dump
    wait_for(pf.queue_empty, 30, "Postfix queue to drain")
    log = pf.maillog()
    assert "status=sent" in log and f"127.0.0.1[127.0.0.1]:{gw.port}" in log
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "accepted"
    assert rec["helo"] == "pf.test.example"
    assert sorted(rec["rcpt_to"]) == ["bob@example.com", "carol@example.com"]


def test_postfix_upstream_sees_relay_denied(gateway_factory, postfix_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"')
    pf = postfix_factory("up2", relayhost=gw.port, relay_domains="other.test",
                         tls_level="none")
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["x@other.test"], MSG.format(rcpt="x@other.test", mid="pf-up-2@x").encode())
    wait_for(lambda: "Relay access denied" in pf.maillog(), 30, "Postfix to log the 554")
    assert "said: 554 5.7.1 <x@other.test>: Relay access denied" in pf.maillog()
    refused = [r for r in gw.audit(1) if r["event"] == "recipient" and r["rcpt_to"] == ["x@other.test"]]
    assert refused and refused[0]["verdict"] == "rejected" and refused[0]["rules"] == ["relay-gate"]


def test_mxgate_relays_to_postfix_downstream(gateway_factory, postfix_factory, sink):
    pf = postfix_factory("down", relayhost=sink.port, relay_domains="example.com",
                         extra_main="smtpd_recipient_restrictions = check_recipient_access "
                                    "inline:{{nosuch@example.com=550 5.1.1 No such user here}}, permit_mynetworks, reject")
    gw = gateway_factory(downstream=f"127.0.0.1:{pf.port}", relay_extra='tls = "none"')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        code, _ = s.mail("a@sender.test")
        assert code == 250
        code, text = s.rcpt("nosuch@example.com")
        assert code == 550 and b"5.1.1" in text and b"No such user here" in text
        code, _ = s.rcpt("bob@example.com")
        assert code == 250
        code, text = s.data(MSG.format(rcpt="bob@example.com", mid="pf-down-1@sender.test").encode())
        assert code == 250 and b"queued as" in text
    dump = sink.dumps(1, timeout=30)[0]
    assert b"Message-ID: <pf-down-1@sender.test>" in dump
    assert b"by mx.test.example (mxgate)" in dump
    records = gw.audit(2)
    tx = [r for r in records if r["event"] == "transaction"][-1]
    assert tx["verdict"] == "accepted" and "queued as" in tx["relay"]
    refused = [r for r in records if r["event"] == "recipient"][-1]
    assert refused["rcpt_to"] == ["nosuch@example.com"] and refused["reply"].startswith("550 5.1.1")
