"""The rule engine in a live gateway: decisions on the wire, in the
delivered message and in the audit log; reload; the policy tools."""
import json
import signal
import smtplib
import subprocess
import time

import pytest

from helpers import RawClient

MSG = b"From: a@sender.test\r\nSubject: {subject}\r\nMessage-ID: <{mid}@sender.test>\r\n\r\nbody\r\n"


def message(subject="hello", mid="m1"):
    return MSG.replace(b"{subject}", subject.encode()).replace(b"{mid}", mid.encode())


def test_rules_decide_on_the_wire_and_in_the_audit(gateway_factory):
    gw = gateway_factory(policy="""
table users list:rules/users.list
table hc regexp:rules/header_checks
at rcpt match !rcpt <users> reject "550 5.1.1 <{recipient}>: No such user here"
at data match header <hc>
at data match spam-score >= 3 tag
at data match all add-header "X-Checked-By: {hostname}"
""", tables={"users.list": "alice@example.com\nbob@example.com\n",
             "header_checks": "shouting /^Subject:.*[A-Z]{10}/ score +3\nlottery /^Subject:.*lottery/ reject \"550 5.7.1 No lotteries ({rule})\"\n"})
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        refused = s.sendmail("a@sender.test", ["alice@example.com", "ghost@example.com"], message("HELLOOOOOOOOOO"))
        assert refused == {"ghost@example.com": (550, b"5.1.1 <ghost@example.com>: No such user here")}
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"], message("win the lottery", "m2"))
        assert e.value.smtp_code == 550 and b"No lotteries (policies/test.policy:4 lottery)" in e.value.smtp_error
    raw = open(gw.maildir_files("alice@example.com")[0], "rb").read()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Spam-Flag: YES\r\n" in head
    assert b"\r\nX-Spam-Score: 3\r\n" in head
    assert b"\r\nX-Checked-By: mx.test.example\r\n" in head
    assert gw.maildir_files("bob@example.com") == []
    records = gw.audit(3)
    rcpt = [r for r in records if r["event"] == "recipient"][0]
    assert rcpt["rules"] == ["policies/test.policy:3"] and rcpt["rcpt_to"] == ["ghost@example.com"]
    tx = [r for r in records if r["event"] == "transaction"]
    assert tx[0]["verdict"] == "accepted" and tx[0]["spam_score"] == 3
    assert tx[0]["rules"] == ["policies/test.policy:4 shouting", "policies/test.policy:5", "policies/test.policy:6"]
    assert tx[1]["verdict"] == "rejected" and tx[1]["rules"] == ["policies/test.policy:4 lottery"]
    gw.wait_log("rule policies/test.policy:3 reject")  # the log names the rule and why
    assert "is in <users>" in gw.log or "not (" in gw.log


def test_connect_reject_and_warn(gateway_factory):
    gw = gateway_factory(policy="""
at connect match client 127.0.0.0/8 warn reject "554 5.7.1 would block {client_ip}"
at helo match helo blocked.example disconnect "421 4.7.0 Bye {helo}"
""")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["alice@example.com"], message())
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "accepted"
    assert rec["warnings"] == ["policies/test.policy:1: warn: would reject: 554 5.7.1 would block 127.0.0.1"]
    assert rec["rules"] == ["policies/test.policy:1"]
    c = RawClient(gw.port)
    c.reply()
    code, lines = c.cmd("EHLO blocked.example")
    assert code == 421 and "Bye blocked.example" in lines[0]
    assert c.closed()


def test_discard_and_quarantine(gateway_factory):
    gw = gateway_factory(policy="""
at data match header Subject ~ /^noise$/ discard
at data match header Subject ~ /^suspicious$/ quarantine "looks odd"
""")
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["alice@example.com"], message("noise", "d1"))
        s.sendmail("a@sender.test", ["alice@example.com"], message("suspicious", "q1"))
    assert gw.maildir_files("alice@example.com") == []
    records = [r for r in gw.audit(2) if r["event"] == "transaction"]
    assert [r["verdict"] for r in records] == ["discarded", "quarantined"]
    qid = records[1]["relay"].split()[1]
    qdir = gw.dir / "var" / "quarantine"
    held = (qdir / f"{qid}.eml").read_bytes()
    assert b"Message-ID: <q1@sender.test>" in held and held.startswith(b"Received: ")
    meta = json.loads((qdir / f"{qid}.json").read_text())
    assert meta["rcpt_to"] == ["alice@example.com"] and meta["reason"] == "looks odd"
    assert meta["rules"] == ["policies/test.policy:2"]


def test_client_limits(gateway_factory):
    gw = gateway_factory(policy="limit connections-per-client 2\nlimit messages-per-client 3/minute\n")
    a, b = RawClient(gw.port), RawClient(gw.port)
    assert a.reply()[0] == 220 and b.reply()[0] == 220
    c = RawClient(gw.port)
    code, lines = c.reply()
    assert code == 421 and "too many connections from 127.0.0.1" in lines[0]
    b.cmd("QUIT")
    a.cmd("EHLO c.test")
    for _ in range(3):
        assert a.cmd("MAIL FROM:<x@sender.test>")[0] == 250
        assert a.cmd("RSET")[0] == 250
    code, lines = a.cmd("MAIL FROM:<x@sender.test>")
    assert code == 421 and "too much mail" in lines[0]
    assert a.closed()
    recs = gw.audit(2)
    assert any(r["rules"] == ["limit connections-per-client"] for r in recs)
    assert any(r["rules"] == ["limit messages-per-client"] for r in recs)


