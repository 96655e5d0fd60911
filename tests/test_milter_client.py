"""mxgate calling milters ([[milters]]): Debian's OpenDKIM in verify mode
and clamav-milter, run privately on loopback, and a milter that hangs."""
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import dkim
import pytest

from helpers import EICAR, free_port, smtp_send, wait_for, wait_port

CLEAN = (b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: through milters\r\n"
         b"Message-ID: <{mid}@example.org>\r\nDate: Tue, 01 Dec 2026 12:00:00 +0000\r\n\r\nHello, milters.\r\n")


def message(mid, body=None):
    m = CLEAN.replace(b"{mid}", mid.encode())
    return m if body is None else m.split(b"\r\n\r\n")[0] + b"\r\n\r\n" + body


def send(gw, msg, sender="alice@example.org"):
    """The reply to the message: (code, text); 250 when accepted."""
    return smtp_send(gw.port, sender, ["bob@example.com"], msg)


def header_of(dump):
    """smtp-sink's dump (LF line ends) as one line per header field."""
    text = dump.replace(b"\r\n", b"\n").split(b"\n\n")[0]
    return text.replace(b"\n\t", b" ").replace(b"\n ", b" ")


def milters(*entries):
    out = ""
    for e in entries:
        out += "[[milters]]\n" + "".join(f"{k} = {v}\n" for k, v in e.items())
    return out


def transactions(gw, count=1):
    wait_for(lambda: len([r for r in gw.audit() if r["event"] == "transaction"]) >= count, 10, f"{count} transaction(s)")
    return [r for r in gw.audit() if r["event"] == "transaction"]


class OpenDKIMVerifier:
    """Debian's OpenDKIM in verify mode on a loopback port; the public key
    comes from a file (TestPublicKeys) so no DNS is needed."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mxgate-odk-"))
        subprocess.run(["/usr/sbin/opendkim-genkey", "-b", "1024", "-d", "example.org", "-s", "odk", "-D", str(self.dir)],
                       check=True, capture_output=True)
        os.chmod(self.dir / "odk.private", 0o600)
        zone = (self.dir / "odk.txt").read_text()
        record = "".join(p.split('"')[1] for p in zone.split("(")[1].split(")")[0].split("\n") if '"' in p)
        (self.dir / "keys").write_text(f"odk._domainkey.example.org {record}\n")
        self.port = free_port()
        (self.dir / "opendkim.conf").write_text(
            f"Mode v\nSocket inet:{self.port}@127.0.0.1\nAuthservID odk.test.example\nTestPublicKeys {self.dir}/keys\n"
            f"InternalHosts 192.0.2.250\nBackground no\nSyslog no\nRequireSafeKeys no\nPidFile {self.dir}/pid\n")
        self.proc = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", str(self.dir / "opendkim.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port)

    def sign(self, msg):
        key = (self.dir / "odk.private").read_bytes()
        return dkim.sign(msg, b"odk", b"example.org", key, include_headers=[b"from", b"to", b"subject", b"message-id"]) + msg

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class ClamavMilter:
    """Debian's clamav-milter in the foreground on a loopback port, asking the test's clamd."""

    def __init__(self, clamd):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mxgate-cm-"))
        self.port = free_port()
        (self.dir / "clamav-milter.conf").write_text(
            f"MilterSocket inet:{self.port}@127.0.0.1\nClamdSocket unix:{clamd.socket}\nForeground yes\n"
            f"PidFile {self.dir}/pid\nTemporaryDirectory {self.dir}\nOnInfected Reject\nOnClean Accept\nOnFail Defer\n"
            f"AddHeader Replace\nRejectMsg Virus %v found\nLogFile {self.dir}/log\nUser root\n")
        self.proc = subprocess.Popen(["/usr/sbin/clamav-milter", "-c", str(self.dir / "clamav-milter.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, 30)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class HangingMilter:
    """A milter that negotiates and answers every step but the end of the
    message, where it never answers: what a wedged scanner looks like from
    the MTA's side. (Written here: no packaged milter hangs on request.)"""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        def packet(code, data=b""):
            c.sendall(struct.pack(">I", len(data) + 1) + code + data)
        try:
            while True:
                head = c.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                size = struct.unpack(">I", head)[0]
                body = c.recv(size, socket.MSG_WAITALL)
                cmd = body[:1]
                if cmd == b"O":
                    packet(b"O", struct.pack(">III", 6, 0, 0))
                elif cmd in (b"D", b"A"):
                    pass  # macros and abort take no answer
                elif cmd == b"Q":
                    return
                elif cmd == b"E":
                    time.sleep(60)  # hangs
                else:
                    packet(b"c")
        except OSError:
            pass

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def sink_gateway(gateway_factory, sink):
    def make(extra, policy=""):
        return gateway_factory(downstream=sink.address, relay_extra='tls = "none"', policy=policy, config_extra=extra)
    return make


