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


def test_clean_stop_leaves_no_delivered_message_behind(gateway_factory, sink):
    """Delivered files are unlinked off the sessions' loops, a little
    later; a clean stop finishes that first, so a restart does not deliver
    them again."""
    gw = queue_gateway(gateway_factory, sink.address)
    for i in range(10):
        assert send(gw.port, msg=message(f"stop {i}"))[0] == 250
    wait_for(lambda: len([p for p in sink.dir.iterdir() if p.is_file()]) >= 10 or None, 20, "10 messages at smtp-sink")
    assert gw.stop() == 0
    assert list((gw.dir / "queue" / "active").iterdir()) == []
    assert len([r for r in gw.audit() if r["event"] == "delivery" and r["reason"] == "delivered"]) == 10


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


def test_backlog_larger_than_the_delivery_slots_all_goes_out(gateway_factory):
    """Twelve messages deferred while the downstream is down, two delivery
    slots: once it is back, each finished delivery hands its slot to the
    next message due, until none is left (the scheduler's order of due
    times, not a scan of the queue)."""
    port = free_port()
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{port}", queue_extra="max_deliveries = 2\n")
    ids = {queued_id(send(gw.port, msg=message(f"backlog {i}"))[1]) for i in range(12)}
    deliveries(gw, "deferred", count=12)
    sink = SmtpSink(port=port)
    sink.start()
    try:
        dumps = sink.dumps(12, timeout=60)
        assert sorted(re.search(rb"Subject: (backlog \d+)", d).group(1) for d in dumps) == \
            sorted(f"backlog {i}".encode() for i in range(12))
        delivered = deliveries(gw, "delivered", count=12, timeout=20)
        assert {d["session"] for d in delivered} == ids
        wait_for(lambda: gw.cli("queue", "list").stdout.strip() == "the queue is empty" or None, 10, "an empty queue")
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


def parse_dsn(dump):
    """A DSN as smtp-sink stored it: envelope lines, then the report."""
    msg = email.message_from_bytes(dump, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert parts[1].get_content_type() == "message/delivery-status"
    # compat32 parses message/delivery-status into a list of header blocks.
    blocks = [dict(b.items()) for b in parts[1].get_payload()]
    return msg, blocks[0], blocks[1:], parts[2]


@pytest.fixture
def bounce_sink():
    s = SmtpSink()
    s.start()
    yield s
    s.cleanup()


def test_rejected_recipient_bounces_via_mx(gateway_factory, postfix_factory, sink, bounce_sink, dns_factory):
    """A real Postfix downstream refuses one recipient: the sender gets an
    RFC 3464 DSN, delivered to the MX of its domain found through DNS.
    (Not under .test: libunbound answers that special-use TLD itself.)"""
    dns = dns_factory({"records": [["sender.example", "MX", "10 mx.sender.example."], ["mx.sender.example", "A", "127.0.0.1"]]})
    pf = postfix_factory("rejecting", relayhost=sink.port, relay_domains="example.com",
                         extra_main="smtpd_recipient_restrictions = check_recipient_access "
                                    "inline:{{nosuch@example.com=550 5.1.1 No such user here}}, permit_mynetworks, reject")
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{pf.port}", queue_extra=f"mx_port = {bounce_sink.port}\n",
                       config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n')
    code, text = send(gw.port, rcpts=("bob@example.com", "nosuch@example.com"), msg=message(mid="<bounce-me@sender.test>"),
                      sender="alice@sender.example")
    assert code == 250
    qid = queued_id(text)
    assert b"Message-ID: <bounce-me@sender.test>" in sink.dumps(1, timeout=30)[0]
    dump = bounce_sink.dumps(1, timeout=30)[0]
    assert b"X-Mail-Args: <>" in dump and b"X-Rcpt-Args: <alice@sender.example>" in dump
    msg, per_message, per_rcpt, original = parse_dsn(dump)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert per_message["Reporting-MTA"] == "dns; mx.test.example"
    assert per_message["X-Mxgate-Queue-ID"] == qid
    assert len(per_rcpt) == 1
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nosuch@example.com"
    assert r["Action"] == "failed" and r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"].startswith("smtp; 550 5.1.1") and "No such user here" in r["Diagnostic-Code"]
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0]["Message-ID"] == "<bounce-me@sender.test>"
    failed = deliveries(gw, "failed")[0]
    assert failed["rcpt_to"] == ["nosuch@example.com"] and failed["reply"].startswith("550 5.1.1")
    assert deliveries(gw, "bounced")[0]["session"] == qid


