"""[state] and greylisting against a real redis-server (Debian's, on a unix
socket the test owns): a sender greylisted at gateway A passes at gateway B
after the delay; a message rate holds across two gateways; a classifier
trained through A is used by B; Redis stopped mid-run and started again.
And greylisting on the embedded backend, surviving a restart."""
import re
import smtplib
import subprocess
import time
import urllib.request

import pytest

from helpers import Redis, wait_for

GREYLIST = "at rcpt match all greylist\n"


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path / "redis")
    r.start()
    yield r
    r.stop()


def state(redis, extra=""):
    return f'[state]\nredis = "{redis.url}"\ntimeout = "200ms"\nretry_interval = "1s"\n{extra}\n'


def attempt(gw, sender="news@lists.example.org", rcpt="alice@example.com", body="Subject: hi\r\n\r\nhello\r\n"):
    """One delivery attempt: the RCPT reply code and text (and the message sent when it was accepted)."""
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail(sender)
        code, text = s.rcpt(rcpt)
        if code == 250:
            s.data(body)
        return code, text.decode()


def test_greylisted_at_a_passes_at_b_after_the_delay(gateway_factory, redis):
    cfg = state(redis) + '[greylist]\ndelay = "2s"\n'
    a = gateway_factory(policy=GREYLIST, config_extra=cfg)
    b = gateway_factory(policy=GREYLIST, config_extra=cfg)
    code, text = attempt(a)
    assert code == 451 and "4.7.1" in text and "Greylisted" in text
    code, _ = attempt(b)  # too early, at the other MX too
    assert code == 451
    time.sleep(2.2)
    code, _ = attempt(b, sender="news+1234@lists.example.org")  # the same sender, normalised (+ext, digits)
    assert code == 250
    wait_for(lambda: len(b.maildir_files("alice@example.com")) == 1, 5, "the message delivered by B")
    recs = [r for r in a.audit(1) if r["event"] == "recipient"]
    assert recs[0]["verdict"] == "tempfailed" and recs[0]["greylist"]["outcome"] == "new"
    assert recs[0]["greylist"]["triplet"] == "127.0.0.0/24 / news@lists.example.org / alice@example.com"
    passed = [r for r in b.audit(2) if r["event"] == "transaction"]
    wait_for(lambda: any(r["event"] == "transaction" for r in b.audit()), 5, "B's transaction record")
    passed = [r for r in b.audit() if r["event"] == "transaction"][0]
    assert passed["greylist"]["outcome"] == "retried" and passed["greylist"]["waited"] >= 2
    # Remembered as passed in Redis, with postgrey's 35 days of keeping.
    key = "mxgate:gl:t:127.0.0.0/24 / news@lists.example.org / alice@example.com"
    assert redis.cli("GET", key).startswith("P")
    assert int(redis.cli("TTL", key)) > 34 * 86400
    # Another recipient is another triplet.
    assert attempt(a, rcpt="bob@example.com")[0] == 451


def test_message_rate_holds_across_two_gateways(gateway_factory, redis):
    policy = "limit messages-per-client 4/minute\n"
    a = gateway_factory(policy=policy, config_extra=state(redis))
    b = gateway_factory(policy=policy, config_extra=state(redis))
    codes = []
    for i in range(6):
        gw = a if i % 2 == 0 else b
        try:
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
                s.ehlo("client.test")
                codes.append(s.mail(f"s{i}@sender.example")[0])
        except smtplib.SMTPServerDisconnected:
            codes.append(421)
    assert codes == [250, 250, 250, 250, 421, 421]


def test_classifier_trained_through_a_is_used_by_b(gateway_factory, redis, tmp_path):
    cfg = state(redis, 'share_classifier = true') + '[classifier]\nmodel = "var/unused.model"\nmin_learned = 5\n'
    policy = "at data match spam-score >= 4 reject \"550 5.7.1 the classifier says spam\"\n"
    a = gateway_factory(policy=policy, config_extra=cfg)
    b = gateway_factory(policy=policy, config_extra=cfg)
    spam, ham = tmp_path / "spam", tmp_path / "ham"
    spam.mkdir()
    ham.mkdir()
    for i in range(12):
        (spam / f"{i}.eml").write_text(f"From: win{i}@lottery.example\r\nSubject: claim your prize {i}\r\n\r\n"
                                       f"You have won the lottery jackpot prize, send your bank details now {i}\r\n")
        (ham / f"{i}.eml").write_text(f"From: colleague{i}@example.com\r\nSubject: minutes of meeting {i}\r\n\r\n"
                                      f"Attached are the minutes of the planning meeting about the budget {i}\r\n")
    out = a.cli("learn", "--spam", str(spam), "--ham", str(ham))
    assert "24" in out.stdout or "learnt" in out.stdout
    assert not (a.dir / "var" / "unused.model").exists()  # the model is in Redis, not the file
    assert redis.cli("EXISTS", "mxgate:classifier:model") == "1"

    def refused_by_b():
        with smtplib.SMTP("127.0.0.1", b.port, timeout=10) as s:
            s.ehlo("client.test")
            s.mail("win99@lottery.example")
            s.rcpt("alice@example.com")
            code, _ = s.data("From: win99@lottery.example\r\nSubject: claim your prize now\r\n\r\n"
                             "You have won the lottery jackpot prize, send your bank details now\r\n")
            return code == 550
    wait_for(refused_by_b, 15, lambda: "gateway B classifying with the model A learnt:\n" + b.log)


