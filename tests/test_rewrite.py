"""Address rewriting ([rewrite], like Postfix's canonical maps): envelope
sender and recipients, address to address and domain to domain, in queue
and proxy mode; and the header addresses when asked."""
import smtplib

import pytest

SENDER_TABLE = "# sender rewriting\nalice@sender.test  alice@outbound.example\n@legacy.test @sender.example\n"
RECIPIENT_TABLE = "info@example.com  sales@example.com\n@old.example  @example.com\n"
MSG = ("From: Alice <alice@sender.test>\r\nTo: Info <info@example.com>, bob@old.example\r\n"
       "Cc: carol@elsewhere.test\r\nSubject: rewrite\r\nMessage-ID: <rw@sender.test>\r\n\r\n"
       "Body mentions info@example.com, which stays.\r\n")


@pytest.fixture(params=["queue", "proxy"])
def rewriting_gateway(request, gateway_factory, sink):
    def make(headers=False):
        mode = 'mode = "queue"\n' if request.param == "queue" else ""
        return gateway_factory(downstream=sink.address, domains=("example.com", "old.example"),
                               relay_extra=f'tls = "none"\n{mode}',
                               tables={"sender_canonical": SENDER_TABLE, "recipient_canonical": RECIPIENT_TABLE},
                               config_extra='[queue]\ndirectory = "queue"\n[rewrite]\nsender = "rules/sender_canonical"\n'
                                            f'recipient = "rules/recipient_canonical"\nheaders = {str(headers).lower()}\n')
    return make


def send(gw, sender="alice@sender.test"):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.sendmail(sender, ["info@example.com", "bob@old.example"], MSG.encode()) == {}


def test_envelope_is_rewritten(rewriting_gateway, sink):
    gw = rewriting_gateway()
    send(gw)
    dump = sink.dumps(1, timeout=20)[0]
    assert b"X-Mail-Args: <alice@outbound.example>" in dump
    assert b"X-Rcpt-Args: <sales@example.com>" in dump and b"X-Rcpt-Args: <bob@example.com>" in dump
    # Headers stay as written unless headers = true.
    assert b"To: Info <info@example.com>, bob@old.example" in dump
    # The audit log keeps what the client said.
    tx = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert tx["mail_from"] == "alice@sender.test" and tx["rcpt_to"] == ["info@example.com", "bob@old.example"]


def test_domain_rewrite_keeps_local_part(rewriting_gateway, sink):
    gw = rewriting_gateway()
    send(gw, sender="dave@legacy.test")
    assert b"X-Mail-Args: <dave@sender.example>" in sink.dumps(1, timeout=20)[0]


def test_headers_rewritten_when_asked(rewriting_gateway, sink):
    gw = rewriting_gateway(headers=True)
    send(gw)
    dump = sink.dumps(1, timeout=20)[0]
    assert b"From: Alice <alice@outbound.example>\n" in dump, dump.decode()
    assert b"To: Info <sales@example.com>, bob@example.com\n" in dump
    assert b"Cc: carol@elsewhere.test\n" in dump
    assert b"Body mentions info@example.com, which stays." in dump
    assert dump.count(b"Subject: rewrite") == 1


def test_bad_rewrite_table_is_a_check_error(gateway_factory, mxgate_bin, tmp_path):
    import subprocess
    gw = gateway_factory(tables={"bad": "just-one-field\n"})
    gw.stop()
    gw.config.write_text(gw.config.read_text() + '\n[rewrite]\nrecipient = "rules/bad"\n')
    out = subprocess.run([mxgate_bin, "check", "--config", str(gw.config)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "rules/bad:1:1: expected 'FROM TO'" in out.stdout + out.stderr