def test_postfix_defers_then_accepts(gateway_factory, postfix_factory, sink):
    pf = postfix_factory("deferring", relayhost=sink.port, relay_domains="example.com")
    access = pf.dir / "access"
    access.write_text("later@example.com 450 4.2.0 Try again later\n")
    pf.extra_main = f"smtpd_recipient_restrictions = check_recipient_access texthash:{access}, permit_mynetworks, reject"
    subprocess.run(["postconf", "-c", str(pf.conf), "-e", pf.extra_main], env=pf.env, check=True)
    pf.reload()
    time.sleep(1)
    # No pooled connection: a reload does not change an smtpd session already open.
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{pf.port}", relay_extra="pool_size = 0\n")
    code, text = send(gw.port, rcpts=("later@example.com",))
    qid = queued_id(text)
    d = deliveries(gw, "deferred")[0]
    assert d["session"] == qid and d["reply"].startswith("450 4.2.0")
    access.write_text("")
    pf.reload()
    dump = sink.dumps(1, timeout=40)[0]
    assert b"X-Rcpt-Args: <later@example.com>" in dump
    assert deliveries(gw, "delivered", timeout=30)[0]["session"] == qid
    assert not [r for r in gw.audit() if r["event"] == "delivery" and r["reason"] == "bounced"]


def test_null_sender_is_never_bounced(gateway_factory, postfix_factory, sink, bounce_sink):
    pf = postfix_factory("rejecting2", relayhost=sink.port, relay_domains="example.com",
                         extra_main="smtpd_recipient_restrictions = check_recipient_access "
                                    "inline:{{nosuch@example.com=550 5.1.1 No such user here}}, permit_mynetworks, reject")
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{pf.port}", config_extra=f'[routes]\n"sender.test" = "{bounce_sink.address}"\n')
    code, text = send(gw.port, rcpts=("nosuch@example.com",), sender="")
    assert code == 250
    deliveries(gw, "failed")
    gw.wait_log("no bounce for a bounce", 10)
    time.sleep(1)
    assert not [r for r in gw.audit() if r["event"] == "delivery" and r["reason"] == "bounced"]
    assert list(bounce_sink.dir.iterdir()) == []


def test_lifetime_expiry_bounces(gateway_factory, bounce_sink):
    port = free_port()
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{port}", queue_extra='lifetime = "3s"\n',
                       config_extra=f'[routes]\n"sender.test" = "{bounce_sink.address}"\n')
    code, text = send(gw.port, msg=message(mid="<expires@sender.test>"))
    qid = queued_id(text)
    dump = bounce_sink.dumps(1, timeout=30)[0]
    _, per_message, per_rcpt, _ = parse_dsn(dump)
    assert per_message["X-Mxgate-Queue-ID"] == qid
    assert per_rcpt[0]["Action"] == "failed" and per_rcpt[0]["Status"] == "4.4.7"
    assert "delivery time expired" in per_rcpt[0]["Diagnostic-Code"]
    assert deliveries(gw, "expired")[0]["session"] == qid
    wait_for(lambda: qid not in gw.cli("queue", "list").stdout, 10, "the expired message to leave the queue")


