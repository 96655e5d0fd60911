"""Audit records checked field by field for the three outcomes an admin
looks up most: accepted, a refused recipient, and a relay failure."""
import datetime
import smtplib

from helpers import SmtpSink, free_port

CONTRACT = {"time", "session", "client_ip", "helo", "mail_from", "rcpt_to", "message_id", "size",
            "verdict", "reply", "rules", "spam_score", "virus", "relay"}


def parse_time(t):
    assert t.endswith("Z")
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))


def test_accepted_and_refused_recipient_records(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"')
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("audit.client.test")
        refused = s.sendmail("Sender@Sender.test", ["ok@example.com", "no@elsewhere.test"],
                             b"Subject: a\r\nMessage-ID: <audit-1@sender.test>\r\n\r\nhello\r\n")
        assert set(refused) == {"no@elsewhere.test"}
    records = gw.audit(2)
    assert len(records) == 2
    rcpt, tx = records
    for r in records:
        assert CONTRACT <= set(r), CONTRACT - set(r)
        assert parse_time(r["time"]) >= before
        assert r["client_ip"] == "127.0.0.1"
        assert r["helo"] == "audit.client.test"
        assert r["mail_from"] == "Sender@sender.test"
        assert r["tls"] is False
        assert r["session"] == tx["session"]
        assert r["spam_score"] is None and r["virus"] is None

    assert rcpt["event"] == "recipient"
    assert rcpt["verdict"] == "rejected"
    assert rcpt["rcpt_to"] == ["no@elsewhere.test"]
    assert rcpt["reply"] == "554 5.7.1 <no@elsewhere.test>: Relay access denied (domain not accepted here)"
    assert rcpt["rules"] == ["relay-gate"]
    assert rcpt["message_id"] is None and rcpt["size"] is None and rcpt["relay"] is None

    assert tx["event"] == "transaction"
    assert tx["verdict"] == "accepted"
    assert tx["rcpt_to"] == ["ok@example.com"]
    assert tx["message_id"] == "<audit-1@sender.test>"
    assert tx["size"] == len(b"Subject: a\r\nMessage-ID: <audit-1@sender.test>\r\n\r\nhello\r\n")
    assert tx["reply"].startswith("250 2.0.0")
    assert tx["relay"].startswith(f"{sink.address} 250")
    assert tx["rules"] == []


def test_relay_failure_records(gateway_factory):
    port = free_port()
    gw = gateway_factory(downstream=f"127.0.0.1:{port}", relay_extra='tls = "none"')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("audit.client.test")
        try:
            s.sendmail("a@sender.test", ["ok@example.com"], b"Subject: x\r\n\r\nx\r\n")
            raise AssertionError("accepted with the downstream down")
        except smtplib.SMTPRecipientsRefused as e:
            assert e.recipients["ok@example.com"][0] == 451
    rec = gw.audit(1)[-1]
    assert rec["event"] == "recipient"
    assert rec["verdict"] == "tempfailed"
    assert rec["reply"] == "451 4.4.1 Downstream unavailable, try again later"
    assert rec["rcpt_to"] == ["ok@example.com"]
    assert rec["relay"] == f"127.0.0.1:{port}"
    assert rec["reason"].startswith(f"cannot connect to downstream: 127.0.0.1:{port}")


def test_relay_failure_at_end_of_data_record(gateway_factory):
    s = SmtpSink(extra_args=["-q", "."])
    s.start()
    try:
        gw = gateway_factory(downstream=s.address, relay_extra='tls = "none"')
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as c:
            try:
                c.sendmail("a@sender.test", ["ok@example.com"], b"Subject: x\r\nMessage-ID: <fail@x>\r\n\r\nx\r\n")
                raise AssertionError("accepted although the downstream never answered")
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 451
        rec = gw.audit(1)[-1]
        assert rec["event"] == "transaction"
        assert rec["verdict"] == "tempfailed"
        assert rec["reply"] == "451 4.4.2 Downstream failed during delivery, try again later"
        assert rec["message_id"] == "<fail@x>"
        assert rec["rcpt_to"] == ["ok@example.com"]
        assert rec["relay"] == s.address
        assert "downstream closed the connection" in rec["reason"]
    finally:
        s.cleanup()
