"""Virus scanning through a real clamd (INSTREAM over its unix socket) and
through libclamav in-process, both with an EICAR signature database built at
test time; and the shipped default configuration, which detects EICAR."""
import base64
import io
import quopri
import smtplib
import subprocess
import zipfile

import pytest

from helpers import EICAR

POLICY = 'at data match virus reject "554 5.7.1 Virus found: {virus}"\n'


def mime(parts, boundary="B1"):
    out = f'From: a@sender.test\r\nTo: v@example.com\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    for p in parts:
        out += f"--{boundary}\r\n{p}\r\n"
    return (out + f"--{boundary}--\r\n").encode()


def attachment(name, data, encoding="base64"):
    if encoding == "base64":
        body = base64.encodebytes(data).decode().replace("\n", "\r\n")
    else:
        body = quopri.encodestring(data).decode().replace("\n", "\r\n")
    return f'Content-Type: application/octet-stream; name="{name}"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}'


def zipped(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, data)
    return buf.getvalue()


CASES = {
    "plain": b"From: a@sender.test\r\nTo: v@example.com\r\nSubject: plain\r\n\r\n" + EICAR + b"\r\n",
    "base64": mime(["Content-Type: text/plain\r\n\r\nsee attachment", attachment("eicar.com", EICAR)]),
    "quoted-printable": mime([attachment("eicar.txt", EICAR, "quoted-printable")]),
    "zip": mime([attachment("docs.zip", zipped("eicar.com", EICAR))]),
    "nested": mime(['Content-Type: multipart/alternative; boundary="B2"\r\n\r\n--B2\r\n'
                    + attachment("inner.com", EICAR) + "\r\n--B2--"]),
}


@pytest.fixture(params=["clamd", "embedded"])
def scanning_gateway(request, gateway_factory, clamd):
    if request.param == "clamd":
        extra = f'[clamav]\nmode = "clamd"\nsocket = "{clamd.socket}"\ntimeout = "20s"\n'
    else:
        extra = f'[clamav]\nmode = "embedded"\ndatabase = "{clamd.db}"\n'
    return gateway_factory(policy=POLICY, config_extra=extra)


@pytest.mark.parametrize("name", sorted(CASES))
def test_eicar_is_refused(scanning_gateway, name):
    gw = scanning_gateway
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["v@example.com"], CASES[name])
    assert e.value.smtp_code == 554
    assert b"Virus found: MxGate.Test.EICAR" in e.value.smtp_error
    assert gw.maildir_files("v@example.com") == []
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "rejected" and rec["virus"].startswith("MxGate.Test.EICAR")


def test_clean_message_passes(scanning_gateway):
    gw = scanning_gateway
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        s.sendmail("a@sender.test", ["v@example.com"], mime([attachment("report.pdf", b"%PDF-1.4 harmless" * 100)]))
    assert len(gw.maildir_files("v@example.com")) == 1
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "accepted" and rec["virus"] is None


