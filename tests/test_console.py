"""The review console ([web]) over real HTTP: login, sessions, CSRF and
cross-site refusal, the login limiter, tokens, search and "why" over the
audit index the gateway keeps. (The browser tests come with the rest of
the console's pages.)"""
import http.cookiejar
import json
import re
import smtplib
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from helpers import wait_for

PASSWORD = "correct horse battery"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie jar and no automatic redirects, so each answer is seen."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path, data=None, headers=None, method=None):
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {}, method=method)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def login(self, user="alice", password=PASSWORD):
        return self.request("/login", {"user": user, "password": password, "next": "/"})


def start_console(gateway_factory, mxgate_bin, config_extra="", **kwargs):
    g = gateway_factory(config_extra='[web]\nlisten = "127.0.0.1:0"\nlogin_attempts = 3\nlogin_window = "1m"\n' + config_extra, **kwargs)
    g.wait_log("review console on http://")
    url = re.search(r"review console on (http://127\.0\.0\.1:\d+)/", g.log).group(1)
    for name, role in (("alice", "admin"), ("victor", "viewer")):
        out = subprocess.run([mxgate_bin, "web", "user", "add", name, "--role", role, "--config", str(g.config)],
                             input=PASSWORD + "\n", capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
    return g, url


def test_login_sessions_and_refusals(gateway_factory, mxgate_bin):
    g, url = start_console(gateway_factory, mxgate_bin)
    users = (g.dir / "var" / "web-users").read_text()
    assert "alice:admin:$2" in users and PASSWORD not in users
    assert oct((g.dir / "var" / "web-users").stat().st_mode & 0o777) == "0o600"

    b = Browser(url)
    status, headers, _ = b.request("/")
    assert status == 303 and headers["Location"].startswith("/login?next=")
    status, _, body = b.request("/api/search")
    assert status == 401 and "error" in json.loads(body)

    status, _, body = b.login(password="wrong password")
    assert status == 401 and "Wrong user name or password" in body
    status, headers, _ = b.login()
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, headers, body = b.request("/")
    assert status == 200 and "Audit search" in body
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, body = b.request("/api/whoami")
    assert json.loads(body) == {"user": "alice", "role": "admin"}

    # A cross-site POST is refused, and so is one without the session's CSRF token.
    status, _, _ = b.request("/logout", {"csrf": "x"}, headers={"Origin": "http://evil.example"})
    assert status == 403
    status, _, body = b.request("/logout", {}, headers={"X-CSRF-Token": "forged"})
    assert status == 403
    assert b.request("/logout", {"csrf": "forged"})[0] == 403
    assert b.request("/api/whoami")[0] == 200

    # Logging out ends the session on the server, not only in the browser.
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', b.request("/")[2]).group(1)
    session = [c.value for c in b.jar if c.name == "mxgate_session"][0]
    status, headers, _ = b.request("/logout", {"csrf": csrf})
    assert status == 303 and headers["Location"] == "/login"
    status, _, _ = Browser(url).request("/api/whoami", headers={"Cookie": f"mxgate_session={session}"})
    assert status == 401

    # The limiter: three failures in the window, then even the right password waits.
    other = Browser(url)
    for _ in range(3):
        assert other.login(password="nope")[0] == 401
    status, headers, body = other.login()
    assert status == 429 and int(headers["Retry-After"]) > 0

    def replies():
        return [r["reply"] for r in g.audit() if r.get("event") == "console"]
    wait_for(lambda: any("too many failed logins" in r for r in replies()), 5, "the refused login's audit record")
    replies = replies()
    assert "alice: login" in replies and "alice: failed login for alice" in replies
    assert any("too many failed logins" in r for r in replies)


def test_search_why_and_token(gateway_factory, mxgate_bin):
    g, url = start_console(gateway_factory, mxgate_bin)
    hostile = '<script>alert(1)</script>\x00' + "x" * 10000
    with smtplib.SMTP("127.0.0.1", g.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("sender@example.org")
        code, _ = s.rcpt("someone@nowhere.test")
        assert code == 554  # relay denied: not one of [relay] domains
        s.rcpt("bob@example.com")
        s.data(f"From: sender@example.org\r\nSubject: {hostile[:900]}\r\nMessage-ID: <m1@example.org>\r\n\r\nhello\r\n".encode())
    b = Browser(url)
    assert b.login()[0] == 303

    def found():
        page = json.loads(b.request("/api/search?verdict=rejected&to=nowhere.test")[2])
        return page["records"]
    wait_for(lambda: found(), 10, "the rejected recipient in the index")
    rec = found()[0]
    assert rec["rcpt_to"] == ["someone@nowhere.test"] and rec["reply"].startswith("554")

    def verdicts():
        status, _, body = b.request(f"/api/why/{rec['session']}")
        return {r["verdict"] for r in json.loads(body).get("records", [])} if status == 200 else set()
    # The transaction's record is written after the recipient's: wait until the index has both.
    wait_for(lambda: verdicts() >= {"rejected", "accepted"}, 10, "both records of the session in the index")
    status, _, body = b.request("/?verdict=rejected&from=example.org")
    assert status == 200 and "someone@nowhere.test" in body

    status, _, body = b.request(f"/why/{rec['session']}")
    assert status == 200 and "554 5.7.1" in body and "someone@nowhere.test" in body and "bob@example.com" in body
    assert "<script>" not in body
    assert b.request("/why/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert b.request("/?client=not-an-ip")[0] == 400
    status, _, body = b.request("/api/search?client=127.0.0.0/8&message_id=m1@example.org")
    assert status == 200 and json.loads(body)["records"][0]["message_id"] == "<m1@example.org>"

    out = subprocess.run([mxgate_bin, "web", "user", "token", "victor", "--config", str(g.config)],
                         capture_output=True, text=True, timeout=30)
    token = out.stdout.strip()
    assert out.returncode == 0 and token.startswith("mxg_")
    api = Browser(url)
    status, _, body = api.request("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body) == {"user": "victor", "role": "viewer"}
    assert api.request("/api/whoami", headers={"Authorization": "Bearer mxg_forged"})[0] == 401


def test_deleted_user_loses_their_login(gateway_factory, mxgate_bin):
    g, url = start_console(gateway_factory, mxgate_bin)
    b = Browser(url)
    assert b.login(user="victor")[0] == 303
    assert json.loads(b.request("/api/whoami")[2]) == {"user": "victor", "role": "viewer"}
    out = subprocess.run([mxgate_bin, "web", "user", "delete", "victor", "--config", str(g.config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # The users file is read on the next request: the cookie no longer opens anything.
    assert b.request("/api/whoami")[0] == 401
    status, headers, _ = b.request("/")
    assert status == 303 and headers["Location"].startswith("/login")
