"""The console's quarantine, queue and statistics pages and their APIs over
real HTTP, against a real gateway and Postfix's smtp-sink: hostile mail
shown as inert text, viewers refused every change, release (straight to
the downstream in proxy mode, through the queue in queue mode), allow-list,
delete, the queue's hold/release/delete, and statistics that agree with
`mxgate log --stats`."""
import json
import re
import smtplib
import subprocess

from helpers import wait_for
from test_console import Browser, start_console

POLICY = 'at data match header Subject ~ /hold me/ quarantine "held for review"\n'
HOSTILE_NAME = "../../evil<script>.html"
# 10,000 characters, folded (SMTP lines stop at 1,000).
LONG = "\r\n ".join("y" * 900 for _ in range(12))


def hostile_message(mid):
    """A held message built to attack the page: script in Subject and display
    name, a NUL, a 10,000-character header, an HTML part with a remote image
    and script, an attachment named with ../ and markup."""
    boundary = "b0undary"
    return (
        f'From: "<script>alert(1)</script>" <a@sender.test>\r\n'
        f"Subject: hold me <script>alert('s')</script>\x00\r\n"
        f"X-Long: {LONG}\r\n"
        f"Message-ID: <{mid}@sender.test>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/html\r\n\r\n"
        f'<p>Dear user</p><img src="http://remote.example/track.png"><script>steal()</script>\r\n'
        f"--{boundary}\r\nContent-Type: text/html; name=\"{HOSTILE_NAME}\"\r\n"
        f'Content-Disposition: attachment; filename="{HOSTILE_NAME}"\r\n\r\n<form>x</form>\r\n'
        f"--{boundary}--\r\n"
    )


def send(gw, subject=None, mid="m", raw=None, sender="a@sender.test"):
    text = raw or f"From: {sender}\r\nSubject: {subject}\r\nMessage-ID: <{mid}@sender.test>\r\n\r\nbody of {mid}\r\n"
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail(sender, ["bob@example.com"], text.encode())


def logged_in(url, user="alice"):
    b = Browser(url)
    assert b.login(user=user)[0] == 303
    return b


def csrf_of(b, path):
    return re.search(r'name="csrf" value="([0-9a-f]+)"', b.request(path)[2]).group(1)


def held(b):
    status, _, body = b.request("/api/quarantine")
    assert status == 200
    return json.loads(body)["messages"]


