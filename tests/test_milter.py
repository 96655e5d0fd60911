"""mxgate as a milter behind a real Postfix (`smtpd_milters`): Postfix is
the MX and delivers; mxgate's policy, scanning and audit decide."""
import pathlib
import socket
import subprocess
import time

import pytest

from helpers import free_port, smtp_send, wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
POLICY = (
    'at connect match client 127.0.0.2 reject "554 5.7.1 Your network is blocked here"\n'
    'at data match body ~ /GTUBE-STANDARD-ANTI-UBE/ reject "550 5.7.1 Spam refused (GTUBE)"\n'
    'at data match header Subject ~ /hold me/ quarantine "held for review"\n'
)
ROOT = pathlib.Path(__file__).resolve().parent.parent
MILTER = '[milter]\nlisten = "inet:127.0.0.1:0"\n'


def msg(mid, body="Hello from behind Postfix.\r\n"):
    return (f"From: Alice <a@sender.test>\r\nTo: bob@example.com\r\nSubject: milter {mid}\r\n"
            f"Message-ID: <{mid}@sender.test>\r\n"
            "Authentication-Results: mx.test.example; spf=pass smtp.mailfrom=forged.test\r\n"
            f"\r\n{body}").encode()


def send(port, mid, body=None, source=None):
    """Sends through Postfix; returns Postfix's reply to the message (or to the refused step)."""
    return smtp_send(port, "a@sender.test", ["bob@example.com"], msg(mid, body) if body else msg(mid),
                     helo="client.sender.test", source=source, timeout=30)


def behind_postfix(gateway_factory, postfix_factory, sink, policy=POLICY, extra="", default_action="tempfail"):
    gw = gateway_factory(policy=policy, config_extra=MILTER + extra)
    pf = postfix_factory("mx", relayhost=sink.port, relay_domains="example.com", tls_level="none",
                         extra_main=f"smtpd_milters = inet:127.0.0.1:{gw.milter_port}\n"
                                    f"milter_default_action = {default_action}\n")
    return gw, pf


def records(gw, event="transaction", count=1):
    wait_for(lambda: len([r for r in gw.audit() if r["event"] == event]) >= count, 10, f"{count} {event} record(s)")
    return [r for r in gw.audit() if r["event"] == event]


def test_clean_message_is_delivered_by_postfix_with_our_results(gateway_factory, postfix_factory, sink):
    gw, pf = behind_postfix(gateway_factory, postfix_factory, sink)
    assert send(pf.port, "clean-1") == (250, "")
    dump = sink.dumps(1, timeout=30)[0]
    header = dump.split(b"\r\n\r\n", 1)[0]
    # Ours is the only one claiming our authserv-id: the forged one is gone.
    assert header.count(b"Authentication-Results: mx.test.example") == 1
    assert b"smtp.mailfrom=forged.test" not in header
    assert b"Message-ID: <clean-1@sender.test>" in header and b"by pf.test.example (Postfix)" in header
    rec = records(gw)[-1]
    assert rec["verdict"] == "accepted" and rec["rcpt_to"] == ["bob@example.com"]
    assert rec["mail_from"] == "a@sender.test" and rec["helo"] == "client.sender.test"
    assert rec["milter"]["mta"] == "pf.test.example" and rec["relay"] == "mta pf.test.example"
    # The queue id in the record is the one Postfix logs for the message.
    wait_for(lambda: "status=sent" in pf.maillog(), 30, "Postfix to relay the message")
    assert rec["milter"]["queue_id"] and f"{rec['milter']['queue_id']}: " in pf.maillog()


def test_gtube_is_refused_by_postfix_with_our_reply(gateway_factory, postfix_factory, sink):
    gw, pf = behind_postfix(gateway_factory, postfix_factory, sink)
    code, text = send(pf.port, "gtube-1", body=f"Buy now {GTUBE}\r\n")
    assert code == 550 and "5.7.1 Spam refused (GTUBE)" in text
    rec = records(gw)[-1]
    assert rec["verdict"] == "rejected" and rec["reply"].startswith("550 5.7.1 Spam refused")
    assert rec["milter"]["mta"] == "pf.test.example"
    assert "milter-reject: END-OF-MESSAGE" in pf.maillog()
    time.sleep(0.5)
    assert not [p for p in sink.dir.iterdir() if p.is_file()]


