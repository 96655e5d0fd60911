"""SPF (RFC 7208) in a live session against a real DNS server on loopback:
the MAIL FROM identity decides at MAIL, the HELO identity is checked too and
stands in for a null sender, includes and mx follow the DNS, a DNS failure
is temperror (451, never an accept), and the results reach the audit
record. `mxgate test --dns-zone` gives the same verdict offline."""
import json
import smtplib
import subprocess

import pytest

from helpers import wait_for

ZONE = {
    "records": [
        ["pass.example", "TXT", '"v=spf1 ip4:127.0.0.1 -all"'],
        ["fail.example", "TXT", '"v=spf1 ip4:192.0.2.1 -all"'],
        ["soft.example", "TXT", '"v=spf1 ~all"'],
        ["chain.example", "TXT", '"v=spf1 include:_spf.relay.example -all"'],
        ["_spf.relay.example", "TXT", '"v=spf1 mx:relay.example -all"'],
        ["relay.example", "MX", "10 mx1.relay.example."],
        ["mx1.relay.example", "A", "127.0.0.1"],
        ["helo.example", "TXT", '"v=spf1 a -all"'],
        ["helo.example", "A", "127.0.0.1"],
        ["split.example", "TXT", '"v=spf1 ip4:127.0.0.0/8" " -all"'],
    ],
    "servfail": ["broken.example"],
}

POLICY = """
at mail match spf temperror tempfail "451 4.7.24 SPF check failed, try again later"
at mail match spf fail reject "550 5.7.23 SPF: {client_ip} may not send for this domain"
at mail match spf softfail score +2
"""


@pytest.fixture
def gw(gateway_factory, dns_factory):
    dns = dns_factory(ZONE)
    return gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n')


def last(gw, event="transaction", count=1):
    """The newest record of `event`, once there are `count` of them (the writer flushes within a second)."""
    wait_for(lambda: len([r for r in gw.audit() if r["event"] == event]) >= count, what=f"{count} {event} record(s)")
    return [r for r in gw.audit() if r["event"] == event][-1]


@pytest.mark.parametrize("sender", ["a@pass.example", "b@chain.example", "c@split.example"])
def test_spf_pass_is_delivered_and_recorded(gw, sender):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        s.sendmail(sender, ["r@example.com"], b"Subject: spf\r\n\r\nhi\r\n")
    rec = last(gw)
    assert rec["verdict"] == "accepted"
    assert rec["auth"]["spf"] == {"result": "pass", "domain": sender.split("@")[1]}
    assert rec["auth"]["spf_helo"] == {"result": "pass", "domain": "helo.example"}