def test_domain_sections_defer_mixed_recipients(gateway_factory):
    gw = gateway_factory(domains=("example.com", "vip.example"), policy="""
domain vip.example {
  limit recipients 1
  at rcpt match all score +1
}
""")
    c = RawClient(gw.port).begin()
    assert c.cmd("RCPT TO:<a@vip.example>")[0] == 250
    code, lines = c.cmd("RCPT TO:<b@example.com>")
    assert code == 452 and "4.5.3" in lines[0]
    code, lines = c.cmd("RCPT TO:<c@vip.example>")
    assert code == 452   # the vip section allows one recipient
    c.cmd("QUIT")


def test_reload_changes_rules_but_not_open_sessions(gateway_factory):
    gw = gateway_factory(policy='at rcpt match rcpt carol@example.com reject "550 5.1.1 Carol left"\n')
    old = RawClient(gw.port).begin()
    assert old.cmd("RCPT TO:<carol@example.com>")[0] == 550
    gw.write_policy('at rcpt match rcpt dave@example.com reject "550 5.1.1 Dave left"\n')
    gw.signal(signal.SIGHUP)
    gw.wait_log("reload: configuration", 10)
    # The session opened before the reload keeps its policy to the end.
    assert old.cmd("RCPT TO:<dave@example.com>")[0] == 250
    assert old.cmd("RCPT TO:<carol@example.com>")[0] == 550
    new = RawClient(gw.port).begin()
    assert new.cmd("RCPT TO:<carol@example.com>")[0] == 250
    assert new.cmd("RCPT TO:<dave@example.com>")[0] == 550
    # A broken policy is refused with every error logged; the running one stays.
    gw.write_policy('at rcpt match rcpt <missing> reject\nat sometime match all accept\n')
    gw.signal(signal.SIGHUP)
    gw.wait_log("unknown stage 'sometime'", 10)
    gw.wait_log("policies/test.policy:1:20: unknown table <missing>")
    third = RawClient(gw.port).begin()
    assert third.cmd("RCPT TO:<dave@example.com>")[0] == 550
    for cl in (old, new, third):
        cl.cmd("QUIT")


def test_check_reports_policy_errors_with_positions(gateway_factory, mxgate_bin):
    gw = gateway_factory()
    gw.write_policy('table t cidr:rules/t.cidr\nat connect match client <t> reject\nat connect match client 10.0.0.0/33 reject\n'
                    'at data match header Subject ~ /(/ reject\nat connect match all accept\nat connect match client 10.0.0.1 reject\n',
                    tables={"t.cidr": "10.0.0.0/8\nnot-a-network\n"})
    out = subprocess.run([mxgate_bin, "check", "--config", str(gw.config)], capture_output=True, text=True)
    assert out.returncode == 1
    d = str(gw.dir)
    lines = out.stdout.splitlines()
    assert f"{d}/rules/t.cidr:2:1: 'not-a-network' is not an IP address or CIDR network" in lines
    assert f"{d}/policies/test.policy:3:25: '10.0.0.0/33' is not an IP address or CIDR network" in lines
    assert any(l.startswith(f"{d}/policies/test.policy:4:32: bad regular expression") for l in lines)
    assert f"{d}/policies/test.policy:6:1: warning: this rule can never match: policies/test.policy:5 always decides at connect first" in lines


def test_mxgate_test_and_lookup_commands(gateway_factory, mxgate_bin, tmp_path):
    gw = gateway_factory(policy="""
table blocked cidr:rules/blocked.cidr
at connect match client <blocked> reject "554 5.7.1 Go away: {value}"
at data match header Subject ~ /offer/ score +2.5
""", tables={"blocked.cidr": "203.0.113.0/24 listed by ops\n"})
    eml = tmp_path / "m.eml"
    eml.write_text("From: a@sender.test\nSubject: special offer\nMessage-ID: <t1@x>\n\nhi\n")
    base = [mxgate_bin, "test", "--config", str(gw.config), "--from", "a@sender.test", "--to", "alice@example.com"]
    out = subprocess.run(base + ["--client-ip", "203.0.113.7", str(eml)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verdict:    rejected at connect" in out.stdout
    assert "554 5.7.1 Go away: listed by ops" in out.stdout
    assert "because client 203.0.113.7 is in <blocked> (203.0.113.0/24, rules/blocked.cidr:1)" in out.stdout
    out = subprocess.run(base + ["--client-ip", "198.51.100.7", "--json", str(eml)], capture_output=True, text=True)
    rec = json.loads(out.stdout)
    assert rec["verdict"] == "accepted" and rec["spam_score"] == 2.5 and rec["message_id"] == "<t1@x>"
    assert rec["rules"] == ["policies/test.policy:3"] and rec["rcpt_to"] == ["alice@example.com"]
    found = subprocess.run([mxgate_bin, "lookup", "--config", str(gw.config), "blocked", "203.0.113.200"], capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == "203.0.113.200: 203.0.113.0/24 (rules/blocked.cidr:1) listed by ops"
    missing = subprocess.run([mxgate_bin, "lookup", "--config", str(gw.config), "cidr:rules/blocked.cidr", "192.0.2.1"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "not found" in missing.stdout