def test_eicar_is_refused_by_postfix(gateway_factory, postfix_factory, sink, clamd):
    policy = 'at data match virus reject "554 5.7.1 Virus found: {virus}"\n'
    gw, pf = behind_postfix(gateway_factory, postfix_factory, sink, policy=policy,
                            extra=f'[clamav]\nmode = "clamd"\nsocket = "{clamd.socket}"\n')
    code, text = send(pf.port, "eicar-1", body=EICAR + "\r\n")
    assert code == 554 and "Virus found: MxGate" in text
    rec = records(gw)[-1]
    assert rec["verdict"] == "rejected" and rec["virus"].startswith("MxGate")


def test_blocked_client_is_refused_at_connect(gateway_factory, postfix_factory, sink):
    gw, pf = behind_postfix(gateway_factory, postfix_factory, sink)
    code, _ = send(pf.port, "blocked-1", source="127.0.0.2")
    # Postfix greets a client refused at connect with its own text, and logs ours.
    assert code == 554
    wait_for(lambda: "milter-reject: CONNECT from unknown[127.0.0.2]: 554 5.7.1 Your network is blocked here"
             in pf.maillog(), 10, "Postfix to log mxgate's reply")
    rec = records(gw, "connection")[-1]
    assert rec["client_ip"] == "127.0.0.2" and rec["verdict"] == "rejected"
    assert rec["milter"]["mta"] == "pf.test.example"
    # The next client is judged on its own.
    assert send(pf.port, "after-blocked")[0] == 250


@pytest.mark.parametrize("action,expected", [("tempfail", 451), ("accept", 250)])
def test_dead_milter_follows_postfix_default_action(gateway_factory, postfix_factory, sink, action, expected):
    gw, pf = behind_postfix(gateway_factory, postfix_factory, sink, default_action=action)
    assert send(pf.port, "alive-1") == (250, "")
    gw.stop()
    code, _ = send(pf.port, "dead-1")
    assert code == expected
    if expected == 250:
        dumps = sink.dumps(2, timeout=30)
        # Judged by no one: Postfix passed it on without our header.
        dead = [d for d in dumps if b"<dead-1@sender.test>" in d][0]
        assert b"Authentication-Results: mx.test.example;" not in dead.split(b"\r\n\r\n", 1)[0].replace(
            b"mx.test.example; spf=pass smtp.mailfrom=forged.test", b"")
    assert [r["message_id"] for r in gw.audit() if r["event"] == "transaction"] == ["<alive-1@sender.test>"]


def test_milter_needs_a_listen_address(gateway_factory, mxgate_bin, tmp_path):
    gw = gateway_factory()
    gw.config.write_text(gw.config.read_text() + '[milter]\nlisten = "tcp:8891"\n')
    out = gw.cli("check", check=False)
    assert out.returncode != 0 and "[milter] listen must be inet:HOST:PORT or unix:PATH" in out.stdout + out.stderr
    assert free_port()  # the listener was never bound


# Debian's miltertest (OpenDKIM's) plays the MTA: Lua scripts in tests/milter/.
SCRIPTS = ROOT / "tests" / "milter"


