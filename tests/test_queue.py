"""Queue mode (store and forward): the spool answers 250 only once the
message is on disk, the queue manager delivers to real peers (smtp-sink,
Postfix), retries with backoff, bounces with RFC 3464 DSNs, and the
`mxgate queue` tools manage it."""
import email
import email.policy
import re
import smtplib
import subprocess
import time

import pytest

from helpers import SmtpSink, free_port, wait_for

FAST = 'min_backoff = "1s"\nmax_backoff = "2s"\n'


def queue_gateway(gateway_factory, downstream, queue_extra="", relay_extra="", config_extra="", backoff=FAST, **kw):
    return gateway_factory(downstream=downstream, relay_extra='mode = "queue"\ntls = "none"\n' + relay_extra,
                           config_extra=f"[queue]\ndirectory = \"queue\"\n{backoff}{queue_extra}\n{config_extra}", **kw)


def message(subject="queued", mid=None, extra=""):
    mid = mid or f"<{time.time_ns()}@sender.test>"
    return (f"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n{extra}"
            f"\r\nhello from the queue\r\n").encode()


def send(port, rcpts=("bob@example.com",), msg=None, sender="alice@sender.test", mail_options=(), rcpt_options=()):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail(sender, list(mail_options))
        for r in rcpts:
            code, text = s.rcpt(r, list(rcpt_options))
            assert code == 250, text
        code, text = s.data(msg or message())
        return code, text.decode()


def queued_id(text):
    m = re.search(r"queued as ([0-9A-F]+)", text)
    assert m, text
    return m.group(1)


def deliveries(gw, outcome=None, count=1, timeout=20):
    def ready():
        recs = [r for r in gw.audit() if r["event"] == "delivery" and (outcome is None or r["reason"] == outcome)]
        return recs if len(recs) >= count else None
    return wait_for(ready, timeout, f"{count} delivery record(s) {outcome or ''}")


def test_queued_then_delivered(gateway_factory, sink):
    gw = queue_gateway(gateway_factory, sink.address)
    code, text = send(gw.port)
    assert code == 250
    qid = queued_id(text)
    dump = sink.dumps(1)[0].decode()
    assert f"with ESMTP id {qid}" in dump and "hello from the queue" in dump
    tx = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert tx["verdict"] == "accepted" and tx["relay"] == f"queued {qid}"
    d = deliveries(gw, "delivered")[0]
    assert d["session"] == qid and d["rcpt_to"] == ["bob@example.com"] and d["reply"].startswith("250")
    # Delivered messages leave the spool.
    wait_for(lambda: not list((gw.dir / "queue" / "active").iterdir()), 10, "an empty spool")


def test_downstream_down_then_back(gateway_factory):
    port = free_port()
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{port}")
    code, text = send(gw.port)
    assert code == 250
    qid = queued_id(text)
    d = deliveries(gw, "deferred")[0]
    assert d["session"] == qid and "connect" in d["reply"]
    listed = gw.cli("queue", "list").stdout
    assert qid in listed and "deferred" in listed
    assert "example.com" in gw.cli("queue", "summary").stdout
    sink = SmtpSink(port=port)
    sink.start()
    try:
        assert "hello from the queue" in sink.dumps(1, timeout=20)[0].decode()
        deliveries(gw, "delivered")
    finally:
        sink.cleanup()


def test_recovers_queue_after_restart(gateway_factory):
    port = free_port()
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{port}", backoff='min_backoff = "1h"\nmax_backoff = "2h"\n')
    ids = [queued_id(send(gw.port)[1]) for _ in range(3)]
    gw.stop()
    sink = SmtpSink(port=port)
    sink.start()
    try:
        gw.start()
        # A restart delivers what is due; these are due in an hour, so flush.
        out = gw.cli("queue", "flush").stdout
        assert "3 message(s)" in out
        assert len(sink.dumps(3, timeout=20)) == 3
        recs = deliveries(gw, "delivered", 3)
        assert sorted(r["session"] for r in recs) == sorted(ids)
    finally:
        sink.cleanup()