def test_dsn_parameters_are_honoured(gateway_factory, postfix_factory, sink, bounce_sink):
    """RFC 3461: NOTIFY=NEVER gets no report; ENVID, ORCPT and RET=HDRS
    shape the one that is sent."""
    pf = postfix_factory("rejecting3", relayhost=sink.port, relay_domains="example.com",
                         extra_main="smtpd_recipient_restrictions = check_recipient_access "
                                    "inline:{{nosuch@example.com=550 5.1.1 No such user here}, "
                                    "{quiet@example.com=550 5.1.1 Gone}}, permit_mynetworks, reject")
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{pf.port}", config_extra=f'[routes]\n"sender.test" = "{bounce_sink.address}"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("dsn")
        s.mail("alice@sender.test", ["RET=HDRS", "ENVID=track+2Bme-42"])
        assert s.rcpt("nosuch@example.com", ["NOTIFY=FAILURE", "ORCPT=rfc822;first+2Bowner@example.com"])[0] == 250
        assert s.rcpt("quiet@example.com", ["NOTIFY=NEVER"])[0] == 250
        code, _ = s.data(message(mid="<params@sender.test>"))
        assert code == 250
    dump = bounce_sink.dumps(1, timeout=30)[0]
    _, per_message, per_rcpt, returned = parse_dsn(dump)
    assert per_message["Original-Envelope-Id"] == "track+me-42"
    assert [r["Final-Recipient"] for r in per_rcpt] == ["rfc822; nosuch@example.com"]
    assert per_rcpt[0]["Original-Recipient"] == "rfc822; first+owner@example.com"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "hello from the queue" not in str(returned) and "params@sender.test" in str(returned)
    time.sleep(1)
    assert len(list(bounce_sink.dir.iterdir())) == 1


def test_proxy_fallback_queues_when_downstream_is_down(gateway_factory):
    port = free_port()
    gw = gateway_factory(downstream=f"127.0.0.1:{port}", relay_extra='tls = "none"\nfallback = "queue"\n',
                         config_extra=f'[queue]\ndirectory = "queue"\n{FAST}')
    code, text = send(gw.port, msg=message(mid="<fallback@sender.test>"))
    assert code == 250
    qid = queued_id(text)
    tx = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert tx["relay"] == f"queued {qid}" and "downstream unavailable" in tx["reason"]
    sink = SmtpSink(port=port)
    sink.start()
    try:
        assert b"Message-ID: <fallback@sender.test>" in sink.dumps(1, timeout=20)[0]
        # With the downstream back, the next message goes through in step again.
        code, text = send(gw.port, msg=message(mid="<in-step@sender.test>"))
        assert code == 250 and "queued as" not in text  # smtp-sink's own reply, passed through
        dumps = sink.dumps(2, timeout=20)
        assert any(b"<in-step@sender.test>" in d for d in dumps)
        tx = wait_for(lambda: (t := [r for r in gw.audit() if r["event"] == "transaction"])[1:] and t[-1], 10, "two transactions")
        assert tx["relay"].startswith(f"127.0.0.1:{port} 250")
    finally:
        sink.cleanup()