def miltertest(gw, script):
    out = subprocess.run(["miltertest", "-s", str(SCRIPTS / script), "-D", f"port={gw.milter_port}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}\nmxgate:\n{gw.log[-3000:]}"
    return out.stdout


def test_miltertest_every_stage(gateway_factory):
    gw = gateway_factory(policy=POLICY, config_extra=MILTER)
    assert "every stage: ok" in miltertest(gw, "every_stage.lua")
    recs = records(gw, count=3)
    refused = [r for r in gw.audit() if r["event"] == "recipient"]
    assert refused[-1]["rcpt_to"] == ["x@elsewhere.test"] and refused[-1]["rules"] == ["relay-gate"]
    assert refused[-1]["milter"] == {"mta": "mta.test.example", "queue_id": "QID1"}
    clean, spam, held = recs[-3:]
    assert held["verdict"] == "quarantined" and held["relay"] == "mta mta.test.example"
    assert clean["verdict"] == "accepted" and clean["message_id"] == "<stage-1@sender.test>"
    assert clean["milter"] == {"mta": "mta.test.example", "queue_id": "QID1"} and clean["client_ip"] == "192.0.2.10"
    # The aborted message left no record; the next one is judged alone.
    assert spam["verdict"] == "rejected" and spam["mail_from"] == "d@sender.test" and spam["milter"]["queue_id"] == "QID3"
    assert spam["session"] == clean["session"]


def test_miltertest_fewer_steps(gateway_factory):
    gw = gateway_factory(policy=POLICY, config_extra=MILTER)
    assert "fewer steps: ok" in miltertest(gw, "fewer_steps.lua")
    rec, held = records(gw, count=2)[-2:]
    # Offered no quarantine, the MTA is told to try later rather than deliver what the policy held back.
    assert held["verdict"] == "tempfailed" and held["reason"] == "the MTA does not offer to quarantine"
    assert rec["verdict"] == "accepted" and rec["helo"] and rec["client_ip"] == "192.0.2.11"


def test_miltertest_body_over_64k(gateway_factory, clamd):
    policy = 'at data match virus reject "554 5.7.1 Virus found: {virus}"\n'
    gw = gateway_factory(policy=policy, config_extra=MILTER + f'[clamav]\nmode = "clamd"\nsocket = "{clamd.socket}"\n')
    assert "big body: ok" in miltertest(gw, "big_body.lua")
    clean, spam = records(gw, count=2)[-2:]
    assert clean["verdict"] == "accepted" and clean["size"] > 5 * 59200 + 20000
    assert spam["verdict"] == "rejected" and spam["virus"].startswith("MxGate") and spam["size"] > clean["size"]


def test_milter_protocol_garbage_ends_the_connection_not_the_gateway(gateway_factory):
    gw = gateway_factory(policy=POLICY, config_extra=MILTER)
    with socket.create_connection(("127.0.0.1", gw.milter_port), timeout=10) as s:
        s.sendall(b"\x00\x00\x00\x05Xjunk")  # an unknown command before any negotiation
        assert s.recv(100) == b""  # closed
    with socket.create_connection(("127.0.0.1", gw.milter_port), timeout=10) as s:
        s.sendall(b"\x7f\xff\xff\xffO")  # a 2 GB packet announced
        assert s.recv(100) == b""
    gw.wait_log("milter connection from")
    assert "every stage: ok" in miltertest(gw, "every_stage.lua")


def test_check_shows_milters_and_refuses_unknown_names(gateway_factory):
    extra = MILTER + '[[milters]]\nname = "opendkim"\nsocket = "inet:8891@127.0.0.1"\nstages = ["data"]\n'
    gw = gateway_factory(policy='at data match milter opendkim failed tag\n', config_extra=extra)
    out = gw.cli("check")
    assert "milter    serving on inet:127.0.0.1:0" in out.stdout
    assert "milters   opendkim (inet:127.0.0.1:8891): data, default_action tempfail" in out.stdout
    gw.write_policy('at data match milter opendkm failed tag\n')
    out = gw.cli("check", check=False)
    assert out.returncode == 1 and "milter opendkm: no [[milters]] entry has that name (known: opendkim)" in out.stdout


def test_rewriting_changes_the_envelope_postfix_delivers(gateway_factory, postfix_factory, sink):
    """[rewrite] tables, as a milter: the recipient and sender changes are asked of Postfix."""
    tables = {"recipient_canonical": "info@example.com  sales@example.com\n",
              "sender_canonical": "a@sender.test  alice@outbound.example\n"}
    gw = gateway_factory(policy=POLICY, tables=tables,
                         config_extra=MILTER + '[rewrite]\nsender = "rules/sender_canonical"\n'
                                               'recipient = "rules/recipient_canonical"\n')
    pf = postfix_factory("rw", relayhost=sink.port, relay_domains="example.com", tls_level="none",
                         extra_main=f"smtpd_milters = inet:127.0.0.1:{gw.milter_port}\nmilter_default_action = tempfail\n")
    assert smtp_send(pf.port, "a@sender.test", ["info@example.com", "bob@example.com"], msg("rw-1"), helo="c.test") == (250, "")
    dump = sink.dumps(1, timeout=30)[0]
    assert b"X-Mail-Args: <alice@outbound.example>" in dump
    rcpts = sorted(line.split()[1] for line in dump.split(b"\n") if line.startswith(b"X-Rcpt-Args:"))
    assert rcpts == [b"<bob@example.com>", b"<sales@example.com>"]
    # The audit record keeps what the client sent.
    assert sorted(records(gw)[-1]["rcpt_to"]) == ["bob@example.com", "info@example.com"]
