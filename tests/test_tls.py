"""STARTTLS (RFC 3207) with a certificate generated at test time."""
import signal
import smtplib
import ssl
import subprocess

from helpers import RawClient, wait_for


def client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_starttls_with_smtplib(gateway_factory, tls_cert):
    gw = gateway_factory(tls=tls_cert)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_context())
        assert code == 220
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.sendmail("a@sender.test", ["tls@example.com"], b"Subject: tls\r\n\r\nsecret\r\n")
    raw = open(gw.maildir_files("tls@example.com")[0], "rb").read()
    assert b"with ESMTPS id" in raw
    rec = gw.audit(1)[-1]
    assert rec["tls"] is True and rec["verdict"] == "accepted"


def test_starttls_with_swaks(gateway_factory, tls_cert):
    gw = gateway_factory(tls=tls_cert)
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{gw.port}", "--tls", "--to", "s@example.com",
                          "--from", "a@sender.test"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TLS started" in out.stdout
    assert len(gw.maildir_files("s@example.com")) == 1


def test_plaintext_pipelined_after_starttls_is_discarded(gateway_factory, tls_cert):
    """CVE-2011-0411: a command injected after STARTTLS in the same packet
    must not be executed inside the TLS session."""
    gw = gateway_factory(tls=tls_cert)
    c = RawClient(gw.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<injected@evil.test>\r\n")
    code, _ = c.reply()
    assert code == 220
    tls = client_context().wrap_socket(c.sock, server_hostname="mx.test.example")
    tls.settimeout(10)
    tls.sendall(b"EHLO client.test\r\n")
    data = b""
    while not data.endswith(b"250 DSN\r\n"):
        chunk = tls.recv(4096)
        assert chunk, data
        data += chunk
    # The first reply inside TLS answers EHLO; nothing answers the injected RSET/MAIL.
    assert data.startswith(b"250-mx.test.example\r\n"), data
    tls.sendall(b"RCPT TO:<x@example.com>\r\n")
    reply = tls.recv(4096)
    assert reply.startswith(b"503"), reply   # no MAIL happened: the injected one was dropped
    tls.close()


def test_tls_handshake_failure_is_survived(gateway_factory, tls_cert):
    gw = gateway_factory(tls=tls_cert)
    c = RawClient(gw.port)
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS")[0] == 220
    c.send(b"this is not a TLS client hello\r\n" * 10)
    assert c.closed()
    # The gateway still serves.
    c2 = RawClient(gw.port)
    assert c2.reply()[0] == 220


def test_sighup_rereads_certificate(gateway_factory, tls_cert, tmp_path):
    gw = gateway_factory(tls=tls_cert)
    cert2, key2 = tmp_path / "c2.pem", tmp_path / "k2.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key2), "-out", str(cert2),
                    "-days", "2", "-subj", "/CN=renewed.test.example"], check=True, capture_output=True)
    gw.tls = (str(cert2), str(key2))
    gw.write_config()
    gw.signal(signal.SIGHUP)
    gw.wait_log("reload: configuration", 10)

    def peer_cn():
        c = RawClient(gw.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("STARTTLS")
        ctx = client_context()
        tls = ctx.wrap_socket(c.sock, server_hostname="x")
        der = tls.getpeercert(binary_form=True)
        tls.close()
        out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der, capture_output=True)
        return out.stdout.decode()

    assert "renewed.test.example" in peer_cn()


def test_postfix_upstream_uses_starttls(gateway_factory, postfix_factory, tls_cert, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"', tls=tls_cert)
    pf = postfix_factory("tls-up", relayhost=gw.port, relay_domains="example.com", tls_level="encrypt")
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: pf tls\r\nMessage-ID: <pftls@x>\r\n\r\nhi\r\n")
    dump = sink.dumps(1, timeout=30)[0]
    assert b"with ESMTPS id" in dump
    wait_for(lambda: "Anonymous TLS connection established" in pf.maillog() or "TLS connection established" in pf.maillog(),
             10, "Postfix TLS log line")


def test_mxgate_uses_starttls_to_postfix_downstream(gateway_factory, postfix_factory, tls_cert, sink):
    pf = postfix_factory("tls-down", relayhost=sink.port, relay_domains="example.com", tls_level="none",
                         extra_main=f"smtpd_tls_cert_file = {tls_cert[0]}\nsmtpd_tls_key_file = {tls_cert[1]}\n"
                                    "smtpd_tls_security_level = may\nsmtpd_tls_received_header = yes")
    gw = gateway_factory(downstream=f"127.0.0.1:{pf.port}", relay_extra='tls = "required"')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: down tls\r\n\r\nhi\r\n")
    dump = sink.dumps(1, timeout=30)[0]
    assert b"(using TLSv1.3" in dump or b"(using TLSv1.2" in dump, dump[:600]


def test_required_downstream_tls_without_starttls_tempfails(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "required"')
    c = RawClient(gw.port).begin()
    code, lines = c.cmd("RCPT TO:<b@example.com>")
    assert code == 451
    rec = [r for r in gw.audit(1) if r["event"] == "recipient"][-1]
    assert "TLS is required" in rec["reason"]
    c.cmd("QUIT")