def test_without_fallback_downstream_down_is_451(gateway_factory):
    gw = gateway_factory(downstream=f"127.0.0.1:{free_port()}", relay_extra='tls = "none"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("alice@sender.test")
        code, _ = s.rcpt("bob@example.com")
        assert code == 451


def test_queue_tools(gateway_factory):
    port = free_port()
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{port}")
    keep = queued_id(send(gw.port, msg=message(mid="<keep@sender.test>"))[1])
    drop = queued_id(send(gw.port, msg=message(mid="<drop@sender.test>"))[1])
    assert "held" in gw.cli("queue", "hold", keep).stdout
    shown = gw.cli("queue", "show", keep).stdout
    assert f"queue ID:   {keep}" in shown and "state:      held" in shown and "Message-ID: <keep@sender.test>" in shown
    assert "<bob@example.com> pending" in shown
    assert "deleted" in gw.cli("queue", "delete", drop).stdout
    missing = gw.cli("queue", "show", drop, check=False)
    assert missing.returncode == 1 and "no queued message" in missing.stderr
    bad = gw.cli("queue", "hold", "../../etc/passwd", check=False)
    assert bad.returncode == 1 and "not a queue ID" in bad.stderr
    sink = SmtpSink(port=port)
    sink.start()
    try:
        gw.cli("queue", "flush")
        time.sleep(3)
        assert list(sink.dir.iterdir()) == []  # held: not delivered
        assert "released" in gw.cli("queue", "release", keep).stdout
        dump = sink.dumps(1, timeout=20)[0]
        assert b"<keep@sender.test>" in dump
        wanted = {"held", "released", "deleted", "delivered"}
        wait_for(lambda: wanted <= {r["reason"] for r in gw.audit() if r["event"] == "delivery"}, 10,
                 "held, released, deleted and delivered in the audit log")
        wait_for(lambda: "the queue is empty" in gw.cli("queue", "list").stdout, 10, "an empty queue")
    finally:
        sink.cleanup()


def test_queue_tools_without_a_running_gateway(gateway_factory):
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{free_port()}", backoff='min_backoff = "1h"\nmax_backoff = "2h"\n')
    qid = queued_id(send(gw.port)[1])
    gw.stop()
    assert "held" in gw.cli("queue", "hold", qid).stdout
    assert "held" in gw.cli("queue", "list").stdout
    assert "deleted" in gw.cli("queue", "delete", qid).stdout
    assert "the queue is empty" in gw.cli("queue", "list").stdout


def test_spool_write_failure_is_452_never_250(gateway_factory, sink):
    """A file-size limit (as a full disk would) makes the spool write fail:
    the client hears 452 4.3.1 and keeps the message; smaller mail still
    goes through, and the gateway keeps serving."""
    gw = queue_gateway(gateway_factory, sink.address)
    subprocess.run(["prlimit", "--pid", str(gw.proc.pid), "--fsize=65536"], check=True)
    big = message() + (b"y" * 76 + b"\r\n") * 2000
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("alice@sender.test")
        s.rcpt("bob@example.com")
        code, text = s.data(big)
        assert code == 452 and b"4.3.1" in text
        code, text = s.sendmail("alice@sender.test", ["bob@example.com"], message(mid="<small@sender.test>")), None
    assert b"<small@sender.test>" in sink.dumps(1, timeout=20)[0]
    tx = [r for r in gw.audit(2) if r["event"] == "transaction"]
    assert tx[0]["verdict"] == "tempfailed" and "File too large" in tx[0]["reason"]
    assert gw.proc.poll() is None
    # Nothing half-written stays behind.
    assert list((gw.dir / "queue" / "tmp").iterdir()) == []


def test_required_tls_route_is_never_downgraded(gateway_factory, sink):
    """smtp-sink offers no STARTTLS: a route that requires TLS defers the
    message rather than sending it in plaintext."""
    gw = queue_gateway(gateway_factory, "127.0.0.1:1",
                       config_extra=f'[routes]\n"example.com" = {{ downstream = "{sink.address}", tls = "required" }}\n')
    qid = queued_id(send(gw.port)[1])
    d = deliveries(gw, "deferred")[0]
    assert d["session"] == qid and "STARTTLS" in d["reply"] and "required" in d["reply"]
    time.sleep(2)
    assert list(sink.dir.iterdir()) == []
    assert qid in gw.cli("queue", "list").stdout


def test_delay_warning_is_sent_once(gateway_factory, bounce_sink):
    """With delay_warning set, a message still undelivered after it gets one
    "delayed" DSN, and stays queued."""
    gw = queue_gateway(gateway_factory, f"127.0.0.1:{free_port()}", queue_extra='delay_warning = "2s"\n',
                       config_extra=f'[routes]\n"sender.test" = "{bounce_sink.address}"\n')
    qid = queued_id(send(gw.port, msg=message(mid="<slow@sender.test>"))[1])
    dump = bounce_sink.dumps(1, timeout=30)[0]
    msg, per_message, per_rcpt, returned = parse_dsn(dump)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert per_message["X-Mxgate-Queue-ID"] == qid
    assert per_rcpt[0]["Action"] == "delayed" and per_rcpt[0]["Status"].startswith("4.")
    assert "Will-Retry-Until" in per_rcpt[0]
    assert returned.get_content_type() == "text/rfc822-headers"
    time.sleep(4)
    assert len(list(bounce_sink.dir.iterdir())) == 1
    assert qid in gw.cli("queue", "list").stdout
