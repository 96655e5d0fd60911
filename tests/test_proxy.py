"""Proxy mode against real downstreams: smtp-sink, and WireRecorder where
the exact bytes on the wire or a mid-DATA crash are the point."""
import re
import smtplib

import pytest

from helpers import RawClient, SmtpSink, WireRecorder, free_port

MESSAGE = (
    "From: Alice <alice@sender.test>\r\n"
    "To: bob@example.com\r\n"
    "Subject: dots\r\n"
    "Message-ID: <dots-1@sender.test>\r\n"
    "\r\n"
    ".leading dot\r\n"
    "..two dots\r\n"
    ".\r\n"
    "last line\r\n"
)


def send(port, msg=MESSAGE, rcpts=("bob@example.com",), sender="alice@sender.test"):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        return s.sendmail(sender, list(rcpts), msg.encode())


def test_relay_to_smtp_sink_dump(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"')
    assert send(gw.port) == {}
    dump = sink.dumps(1)[0].decode()
    # smtp-sink records the envelope it was given, its own Received header, then
    # our Authentication-Results (nothing checked here), then the message exactly
    # as received (dot-stuffing undone, one line per line).
    expected = (
        r"X-Client-Addr: 127\.0\.0\.1\n"
        r"X-Client-Proto: ESMTP\n"
        r"X-Helo-Args: mx\.test\.example\n"
        r"X-Mail-Args: <alice@sender\.test>( SIZE=\d+)?\n"
        r"X-Rcpt-Args: <bob@example\.com>\n"
        r"Received: from mx\.test\.example \(\[127\.0\.0\.1\]\)\n"
        r"\tby sink\.test\.example \(smtp-sink\) with ESMTP id \w+;\n"
        r"\t.+\n"
        r"Received: from client\.test \(\[127\.0\.0\.1\]\)\n"
        r"\tby mx\.test\.example \(mxgate\) with ESMTP id [0-9A-F]+-1\n"
        r"\tfor <bob@example\.com>; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000\n"
        r"Authentication-Results: mx\.test\.example; none\n"
    ) + re.escape(MESSAGE.replace("\r\n", "\n")) + r"\n\Z"
    assert re.match(expected, dump), dump
    rec = gw.audit(1)[-1]
    assert rec["verdict"] == "accepted"
    assert rec["relay"].startswith(sink.address + " 250")
    assert rec["message_id"] == "<dots-1@sender.test>"


def test_bytes_on_the_wire_are_dot_stuffed_crlf(gateway_factory):
    wire = WireRecorder()
    try:
        gw = gateway_factory(downstream=wire.address, relay_extra='tls = "none"')
        assert send(gw.port) == {}
        data = wire.transactions[0]
        assert data.startswith(b"Received: from client.test ([127.0.0.1])\r\n\tby mx.test.example (mxgate)")
        assert b"\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nlast line\r\n.\r\n" in data
        assert data.endswith(b"last line\r\n.\r\n")
        stripped = data.replace(b"\r\n", b"")
        assert b"\r" not in stripped and b"\n" not in stripped
    finally:
        wire.stop()


def test_bare_lf_is_rejected_and_never_relayed(gateway_factory):
    wire = WireRecorder()
    try:
        gw = gateway_factory(downstream=wire.address, relay_extra='tls = "none"')
        c = RawClient(gw.port).begin()
        assert c.cmd("RCPT TO:<b@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: x\r\n\r\nline one\nline two\r\n.\r\n")
        code, lines = c.reply()
        assert code == 550 and "5.6.2" in lines[0]
        assert c.cmd("QUIT")[0] == 221
        assert wire.transactions == []
        rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
        assert rec["verdict"] == "rejected"
    finally:
        wire.stop()


def test_bare_lf_normalized_when_configured(gateway_factory):
    wire = WireRecorder()
    try:
        gw = gateway_factory(downstream=wire.address, relay_extra='tls = "none"', limits='bare_newline = "normalize"')
        c = RawClient(gw.port).begin()
        c.cmd("RCPT TO:<b@example.com>")
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: x\r\n\r\none\ntwo\rthree\n.\nfour\r\n.\r\n")
        assert c.reply()[0] == 250
        data = wire.transactions[0]
        assert b"one\r\ntwo\r\nthree\r\n..\r\nfour\r\n.\r\n" in data
        assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    finally:
        wire.stop()


def test_downstream_rejects_recipient_at_rcpt(gateway_factory):
    s = SmtpSink(extra_args=["-f", "RCPT"])
    s.start()
    try:
        gw = gateway_factory(downstream=s.address, relay_extra='tls = "none"')
        c = RawClient(gw.port).begin()
        code, lines = c.cmd("RCPT TO:<nobody@example.com>")
        assert code == 500 and "5.3.0" in lines[0]   # smtp-sink's own hard-reject reply, passed through
        assert c.cmd("DATA")[0] == 554               # no valid recipients
        rec = [r for r in gw.audit(1) if r["event"] == "recipient"][-1]
        assert rec["verdict"] == "rejected"
        assert rec["rcpt_to"] == ["nobody@example.com"]
        assert rec["reason"] == "downstream refused recipient"
    finally:
        s.cleanup()


@pytest.mark.parametrize("flag,expected_class", [("-r", 4), ("-f", 5)])
def test_downstream_refuses_data(gateway_factory, tmp_path, flag, expected_class):
    s = SmtpSink(extra_args=[flag, "DATA"])
    s.start()
    try:
        gw = gateway_factory(downstream=s.address, relay_extra='tls = "none"')
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(gw.port)
        assert e.value.smtp_code // 100 == expected_class
        rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
        assert rec["verdict"] == ("tempfailed" if expected_class == 4 else "rejected")
        assert list(s.dir.iterdir()) == []
    finally:
        s.cleanup()


def test_downstream_disconnects_after_dot_without_answer(gateway_factory, tmp_path):
    s = SmtpSink(extra_args=["-q", "."])
    s.start()
    try:
        gw = gateway_factory(downstream=s.address, relay_extra='tls = "none"')
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(gw.port)
        assert e.value.smtp_code == 451
        assert b"4.4.2" in e.value.smtp_error
        rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
        assert rec["verdict"] == "tempfailed"
        assert "downstream" in rec["reason"]
    finally:
        s.cleanup()


def test_downstream_closes_mid_data(gateway_factory):
    wire = WireRecorder(close_after_data_bytes=5000)
    try:
        gw = gateway_factory(downstream=wire.address, relay_extra='tls = "none"')
        big = MESSAGE + ("x" * 70 + "\r\n") * 2000
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(gw.port, msg=big)
        assert e.value.smtp_code == 451
        assert wire.transactions == []
        # The gateway keeps serving: the next connection works up to RCPT with a fresh downstream.
        c = RawClient(gw.port)
        assert c.reply()[0] == 220
        c.cmd("EHLO c.test")
        c.cmd("MAIL FROM:<a@sender.test>")
        assert c.cmd("RCPT TO:<b@example.com>")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    finally:
        wire.stop()


def test_downstream_not_listening(gateway_factory):
    port = free_port()
    gw = gateway_factory(downstream=f"127.0.0.1:{port}", relay_extra='tls = "none"')
    c = RawClient(gw.port).begin()
    code, lines = c.cmd("RCPT TO:<b@example.com>")
    assert code == 451 and "4.4.1" in lines[0]
    assert c.cmd("DATA")[0] == 554
    rec = [r for r in gw.audit(1) if r["event"] == "recipient"][-1]
    assert rec["verdict"] == "tempfailed"
    assert "cannot connect" in rec["reason"]
    assert rec["relay"] == f"127.0.0.1:{port}"


def test_connections_to_downstream_are_reused(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"')
    for i in range(5):
        assert send(gw.port, msg=MESSAGE.replace("dots-1", f"reuse-{i}")) == {}
    sink.dumps(5)
    sess, _quit, mesg = sink.counters()
    assert mesg == 5
    assert sess == 1, f"expected one downstream session for 5 messages, saw {sess}"


def test_multiple_recipients_mirrored(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"')
    refused = send(gw.port, rcpts=["a@example.com", "b@example.com", "c@other.test"])
    assert set(refused) == {"c@other.test"}
    dump = sink.dumps(1)[0]
    assert dump.count(b"X-Rcpt-Args:") == 2
    assert b"for <" not in dump.split(b"Received: from client.test", 1)[1].split(b";", 1)[0]


def test_slow_downstream_times_out_with_451(gateway_factory):
    s = SmtpSink(extra_args=["-W", ".:4"])   # smtp-sink waits 4 s before answering the end of data
    s.start()
    try:
        gw = gateway_factory(downstream=s.address, relay_extra='tls = "none"\ndata_timeout = "1s"')
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(gw.port)
        assert e.value.smtp_code == 451
        rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
        assert rec["verdict"] == "tempfailed" and "timed out" in rec["reason"] and "end of data" in rec["reason"], rec
    finally:
        s.cleanup()


def test_downstream_421_becomes_451_and_session_goes_on(gateway_factory):
    s = SmtpSink(extra_args=["-Q", "RCPT"])   # 421 and disconnect at RCPT
    s.start()
    try:
        gw = gateway_factory(downstream=s.address, relay_extra='tls = "none"')
        c = RawClient(gw.port).begin()
        code, lines = c.cmd("RCPT TO:<b@example.com>")
        assert code == 451 and "4.4.2" in lines[0]
        assert c.cmd("NOOP")[0] == 250   # our session is still open
        assert c.cmd("QUIT")[0] == 221
    finally:
        s.cleanup()
