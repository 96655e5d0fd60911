"""The quarantine round trip: a rule holds a message, the admin lists and
shows it, releases it to a real downstream (smtp-sink), deletes another,
and expiry removes old ones; every step is in the audit log."""
import json
import smtplib
import subprocess
import time

POLICY = 'at data match header Subject ~ /hold me/ quarantine "held for review"\n'


def send(gw, subject, mid):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"],
                   f"From: a@sender.test\r\nSubject: {subject}\r\nMessage-ID: <{mid}@sender.test>\r\n\r\nbody\r\n".encode())


def q(gw, *args, check=True):
    out = subprocess.run([gw.binary, "quarantine", *args, "--config", str(gw.config)], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_release_to_smtp_sink_and_delete(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"', policy=POLICY)
    send(gw, "please hold me", "q1")
    send(gw, "hold me too", "q2")
    held = [json.loads(l) for l in q(gw, "list", "--json").stdout.splitlines()]
    assert [h["message_id"] for h in held] == ["<q1@sender.test>", "<q2@sender.test>"]
    assert held[0]["reason"] == "held for review" and held[0]["rcpt_to"] == ["bob@example.com"]
    table = q(gw, "list").stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "TIME", "FROM"] and "held for review" in table
    shown = q(gw, "show", held[0]["id"]).stdout
    assert "reason:     held for review" in shown and "Message-ID: <q1@sender.test>" in shown
    assert list(sink.dir.iterdir()) == []   # nothing reached the downstream while held

    out = q(gw, "release", held[0]["id"])
    assert f"released {held[0]['id']}: {sink.address} 250" in out.stdout
    dump = sink.dumps(1)[0]
    assert b"Message-ID: <q1@sender.test>" in dump and b"X-Rcpt-Args: <bob@example.com>" in dump
    assert b"by mx.test.example (mxgate)" in dump

    q(gw, "delete", held[1]["id"])
    assert q(gw, "list", "--json").stdout == ""
    missing = q(gw, "release", held[1]["id"], check=False)
    assert missing.returncode == 1 and "no quarantined message" in missing.stderr
    bad = q(gw, "show", "../../etc/passwd", check=False)
    assert bad.returncode == 1 and "is not a quarantine ID" in bad.stderr

    records = gw.audit(4)
    assert [r["verdict"] for r in records if r["event"] == "transaction"] == ["quarantined", "quarantined"]
    admin = [r for r in records if r["event"] == "quarantine"]
    assert [(r["verdict"], r["reason"]) for r in admin] == [("accepted", "released by admin"), ("discarded", "deleted by admin")]
    assert admin[0]["relay"].startswith(sink.address + " 250") and admin[0]["message_id"] == "<q1@sender.test>"


def test_release_waits_when_downstream_is_down(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"', policy=POLICY)
    send(gw, "hold me", "q3")
    qid = json.loads(q(gw, "list", "--json").stdout)["id"]
    sink.stop()
    out = q(gw, "release", qid, check=False)
    assert out.returncode == 1 and "cannot connect" in out.stderr
    assert json.loads(q(gw, "list", "--json").stdout)["id"] == qid   # still held


def test_expiry(gateway_factory):
    gw = gateway_factory(policy=POLICY, config_extra="[quarantine]\nretention = 1\n")
    send(gw, "hold me", "q4")
    assert q(gw, "list", "--json").stdout.strip()
    time.sleep(1.5)
    assert "expired 1 message(s)" in q(gw, "expire").stdout
    assert q(gw, "list").stdout.strip() == "the quarantine is empty"