def test_opendkim_verifies_and_its_results_reach_the_downstream(sink_gateway, sink):
    odk = OpenDKIMVerifier()
    try:
        gw = sink_gateway(milters({"name": '"opendkim"', "socket": f'"inet:{odk.port}@127.0.0.1"'}))
        assert send(gw, odk.sign(message("odk-1"))) == (250, "")
        dump = sink.dumps(1, timeout=30)[0]
        header = header_of(dump)
        assert b"Authentication-Results: odk.test.example; dkim=pass" in header
        assert b"header.d=example.org" in header and b"DKIM-Signature:" in header
        rec = transactions(gw)[-1]
        assert rec["verdict"] == "accepted" and rec["relay"]
        # A signature that does not verify is OpenDKIM's to report, and the message still goes.
        tampered = odk.sign(message("odk-2")).replace(b"Hello, milters.", b"Hello, tampered.")
        assert send(gw, tampered) == (250, "")
        header = header_of(sink.dumps(2, timeout=30)[1])
        assert b"Authentication-Results: odk.test.example; dkim=fail" in header
    finally:
        odk.stop()


def test_clamav_milter_refuses_eicar(sink_gateway, sink, clamd):
    cm = ClamavMilter(clamd)
    try:
        gw = sink_gateway(milters({"name": '"clamav"', "socket": f'"inet:{cm.port}@127.0.0.1"', "stages": '["data"]'}))
        code, text = send(gw, message("cm-1", body=EICAR + b"\r\n"))
        assert code == 550 and "Virus MxGate.Test.EICAR" in text
        rec = transactions(gw)[-1]
        assert rec["verdict"] == "rejected" and rec["rules"] == ["milter clamav"]
        # Clean mail passes, with clamav-milter's own header.
        assert send(gw, message("cm-2")) == (250, "")
        dump = sink.dumps(1, timeout=30)[0]
        assert b"X-Virus-Scanned: clamav-milter" in dump and b"X-Virus-Status: Clean" in dump
    finally:
        cm.stop()


@pytest.mark.parametrize("action", ["tempfail", "accept"])
def test_hanging_milter_follows_default_action_within_the_timeout(sink_gateway, sink, action):
    hang = HangingMilter()
    try:
        gw = sink_gateway(milters({"name": '"wedged"', "socket": f'"inet:127.0.0.1:{hang.port}"',
                                   "content_timeout": '"1s"', "default_action": f'"{action}"'}),
                          policy='at data match milter wedged failed score +0.5\n')
        start = time.time()
        code, text = send(gw, message(f"hang-{action}"))
        assert time.time() - start < 10
        rec = transactions(gw)[-1]
        if action == "tempfail":
            assert code == 451 and "4.7.1" in text
            assert rec["verdict"] == "tempfailed" and rec["rules"] == ["milter wedged"]
        else:
            assert code == 250
            assert len(sink.dumps(1, timeout=30)) == 1
            assert rec["verdict"] == "accepted" and any("wedged" in w and "carried on" in w for w in rec["warnings"])
            # The failure is a fact the policy read.
            assert rec["spam_score"] == 0.5 and "milter wedged answered failed" in rec["because"].values()
        gw.wait_log("milter wedged")
    finally:
        hang.stop()


def test_milter_down_at_connect_tempfails_by_default(sink_gateway, sink):
    gw = sink_gateway(milters({"name": '"gone"', "socket": f'"inet:127.0.0.1:{free_port()}"', "connect_timeout": '"2s"'}))
    code, text = send(gw, message("down-1"))
    assert code == 451 and "try again later" in text
    recs = [r for r in gw.audit(1) if r["rules"] == ["milter gone"]]
    assert recs and recs[0]["verdict"] == "tempfailed"