def test_spf_fail_is_refused_at_mail(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        code, msg = s.mail("x@fail.example")
        assert code == 550 and b"5.7.23 SPF: 127.0.0.1 may not send" in msg
        # The next transaction starts afresh: a passing sender goes through.
        s.rset()
        assert s.mail("a@pass.example")[0] == 250
    rec = last(gw, "command")
    assert rec["verdict"] == "rejected" and rec["rules"] == ["policies/test.policy:2"]
    assert rec["auth"]["spf"] == {"result": "fail", "domain": "fail.example"}


def test_log_filters_on_the_spf_result(gw, mxgate_bin):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        s.sendmail("a@pass.example", ["r@example.com"], b"Subject: ok\r\n\r\nhi\r\n")
        s.mail("x@fail.example")
    last(gw, "command")
    out = subprocess.run([mxgate_bin, "log", "--config", str(gw.config), "--spf", "fail", "--json"],
                         capture_output=True, text=True)
    recs = [json.loads(l) for l in out.stdout.splitlines()]
    assert [r["mail_from"] for r in recs] == ["x@fail.example"], out.stdout + out.stderr
    out = subprocess.run([mxgate_bin, "log", "--config", str(gw.config), "--spf", "pass", "--json"],
                         capture_output=True, text=True)
    assert [json.loads(l)["mail_from"] for l in out.stdout.splitlines()] == ["a@pass.example"]


def test_dns_failure_is_temperror_and_tempfails(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        code, msg = s.mail("x@broken.example")
    assert code == 451 and b"SPF check failed" in msg
    assert last(gw, "command")["auth"]["spf"]["result"] == "temperror"


def test_temperror_never_passes_a_fail_rule(gateway_factory, dns_factory):
    """With only a fail rule, a lookup that failed is not taken for a pass: the rule cannot decide, so 451."""
    dns = dns_factory(ZONE)
    gw = gateway_factory(policy='at mail match spf fail reject\n',
                         config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        code, msg = s.mail("x@broken.example")
        assert code == 451 and b"policies/test.policy:1" in msg
        assert s.mail("x@pass.example")[0] == 250


def test_softfail_scores_and_null_sender_uses_helo(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        s.sendmail("s@soft.example", ["r@example.com"], b"Subject: soft\r\n\r\nhi\r\n")
        rec = last(gw)
        assert rec["auth"]["spf"]["result"] == "softfail" and rec["spam_score"] == 2
        s.sendmail("<>", ["r@example.com"], b"Subject: bounce\r\n\r\nhi\r\n")
    rec = last(gw, count=2)
    assert rec["verdict"] == "accepted"
    assert rec["auth"]["spf"] == {"result": "pass", "domain": "helo.example"}


def test_spf_condition_errors_name_the_position(gateway_factory, mxgate_bin):
    gw = gateway_factory()
    gw.write_policy("at mail match spf fial reject\n")
    out = subprocess.run([mxgate_bin, "check", "--config", str(gw.config)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{gw.dir}/policies/test.policy:1:19: 'fial' is not an SPF result" in out.stdout, out.stdout


def test_mxgate_test_answers_spf_from_a_zone_file(gateway_factory, mxgate_bin, tmp_path):
    gw = gateway_factory(policy=POLICY)
    zone = tmp_path / "test.zone"
    zone.write_text("$ORIGIN example.\n$TTL 300\n"
                    "fail     IN TXT \"v=spf1 ip4:192.0.2.1\" \" -all\" ; two strings, joined\n"
                    "pass     IN TXT \"v=spf1 mx -all\"\n"
                    "         IN MX  10 mx1.pass.example.\n"
                    "mx1.pass IN A   203.0.113.7\n")
    eml = tmp_path / "m.eml"
    eml.write_text("From: a@fail.example\nSubject: hi\n\nhi\n")
    base = [mxgate_bin, "test", "--config", str(gw.config), "--client-ip", "203.0.113.7", "--helo", "mx1.pass.example",
            "--to", "r@example.com", "--dns-zone", str(zone)]
    out = subprocess.run(base + ["--from", "a@fail.example", str(eml)], capture_output=True, text=True)
    assert "verdict:    rejected at mail" in out.stdout, out.stdout + out.stderr
    assert "SPF fail for fail.example" in out.stdout
    out = subprocess.run(base + ["--from", "a@pass.example", "--json", str(eml)], capture_output=True, text=True)
    rec = json.loads(out.stdout)
    assert rec["verdict"] == "accepted" and rec["auth"]["spf"] == {"result": "pass", "domain": "pass.example"}
    # Without a zone SPF is not checked, as DNS lists count as not listing, and the report says so.
    out = subprocess.run(base[:-2] + ["--from", "a@fail.example", str(eml)], capture_output=True, text=True)
    assert "auth:       not checked: SPF, DKIM and DMARC need DNS" in out.stdout, out.stdout
    assert "SPF fail" not in out.stdout
    bad = tmp_path / "bad.zone"
    bad.write_text("ok.example. IN A 192.0.2.1\nbad.example. IN A not-an-address\n")
    out = subprocess.run(base[:-1] + [str(bad), "--from", "a@fail.example", str(eml)], capture_output=True, text=True)
    assert out.returncode == 1 and f"{bad}:2:1: 'not-an-address' is not an IPv4 address" in out.stderr, out.stderr


FORGED = (b"Authentication-Results: MX.Test.Example; spf=pass smtp.mailfrom=fail.example\r\n"
          b"Authentication-Results: (a comment) mx.test.example 1;\r\n\tdkim=pass header.d=bank.example\r\n"
          b"Authentication-Results: other.example; spf=fail smtp.mailfrom=fail.example\r\n"
          b"Subject: forged verdicts\r\n\r\nhi\r\n")
OUR_HEADER = (b"Authentication-Results: mx.test.example;\r\n\tspf=pass smtp.mailfrom=pass.example;\r\n"
              b"\tspf=pass smtp.helo=helo.example\r\n")


def test_authentication_results_written_and_forged_ones_removed(gateway_factory, dns_factory):
    """[auth] spf = true checks every message for its Authentication-Results
    header (no rule needs it); incoming ones claiming our authserv-id go, others stay."""
    dns = dns_factory(ZONE)
    gw = gateway_factory(config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n[auth]\nspf = true\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("helo.example")
        s.sendmail("a@pass.example", ["r@example.com"], FORGED)
    files = gw.maildir_files("r@example.com")
    assert len(files) == 1
    text = open(files[0], "rb").read()
    head, body = text.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"Received: from helo.example")
    assert OUR_HEADER in text
    assert b"MX.Test.Example" not in text and b"bank.example" not in text
    assert b"Authentication-Results: other.example; spf=fail" in text
    assert text.endswith(b"Subject: forged verdicts\r\n\r\nhi\r\n")


def test_authentication_results_reach_the_downstream_byte_for_byte(gateway_factory, dns_factory):
    """Proxy mode to a real smtp-sink (its dumps end lines with LF), with an authserv-id of our own choosing."""
    from helpers import SmtpSink
    sink = SmtpSink()
    sink.start()
    try:
        dns = dns_factory(ZONE)
        gw = gateway_factory(downstream=sink.address,
                             config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
                                          '[auth]\nspf = true\nauthserv_id = "auth.example.com"\n')
        msg = FORGED.replace(b"MX.Test.Example", b"Auth.Example.COM")
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
            s.ehlo("helo.example")
            s.sendmail("x@fail.example", ["r@example.com"], msg)
            s.sendmail("<>", ["r@example.com"], b"Subject: bounce\r\n\r\nhi\r\n")
        dumps = sink.dumps(2)
        first = next(d for d in dumps if b"forged verdicts" in d)
        assert (b"Authentication-Results: auth.example.com;\n\tspf=fail smtp.mailfrom=fail.example;\n"
                b"\tspf=pass smtp.helo=helo.example\n") in first
        assert b"Auth.Example.COM" not in first
        assert b"Authentication-Results: (a comment) mx.test.example 1;\n\tdkim=pass" in first  # not ours here: kept
        bounce = next(d for d in dumps if b"Subject: bounce" in d)
        assert b"Authentication-Results: auth.example.com;\n\tspf=pass smtp.helo=helo.example\n" in bounce
    finally:
        sink.cleanup()


def test_without_checks_the_header_says_none(gateway_factory):
    gw = gateway_factory()
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["r@example.com"], b"Subject: plain\r\n\r\nhi\r\n")
    text = open(gw.maildir_files("r@example.com")[0], "rb").read()
    assert b"\r\nAuthentication-Results: mx.test.example; none\r\n" in text