def test_quarantine_pages(gateway_factory, mxgate_bin, sink):
    g, url = start_console(gateway_factory, mxgate_bin, downstream=sink.address, relay_extra='tls = "none"', policy=POLICY)
    send(g, raw=hostile_message("h1"))
    send(g, "hold me 2", "h2")
    send(g, "hold me 3", "h3")
    admin, viewer = logged_in(url), logged_in(url, "victor")
    wait_for(lambda: len(held(viewer)) == 3, 10, "three held messages")
    ids = {m["message_id"]: m["id"] for m in held(viewer)}
    hostile = ids["<h1@sender.test>"]

    # The held message's "why" says which rule held it and why, as `mxgate test` does.
    session = [m for m in held(viewer) if m["message_id"] == "<h2@sender.test>"][0]["session"]
    wait_for(lambda: viewer.request(f"/why/{session}")[0] == 200, 10, "the held message's record in the index")
    why = viewer.request(f"/why/{session}")[2]
    assert "policies/test.policy:1" in why and "header Subject: hold me 2 matches /hold me/" in why

    # Viewers list and read, see no buttons, and every change is refused.
    status, _, body = viewer.request("/quarantine?q=hold+me+2")
    assert status == 200 and "held for review" in body
    status, _, body = viewer.request(f"/quarantine/{hostile}")
    assert status == 200 and 'id="release"' not in body
    csrf = csrf_of(viewer, "/quarantine")
    assert viewer.request(f"/quarantine/{hostile}/release", {"csrf": csrf})[0] == 403
    assert viewer.request(f"/api/quarantine/{hostile}/delete", b"", headers={"X-CSRF-Token": csrf})[0] == 403
    assert len(held(admin)) == 3

    # The hostile message is inert text: no markup of its own reaches the page.
    status, _, body = admin.request(f"/quarantine/{hostile}")
    assert status == 200 and 'id="release"' in body
    assert "<script" not in body.lower() and "<img" not in body.lower() and "<form>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "../../evil&lt;script&gt;.html" in body       # the attachment's name, as text
    assert re.search(r"\(1\d{4} characters\)", body) and body.count("y") < 4000
    assert "\x00" not in body and "Dear user" in body
    # IDs are checked against the listing, never used as paths.
    assert admin.request("/quarantine/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert admin.request("/api/quarantine/0123abcd")[0] == 404
    detail = json.loads(admin.request(f"/api/quarantine/{hostile}")[2])
    assert detail["attachments"][0]["name"] == HOSTILE_NAME and "Dear user" in detail["text"]

    # Release reaches the real smtp-sink; release-and-allow also lists the sender.
    csrf = csrf_of(admin, f"/quarantine/{hostile}")
    status, _, body = admin.request(f"/quarantine/{ids['<h2@sender.test>']}/release", {"csrf": csrf})
    assert status == 200 and "released" in body and sink.address in body
    assert b"Message-ID: <h2@sender.test>" in sink.dumps(1)[0]
    status, _, body = admin.request(f"/quarantine/{ids['<h3@sender.test>']}/allow", {"csrf": csrf})
    assert status == 200 and "a@sender.test allow-listed" in body, body
    allow = (g.dir / "rules" / "allowed-senders.list").read_text()
    assert re.search(r"^a@sender\.test\s+# added by alice \(console\)", allow, re.M)
    g.wait_log("reload: configuration")
    assert len(sink.dumps(2)) == 2

    # Delete, by API with the session's CSRF header; a second delete is a 404.
    status, _, body = admin.request(f"/api/quarantine/{hostile}/delete", b"", headers={"X-CSRF-Token": csrf})
    assert status == 200 and json.loads(body)["result"] == "deleted"
    assert admin.request(f"/api/quarantine/{hostile}/delete", b"", headers={"X-CSRF-Token": csrf})[0] == 404
    assert held(admin) == []

    def actions():
        return [(r["reply"], r["reason"]) for r in g.audit() if r["event"] == "quarantine"]
    wait_for(lambda: ("deleted", "deleted by alice (console)") in actions(), 5, "the deletion's audit record")
    records = g.audit()
    actions = actions()
    assert ("released", "released by alice (console)") in actions and ("deleted", "deleted by alice (console)") in actions
    assert any(reply == "sender allow-listed" for reply, _ in actions)
    console = [r["reply"] for r in records if r["event"] == "console"]
    assert any("victor: quarantine release" in c and "refused: not an admin" in c for c in console)


def test_queue_pages_and_release_through_the_queue(gateway_factory, mxgate_bin, sink):
    sink.stop()   # the downstream is down: the queue keeps what it takes
    g, url = start_console(gateway_factory, mxgate_bin, downstream=sink.address,
                           relay_extra='tls = "none"\nmode = "queue"', policy=POLICY)
    send(g, "plain", "q1")
    send(g, "hold me", "q2")
    admin, viewer = logged_in(url), logged_in(url, "victor")

    def queued():
        return json.loads(admin.request("/api/queue")[2])["messages"]
    wait_for(lambda: len(queued()) == 1, 10, "one queued message")
    qid = queued()[0]["id"]
    status, _, body = viewer.request("/queue")
    assert status == 200 and qid in body and "DESTINATION" in body and 'id="flush"' not in body
    status, _, body = viewer.request(f"/queue/{qid}")
    assert status == 200 and "Message-ID: &lt;q1@sender.test&gt;" in body
    assert viewer.request("/queue/..%2Fetc/hold")[0] in (403, 404)
    csrf = csrf_of(admin, "/queue")
    assert viewer.request(f"/queue/{qid}/hold", {"csrf": csrf_of(viewer, "/queue")})[0] == 403
    assert admin.request("/queue/not-an-id/hold", {"csrf": csrf})[0] == 404

    status, _, body = admin.request(f"/queue/{qid}/hold", {"csrf": csrf})
    assert status == 200 and "held" in body
    assert queued()[0]["held"] is True
    assert admin.request(f"/queue/{qid}/release", {"csrf": csrf})[0] == 200
    assert queued()[0]["held"] is False

    # A quarantine release in queue mode goes into the spool, like any accepted message.
    hid = held(admin)[0]["id"]
    status, _, body = admin.request(f"/quarantine/{hid}/release", {"csrf": csrf})
    assert status == 200 and "queued" in body, body
    wait_for(lambda: len(queued()) == 2, 10, "the released message in the queue")

    status, _, body = admin.request(f"/api/queue/{qid}/delete", b"", headers={"X-CSRF-Token": csrf})
    assert status == 200, body
    wait_for(lambda: len(queued()) == 1, 10, "the deleted message gone")
    # The downstream comes back: a flush delivers the released message.
    sink.fixed_port = True   # back on the port the gateway was told
    sink.start()
    status, _, body = admin.request("/queue/flush", {"csrf": csrf})
    assert status == 200
    assert b"Message-ID: <q2@sender.test>" in sink.dumps(1, timeout=20)[0]


def test_statistics_agree_with_log_stats(gateway_factory, mxgate_bin):
    g, url = start_console(gateway_factory, mxgate_bin, policy=POLICY)
    with smtplib.SMTP("127.0.0.1", g.port, timeout=10) as s:
        s.ehlo("client.test")
        for n in range(3):
            s.mail(f"x{n}@spam.test")
            assert s.rcpt("someone@nowhere.test")[0] == 554
            s.rset()
    send(g, "hello", "s1")
    send(g, "hold me", "s2")
    b = logged_in(url, "victor")
    decisions = len([r for r in g.audit(5) if r["event"] in ("connection", "command", "recipient", "transaction")])

    def api():
        return json.loads(b.request("/api/stats?window=1h")[2])
    wait_for(lambda: api()["decisions"] == decisions, 10, "the index to hold every decision")
    stats = api()
    assert stats["by_verdict"] == {"rejected": 3, "accepted": 1, "quarantined": 1}
    assert stats["top_sender_domains"] == [{"name": "spam.test", "count": 3}]
    assert stats["top_clients"] == [{"name": "127.0.0.1", "count": 3}]

    out = subprocess.run([mxgate_bin, "log", "--stats", "--since", "1h", "--config", str(g.config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f": {decisions}\n" in text.splitlines(keepends=True)[0]
    for verdict, count in stats["by_verdict"].items():
        assert re.search(rf"^  {verdict}\s+{count}$", text, re.M), text
    for rule in stats["top_rules"]:
        assert re.search(rf"^  {rule['count']}\s+{re.escape(rule['name'])}$", text, re.M), text
    assert re.search(r"^  3\s+spam\.test$", text, re.M)

    status, headers, body = b.request("/stats")
    assert status == 200 and body.count("<svg") >= 5 and 'id="chart-hourly"' in body
    assert "<script" not in body and "spam.test" in body
    assert b.request("/stats?window=forever")[0] == 400


def test_search_by_country(gateway_factory, mxgate_bin, tmp_path):
    from test_dns_geoip import write_country_db
    write_country_db(tmp_path / "country.mmdb")
    g, url = start_console(gateway_factory, mxgate_bin, config_extra=f'[geoip]\ndatabase = "{tmp_path}/country.mmdb"\n')
    with smtplib.SMTP("127.0.0.1", g.port, timeout=10, source_address=("127.0.0.31", 0)) as s:
        s.ehlo("client.test")
        s.mail("x@sender.test")
        assert s.rcpt("someone@nowhere.test")[0] == 554
    b = logged_in(url, "victor")

    def found(cc):
        return json.loads(b.request(f"/api/search?country={cc}")[2])["records"]
    wait_for(lambda: found("de"), 10, "the German client's record")
    assert found("DE")[0]["client_ip"] == "127.0.0.31" and found("KP") == []
    assert [r.get("country") for r in g.audit() if r["event"] == "recipient"] == ["DE"]
    status, _, body = b.request(f"/why/{found('DE')[0]['session']}")
    assert status == 200 and "<dt>country</dt><dd>DE</dd>" in body
