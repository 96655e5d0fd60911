"""DNS lists (RFC 5782) against a real DNS server on loopback: the client's
IP with return codes, the sender's domain, and URL domains with a bit mask."""
import smtplib

import pytest

from helpers import RawClient

ZONE = {
    "records": [
        ["40.0.0.127.bl.test.example", "A", "127.0.0.2"],
        ["41.0.0.127.bl.test.example", "A", "127.0.0.10"],
        ["spam-sender.example.dbl.test.example", "A", "127.0.1.2"],
        ["phish.example.uribl.test.example", "A", "127.0.0.8"],
        ["other.example.uribl.test.example", "A", "127.0.0.2"],
    ],
    "servfail": ["42.0.0.127.bl.test.example"],
}

POLICY = """
at connect match dnsbl bl.test.example = 127.0.0.2 reject "554 5.7.1 {client_ip} is listed ({value})"
at connect match dnsbl bl.test.example = 127.0.0.10/31 score +3
at mail match sender-dnsbl dbl.test.example reject "550 5.7.1 Sender domain is listed"
at data match uribl uribl.test.example & 8 reject "554 5.7.1 A URL in the message is listed"
"""


@pytest.fixture
def gw(gateway_factory, dns_factory):
    dns = dns_factory(ZONE)
    return gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n')


def test_listed_client_refused_at_connect(gw):
    code, lines = RawClient(gw.port, source="127.0.0.40").reply()
    assert code == 554 and "127.0.0.40 is listed (127.0.0.2)" in lines[0]


def test_code_range_scores_only(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.41", 0)) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: x\r\n\r\nhello\r\n")
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "accepted" and rec["spam_score"] == 3
    assert rec["symbols"] == {"policies/test.policy:2": 3}


def test_lookup_failure_tempfails(gw):
    code, lines = RawClient(gw.port, source="127.0.0.42").reply()
    assert code == 451 and "Temporary lookup failure" in lines[0]


def test_sender_domain_and_uri_lists(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.43", 0)) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("x@mail.spam-sender.example", ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        assert e.value.smtp_code == 550
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.43", 0)) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"],
                       b"Subject: x\r\nContent-Type: text/html\r\n\r\n<a href='https://login.phish.example/x'>x</a>\r\n")
        assert e.value.smtp_code == 554 and b"URL in the message is listed" in e.value.smtp_error
        # listed in the zone, but not with bit 8: passes
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: y\r\n\r\nsee http://www.other.example/page\r\n")
    assert len(gw.maildir_files("bob@example.com")) == 1


def test_dns_budget_counts_unanswered_as_not_listed(gateway_factory, dns_factory):
    """A silent list server: once the message's DNS budget (1s) is used up the
    lookup counts as not listed and the audit record says so, instead of the
    message waiting out the 5s per-lookup timeout and being tempfailed."""
    dns = dns_factory({"silent": ["slow.example.uribl.test.example"]})
    gw = gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n'
                                                     'timeout = "5s"\nbudget = "1s"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.44", 0)) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: x\r\n\r\nsee http://slow.example/page\r\n")
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "accepted"
    assert any("DNS budget of 1s used up before slow.example.uribl.test.example answered" in w
               for w in rec["warnings"]), rec


def test_silent_list_within_budget_tempfails(gateway_factory, dns_factory):
    """Without the budget cutting it short, a lookup that times out on its
    own is a failure: the rule tempfails rather than passing the message."""
    dns = dns_factory({"silent": ["slow.example.uribl.test.example"]})
    gw = gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n'
                                                     'timeout = "1s"\nbudget = "10s"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.44", 0)) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: x\r\n\r\nsee http://slow.example/page\r\n")
        assert e.value.smtp_code == 451


def test_mxgate_test_answers_lists_and_reverse_dns_from_a_zone_file(gateway_factory, mxgate_bin, tmp_path):
    """`mxgate test --dns-zone` answers the DNS lists and the client's reverse
    DNS from the zone file, as the live gateway would from the network."""
    import json
    import subprocess
    gw = gateway_factory(policy="""
at connect match dnsbl bl.test.example = 127.0.0.2 reject "554 5.7.1 {client_ip} is listed"
at connect match fcrdns score -1
at mail match sender-dnsbl dbl.test.example reject "550 5.7.1 Sender domain is listed"
""")
    zone = tmp_path / "z.zone"
    zone.write_text("$ORIGIN test.example.\n"
                    "7.113.0.203.bl   IN A 127.0.0.2\n"
                    "spam-sender.example.dbl IN A 127.0.1.2\n"
                    "$ORIGIN in-addr.arpa.\n"
                    "8.113.0.203      IN PTR mail.good.example.\n"
                    "$ORIGIN good.example.\n"
                    "mail             IN A 203.0.113.8\n")
    eml = tmp_path / "m.eml"
    eml.write_text("Subject: hi\n\nhi\n")

    def run(ip, sender):
        out = subprocess.run([mxgate_bin, "test", "--config", str(gw.config), "--client-ip", ip, "--from", sender,
                              "--to", "r@example.com", "--dns-zone", str(zone), "--json", str(eml)],
                             capture_output=True, text=True)
        return json.loads(out.stdout)

    assert run("203.0.113.7", "a@ok.example")["verdict"] == "rejected"
    rec = run("203.0.113.8", "a@ok.example")
    assert rec["verdict"] == "accepted" and rec["spam_score"] == -1
    rec = run("203.0.113.8", "a@spam-sender.example")
    assert rec["verdict"] == "rejected" and rec["reply"].startswith("550 5.7.1 Sender domain is listed")


def test_repeated_lookups_reach_the_server_once_and_decide_alike(gateway_factory, dns_factory, tmp_path):
    """Within the answer's TTL (60 s here) a repeated question is answered
    from cache (the gateway's own answer cache, and libunbound's behind it)
    and decides as the first answer did: listed scores 3 every time, not
    listed scores nothing every time."""
    log = tmp_path / "queries.log"
    dns = dns_factory({**ZONE, "log": str(log)})
    gw = gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n')
    for _ in range(3):
        for source in ("127.0.0.41", "127.0.0.45"):
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=(source, 0)) as s:
                s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: x\r\n\r\nhello\r\n")
    recs = [r for r in gw.audit(6) if r["event"] == "transaction"]
    assert [(r["client_ip"], r.get("spam_score") or 0) for r in recs] == [("127.0.0.41", 3), ("127.0.0.45", 0)] * 3, recs
    asked = [l for l in log.read_text().split("\n") if l]
    # Three connections, three lookups; uncached, that is three questions at
    # least. (One lookup may reach the server twice: libunbound resends a
    # question a loaded server is slow to answer.)
    assert asked.count("41.0.0.127.bl.test.example A") < 3, asked