def test_redis_stopped_mid_run_falls_back_and_recovers(gateway_factory, redis):
    cfg = state(redis) + '[greylist]\ndelay = "1s"\n[metrics]\nlisten = "127.0.0.1:0"\n'
    g = gateway_factory(policy=GREYLIST, config_extra=cfg)
    metrics = "http://" + wait_for(lambda: re.search(r"metrics on http://([\d.]+:\d+)/metrics", g.log), 10, "the metrics address").group(1)
    assert attempt(g, sender="one@a.example")[0] == 451
    redis.stop()
    # Down: this node's own greylist answers, promptly, no tempfail storm for passed senders.
    started = time.time()
    code, _ = attempt(g, sender="two@b.example")
    assert code == 451 and time.time() - started < 5
    time.sleep(1.2)
    assert attempt(g, sender="two@b.example")[0] == 250  # passed on this node's own state
    wait_for(lambda: any("state:" in w and "greylist used this node's own state" in w
                         for r in g.audit() for w in r.get("warnings", [])), 5, "the fallback's warning in the audit record")
    scraped = urllib.request.urlopen(metrics + "/metrics", timeout=5).read().decode()
    failures = re.search(r'mxgate_state_failures_total\{use="greylist"\} (\d+)', scraped)
    assert failures and int(failures.group(1)) >= 1, scraped
    # Back: Redis is used again without a restart.
    redis.start()
    wait_for(lambda: attempt(g, sender="three@c.example")[0] == 451 and
             redis.cli("EXISTS", "mxgate:gl:t:127.0.0.0/24 / three@c.example / alice@example.com") == "1",
             10, "the greylist written to Redis again")


def test_embedded_greylist_survives_a_restart(gateway_factory):
    g = gateway_factory(policy=GREYLIST, config_extra='[greylist]\ndelay = "1s"\n')
    assert attempt(g)[0] == 451
    g.stop()  # SIGTERM writes the state file
    assert "news@lists.example.org" in (g.dir / "var" / "state").read_text()
    time.sleep(1.1)
    g.start()
    assert attempt(g)[0] == 250
    assert attempt(g, rcpt="bob@example.com")[0] == 451


def send_from(gw, source, body, sender="offers@bulk.example", rcpt="alice@example.com"):
    """A whole transaction from a given loopback address: the end-of-data reply code."""
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10, source_address=(source, 0)) as s:
        s.ehlo("pool.bulk.example")
        s.mail(sender)
        assert s.rcpt(rcpt)[0] == 250
        return s.data(body)[0]


def test_greylisting_only_suspicious_mail_at_data(gateway_factory, redis):
    policy = ("at data match header Subject ~ /cheap/ score +4\n"
              "at data match spam-score >= 3 greylist\n")
    g = gateway_factory(policy=policy, config_extra=state(redis) + '[greylist]\ndelay = "1s"\n')
    clean = "Subject: minutes\r\n\r\nThe minutes of Tuesday.\r\n"
    suspicious = "Subject: cheap watches\r\n\r\nBuy now, only today.\r\n"
    assert send_from(g, "127.0.0.1", clean) == 250
    assert send_from(g, "127.0.0.1", suspicious) == 451
    time.sleep(1.1)
    # The same message from another address of the sender's pool (another /24) passes: same body.
    assert send_from(g, "127.9.8.7", suspicious) == 250
    # ... and its triplet is remembered as passed there; another sender's is new.
    assert send_from(g, "127.9.8.7", "Subject: cheap pens\r\n\r\nOther text.\r\n", sender="sales@other.example") == 451
    wait_for(lambda: len([r for r in g.audit() if r["event"] == "transaction"]) >= 4, 5, "four transaction records")
    outcomes = [r.get("greylist", {}).get("outcome") for r in g.audit() if r["event"] == "transaction"]
    assert outcomes == [None, "new", "same-message", "new"]


def test_greylist_needs_a_recipient(gateway_factory, mxgate_bin, tmp_path):
    from helpers import Mxgate
    g = Mxgate(mxgate_bin, tmp_path / "bad", policy="at mail match all greylist\n")
    out = g.cli("check", check=False)
    assert out.returncode != 0
    assert "test.policy:1" in out.stderr + out.stdout and "greylist needs the recipient" in out.stderr + out.stdout


