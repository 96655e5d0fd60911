"""The quick start: swaks into the default Maildir delivery."""
import email
import subprocess


def swaks(port, *args):
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--hide-informational", *args],
                          capture_output=True, text=True, timeout=60)


def test_swaks_into_maildir(gateway_factory):
    gw = gateway_factory()
    out = swaks(gw.port, "--to", "alice@example.com", "--from", "bob@sender.test",
                "--header", "Message-Id: <quickstart-1@sender.test>", "--body", "hello from swaks")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0 Ok: delivered as" in out.stdout
    files = gw.maildir_files("alice@example.com")
    assert len(files) == 1
    raw = open(files[0], "rb").read()
    assert raw.startswith(b"Received: from ")
    assert b"by mx.test.example (mxgate) with ESMTP id " in raw
    assert b"for <alice@example.com>" in raw
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw)
    assert msg["Message-ID"] == "<quickstart-1@sender.test>"
    assert "hello from swaks" in msg.get_payload()

    rec = gw.audit(1)[-1]
    assert rec["verdict"] == "accepted"
    assert rec["event"] == "transaction"
    assert rec["client_ip"] == "127.0.0.1"
    assert rec["mail_from"] == "bob@sender.test"
    assert rec["rcpt_to"] == ["alice@example.com"]
    assert rec["message_id"] == "<quickstart-1@sender.test>"
    assert rec["reply"].startswith("250 2.0.0")
    assert rec["relay"].startswith("maildir ")
    assert rec["size"] > 0
    assert rec["helo"]
    for key in ("time", "session", "rules", "spam_score", "virus"):
        assert key in rec


def test_one_copy_per_recipient_and_relay_denied(gateway_factory):
    gw = gateway_factory()
    out = swaks(gw.port, "--to", "a@example.com,b@example.com,c@elsewhere.test", "--from", "s@sender.test")
    # swaks proceeds when at least one recipient is accepted
    assert "554 5.7.1 <c@elsewhere.test>: Relay access denied" in out.stdout
    assert len(gw.maildir_files("a@example.com")) == 1
    assert len(gw.maildir_files("b@example.com")) == 1
    records = gw.audit(2)
    refused = [r for r in records if r["event"] == "recipient"]
    assert refused and refused[0]["verdict"] == "rejected"
    assert refused[0]["rcpt_to"] == ["c@elsewhere.test"]
    assert refused[0]["rules"] == ["relay-gate"]
    accepted = [r for r in records if r["event"] == "transaction"]
    assert accepted[0]["rcpt_to"] == ["a@example.com", "b@example.com"]