def test_scanner_down_tempfails(gateway_factory, tmp_path):
    gw = gateway_factory(policy=POLICY, config_extra=f'[clamav]\nmode = "clamd"\nsocket = "{tmp_path}/nobody-here.sock"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["v@example.com"], CASES["plain"])
    assert e.value.smtp_code == 451 and b"4.7.0 Virus scan failed" in e.value.smtp_error
    assert gw.maildir_files("v@example.com") == []
    gw.wait_log("virus scan failed")


def test_scanner_down_fail_open_when_configured(gateway_factory, tmp_path):
    gw = gateway_factory(policy=POLICY,
                         config_extra=f'[clamav]\nmode = "clamd"\nsocket = "{tmp_path}/nobody-here.sock"\non_error = "accept"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        s.sendmail("a@sender.test", ["v@example.com"], b"Subject: x\r\n\r\nclean\r\n")
    assert len(gw.maildir_files("v@example.com")) == 1


def test_mxgate_test_scans_too(gateway_factory, clamd, mxgate_bin, tmp_path):
    gw = gateway_factory(policy=POLICY, config_extra=f'[clamav]\nmode = "clamd"\nsocket = "{clamd.socket}"\n')
    eml = tmp_path / "v.eml"
    eml.write_bytes(CASES["base64"])
    out = subprocess.run([mxgate_bin, "test", "--config", str(gw.config), "--client-ip", "192.0.2.1", "--from", "a@sender.test",
                          "--to", "v@example.com", str(eml)], capture_output=True, text=True)
    assert "verdict:    rejected at data" in out.stdout and "Virus found: MxGate.Test.EICAR" in out.stdout


def test_virus_rule_without_scanner_is_a_check_error(gateway_factory, mxgate_bin):
    gw = gateway_factory()
    gw.write_policy(POLICY)
    out = subprocess.run([mxgate_bin, "check", "--config", str(gw.config)], capture_output=True, text=True)
    assert out.returncode == 1 and "virus needs a scanner" in out.stdout


def test_shipped_config_detects_eicar(mxgate_bin, tmp_path):
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent
    eml = tmp_path / "v.eml"
    eml.write_bytes(CASES["zip"])
    out = subprocess.run([mxgate_bin, "test", "--config", str(root / "mxgate.toml"), "--client-ip", "192.0.2.1",
                          "--from", "a@sender.test", "--to", "bob@example.com", "--json", str(eml)], capture_output=True, text=True)
    rec = __import__("json").loads(out.stdout)
    assert rec["verdict"] == "rejected" and rec["virus"].startswith("MxGate.EICAR-Test-File")


def test_bad_signature_folder_is_a_check_error(mxgate_bin, tmp_path):
    cfg = tmp_path / "m.toml"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.policy").write_text(POLICY)
    cfg.write_text(f'[relay]\ndomains = ["example.com"]\n[clamav]\nmode = "embedded"\ndatabase = "{tmp_path}/nothing-here"\n')
    out = subprocess.run([mxgate_bin, "check", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1 and "cannot load ClamAV signatures" in out.stdout


class CountingProxy:
    """A unix-socket relay in front of the real clamd that counts the
    connections mxgate opens and can cut them all (as clamd does to idle
    sessions after its IdleTimeout, or when it restarts)."""

    def __init__(self, path, target):
        import socket
        import threading
        self.path, self.target = path, target
        self.connections = 0
        self.open = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        import socket
        import threading
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.target)
            self.open += [c, up]
            for a, b in ((c, up), (up, c)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(a, b):
        import socket
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        import socket
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open = []

    def close(self):
        self.cut()
        self.server.close()


def test_clamd_sessions_are_reused(gateway_factory, clamd, tmp_path):
    """Scans share one clamd IDSESSION connection; when clamd drops it, the
    next scan notices, opens a new one and still gives the right verdict."""
    proxy = CountingProxy(str(tmp_path / "proxy.sock"), clamd.socket)
    try:
        gw = gateway_factory(policy=POLICY, config_extra=f'[clamav]\nmode = "clamd"\nsocket = "{proxy.path}"\n')
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
            for i in range(4):
                s.sendmail("a@sender.test", ["v@example.com"], b"Subject: clean %d\r\n\r\nnothing here\r\n" % i)
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail("a@sender.test", ["v@example.com"], CASES["zip"])
            assert e.value.smtp_code == 554
        assert proxy.connections == 1
        proxy.cut()
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail("a@sender.test", ["v@example.com"], CASES["plain"])
            assert e.value.smtp_code == 554 and b"MxGate.Test.EICAR" in e.value.smtp_error
            s.sendmail("a@sender.test", ["v@example.com"], b"Subject: clean again\r\n\r\nnothing\r\n")
        assert proxy.connections == 2
        assert len(gw.maildir_files("v@example.com")) == 5
    finally:
        proxy.close()


def test_embedded_engine_follows_signature_updates(gateway_factory, tmp_path):
    """A new signature file in the folder (as freshclam writes one) is
    picked up without a reload; a broken one leaves the running engine."""
    db = tmp_path / "sigs"
    db.mkdir()
    (db / "other.ndb").write_text("MxGate.Test.Other:0:*:" + b"SOMETHING-ELSE-ENTIRELY".hex() + "\n")
    gw = gateway_factory(policy=POLICY,
                         config_extra=f'[clamav]\nmode = "embedded"\ndatabase = "{db}"\nwatch_interval = "1s"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        s.sendmail("a@sender.test", ["v@example.com"], CASES["plain"])
    assert len(gw.maildir_files("v@example.com")) == 1

    (db / "broken.ndb").write_text("this is not a signature\n")
    gw.wait_log("do not load, keeping the running engine", 20)
    (db / "broken.ndb").unlink()

    tmp = db / ".eicar.tmp"
    tmp.write_text("MxGate.Test.EICAR:0:*:" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE".hex() + "\n")
    tmp.rename(db / "eicar.ndb")
    gw.wait_log("engine reloaded", 20)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["v@example.com"], CASES["plain"])
    assert e.value.smtp_code == 554 and b"MxGate.Test.EICAR" in e.value.smtp_error
    assert len(gw.maildir_files("v@example.com")) == 1


def test_embedded_engine_unpacks_in_a_private_folder_in_memory(gateway_factory, tmp_path, monkeypatch):
    """libclamav writes every part it unpacks into a folder per scan: the
    gateway gives it a private folder on /dev/shm (mode 0700, its own), a
    scan leaves nothing in it, and the folder goes when the gateway stops."""
    import glob
    import os
    import stat
    monkeypatch.delenv("TMPDIR", raising=False)
    db = tmp_path / "sigs"
    db.mkdir()
    (db / "eicar.ndb").write_text("MxGate.Test.EICAR:0:*:" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE".hex() + "\n")
    before = set(glob.glob("/dev/shm/mxgate-clamav.*"))
    gw = gateway_factory(policy=POLICY, config_extra=f'[clamav]\nmode = "embedded"\ndatabase = "{db}"\n')
    ours = set(glob.glob("/dev/shm/mxgate-clamav.*")) - before
    assert len(ours) == 1, ours
    (folder,) = ours
    st = os.stat(folder)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["v@example.com"], CASES["zip"])
        assert e.value.smtp_code == 554
        s.sendmail("a@sender.test", ["v@example.com"], mime(["Content-Type: text/plain\r\n\r\nhello", attachment("notes.zip", zipped("notes.txt", b"harmless"))]))
    assert len(gw.maildir_files("v@example.com")) == 1
    assert os.listdir(folder) == []
    assert gw.stop() == 0
    assert not os.path.exists(folder)


@pytest.mark.parametrize("mode", ["clamd", "embedded"])
def test_scan_and_mime_rules_share_one_read_of_a_spilled_message(gateway_factory, clamd, mode):
    """clamd (or libclamav) and the MIME walk both judge one message, ~2 MB so
    it is spilled to a file and read in pieces: the inspection feeds both from
    one read, and each still sees the whole text (the virus at the end, the
    attachment name after the filler)."""
    policy = POLICY + 'at data match attachment-name *.exe reject "554 5.7.1 Attachment {value} not accepted"\n'
    scanner = (f'mode = "clamd"\nsocket = "{clamd.socket}"\ntimeout = "20s"\n' if mode == "clamd"
               else f'mode = "embedded"\ndatabase = "{clamd.db}"\n')
    gw = gateway_factory(policy=policy, config_extra=f'[clamav]\n{scanner}')
    filler = "Content-Type: text/plain\r\n\r\n" + ("filler " * 10 + "\r\n") * 28000
    infected = mime([filler, attachment("eicar.com", EICAR)])
    program = mime([filler, attachment("setup.exe", b"MZ" * 100)])
    clean = mime([filler, attachment("report.pdf", b"%PDF-1.4 harmless" * 100)])
    assert len(infected) > 2 * 1024 * 1024 - 200_000
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["v@example.com"], infected)
        assert e.value.smtp_code == 554 and b"Virus found: MxGate.Test.EICAR" in e.value.smtp_error
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["v@example.com"], program)
        assert e.value.smtp_code == 554 and b"setup.exe not accepted" in e.value.smtp_error
        s.sendmail("a@sender.test", ["v@example.com"], clean)
    assert len(gw.maildir_files("v@example.com")) == 1
    recs = [r for r in gw.audit(3) if r["event"] == "transaction"]
    assert [r["verdict"] for r in recs[-3:]] == ["rejected", "rejected", "accepted"]
    assert recs[-2]["virus"] is None and recs[-1]["virus"] is None