def test_release_request_from_another_node(gateway_factory, redis):
    hold = 'at data match header Subject ~ /hold me/ quarantine "held for review"\n'
    a = gateway_factory(policy=hold, config_extra=state(redis, 'node = "mx-a"'))
    b = gateway_factory(policy=hold, config_extra=state(redis, 'node = "mx-b"'))
    with smtplib.SMTP("127.0.0.1", b.port, timeout=10) as s:
        s.sendmail("sender@remote.example", ["alice@example.com"], "Subject: hold me\r\n\r\nheld at B\r\n")
    held = b.cli("quarantine", "list", "--json").stdout.strip().splitlines()
    assert len(held) == 1
    qid = __import__("json").loads(held[0])["id"]
    # Asked from A's shell, done by B (where the message is), audited by B.
    out = a.cli("quarantine", "release", qid, "--node", "mx-b")
    assert "asked mx-b" in out.stdout
    wait_for(lambda: len(b.maildir_files("alice@example.com")) == 1, 10, "B releasing its held message")
    wait_for(lambda: any(r["event"] == "quarantine" and "on request of" in (r.get("reason") or "") for r in b.audit()),
             5, "B's audit record of the release")
    assert b.cli("quarantine", "list").stdout.strip() == "the quarantine is empty"
    # A bad ID is refused where it is asked, never sent.
    bad = a.cli("quarantine", "release", "../etc", "--node", "mx-b", check=False)
    assert bad.returncode == 1 and "not a quarantine ID" in bad.stderr


def test_the_console_why_shows_the_greylist(gateway_factory, mxgate_bin):
    from test_console import Browser, start_console
    g, url = start_console(gateway_factory, mxgate_bin, policy=GREYLIST)
    assert attempt(g, sender="first@new.example")[0] == 451
    wait_for(lambda: any(r["event"] == "recipient" for r in g.audit()), 5, "the greylisted recipient's record")
    session = [r for r in g.audit() if r["event"] == "recipient"][0]["session"]
    b = Browser(url)
    assert b.login(user="victor")[0] == 303
    body = wait_for(lambda: (lambda r: r[2] if r[0] == 200 else None)(b.request(f"/why/{session}")), 10, "the why page")
    assert "greylist" in body and "new after 0s: 127.0.0.0/24 / first@new.example / alice@example.com" in body


def test_a_pool_whose_spf_passes_is_one_sender(gateway_factory, dns_factory):
    """A large sender retries from another address of its pool: when SPF
    passes for both, the triplet is keyed by the SPF domain and the retry
    passes; a sender without SPF from another network starts again."""
    dns = dns_factory({"records": [["pool.example", "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"']]})
    g = gateway_factory(policy=GREYLIST, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
                                                      '[greylist]\ndelay = "1s"\n')

    def rcpt_from(source, sender):
        with smtplib.SMTP("127.0.0.1", g.port, timeout=10, source_address=(source, 0)) as s:
            s.ehlo("out.pool.example")
            s.mail(sender)
            return s.rcpt("alice@example.com")[0]
    assert rcpt_from("127.0.0.1", "bounces@pool.example") == 451
    assert rcpt_from("127.0.0.1", "someone@nospf.example") == 451
    time.sleep(1.1)
    assert rcpt_from("127.20.30.40", "bounces@pool.example") == 250   # another /24, same SPF domain
    assert rcpt_from("127.20.30.40", "someone@nospf.example") == 451  # another /24, no SPF: a new triplet
    wait_for(lambda: len([r for r in g.audit() if r["event"] == "recipient"]) >= 3, 5, "the recipient records")
    triplets = [r["greylist"]["triplet"] for r in g.audit() if r["event"] == "recipient"]
    assert triplets[0] == "spf:pool.example / bounces@pool.example / alice@example.com"
    assert triplets[-1] == "127.20.30.0/24 / someone@nospf.example / alice@example.com"


def make_cert(d, name):
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_redis_over_tls(gateway_factory, tmp_path):
    """rediss://: Debian's redis-server with TLS only, its certificate
    checked against [state] tls_ca; a certificate nobody vouches for is
    refused (and the node falls back to its own state, saying why)."""
    from helpers import free_port
    cert, key = make_cert(tmp_path, "redis")
    stranger, _ = make_cert(tmp_path, "stranger")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cli(*args):
        return subprocess.run(["redis-cli", "--tls", "--cacert", str(cert), "-p", str(port), *args],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        wait_for(lambda: cli("PING") == "PONG", 10, "redis-server with TLS")
        cfg = f'[state]\nredis = "rediss://127.0.0.1:{port}/0"\ntls_ca = "{cert}"\n'
        g = gateway_factory(policy=GREYLIST, config_extra=cfg)
        assert attempt(g, sender="tls@secure.example")[0] == 451
        assert cli("EXISTS", "mxgate:gl:t:127.0.0.0/24 / tls@secure.example / alice@example.com") == "1"
        assert not any("state:" in w for r in g.audit() for w in r.get("warnings", []))
        bad = gateway_factory(policy=GREYLIST, config_extra=f'[state]\nredis = "rediss://127.0.0.1:{port}/0"\ntls_ca = "{stranger}"\n')
        assert attempt(bad, sender="other@secure.example")[0] == 451  # this node's own greylist
        wait_for(lambda: any("state:" in w and "certificate" in w.lower() for r in bad.audit() for w in r.get("warnings", [])),
                 5, lambda: f"a certificate warning in {bad.audit()}")
        assert cli("EXISTS", "mxgate:gl:t:127.0.0.0/24 / other@secure.example / alice@example.com") == "0"
    finally:
        proc.terminate()
        proc.wait(10)
