"""Abuse limits and faults: slow clients (slowloris), early talkers, idle
connections under stress, privilege drop, an unwritable audit log, clamd
dying mid-scan, and the TLS versions offered."""
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from helpers import EICAR, Mxgate, RawClient, wait_for


def test_trickled_command_line_times_out(gateway_factory):
    """A byte every half second never finishes a line: the per-line deadline
    (command_timeout) ends the session although bytes keep arriving."""
    gw = gateway_factory(limits='command_timeout = "2s"')
    c = RawClient(gw.port)
    assert c.reply()[0] == 220
    start = time.time()
    closed = False
    for b in b"EHLO slow.client.example.and.more.bytes.to.come":
        try:
            c.send(bytes([b]))
        except OSError:
            closed = True
            break
        time.sleep(0.5)
        if time.time() - start > 8:
            break
    drained = c.closed(3)
    assert closed or drained
    assert time.time() - start < 8
    rec = wait_for(lambda: [r for r in gw.audit() if r["event"] == "connection" and r["reply"].startswith("421 4.4.2")], 5,
                   "the timeout record")
    assert rec[0]["verdict"] == "tempfailed"


def test_trickled_message_hits_the_data_deadline(gateway_factory):
    gw = gateway_factory(limits='data_timeout = "5s"\ndata_deadline = "3s"')
    c = RawClient(gw.port).begin()
    assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    start = time.time()
    try:
        while time.time() - start < 10:
            c.send(b"Subject: slow\r\n")
            time.sleep(0.5)
    except OSError:
        pass
    assert time.time() - start < 8
    c.closed(3)
    assert gw.maildir_files("bob@example.com") == []
    wait_for(lambda: [r for r in gw.audit() if r["reply"].startswith("421")], 5, "the timeout record")


def test_stalled_message_text_hits_the_shorter_data_timeout(gateway_factory):
    """data_timeout shorter than command_timeout: a client that stops in
    the middle of its message is cut off after data_timeout, not after the
    command timeout the session's timer was set for before DATA."""
    gw = gateway_factory(limits='command_timeout = "30s"\ndata_timeout = "2s"')
    c = RawClient(gw.port).begin()
    assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: stalled\r\n\r\nhalf a message")
    start = time.time()
    code, lines = c.reply()
    assert code == 421 and "4.4.2" in lines[0]
    assert time.time() - start < 6
    assert c.closed(3)
    assert gw.maildir_files("bob@example.com") == []


def test_early_talker_is_refused(gateway_factory):
    gw = gateway_factory(limits='greet_wait = "1s"')
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"EHLO bot.example\r\nMAIL FROM:<spam@bot.example>\r\n")
    s.settimeout(5)
    data = b""
    while b"\r\n" not in data:
        data += s.recv(4096)
    assert data.startswith(b"554 5.5.1") and b"before the greeting" in data
    s.close()
    rec = wait_for(lambda: [r for r in gw.audit() if r["event"] == "connection" and r["rules"] == ["pregreet"]], 5,
                   "the pregreet record")
    assert rec[0]["verdict"] == "rejected"


def test_patient_client_is_greeted_and_remembered(gateway_factory):
    gw = gateway_factory(limits='greet_wait = "1s"')
    start = time.time()
    c = RawClient(gw.port, source="127.0.0.8")
    assert c.reply()[0] == 220
    assert time.time() - start >= 0.9
    c.cmd("QUIT")
    start = time.time()
    c = RawClient(gw.port, source="127.0.0.8")
    assert c.reply()[0] == 220
    assert time.time() - start < 0.8, "a client that waited once is not made to wait again"


def test_idle_connections_under_stress_time_out_sooner(gateway_factory):
    gw = gateway_factory(extra="max_connections = 10", limits='command_timeout = "60s"\nstress_timeout = "1s"')
    few = [RawClient(gw.port) for _ in range(5)]
    for c in few:
        assert c.reply()[0] == 220
    time.sleep(2.5)
    assert all(not c.closed(0.2) for c in few), "below the stress threshold the normal timeout applies"
    more = [RawClient(gw.port) for _ in range(4)]
    for c in more:
        assert c.reply()[0] == 220
    # Over 80 % of max_connections: idle sessions get the 1 s limit until the
    # count is back under 60 % (at most 6 of 10), then the normal one again.
    closed = sum(1 for c in few + more if c.closed(3))
    assert 3 <= closed < 9
    gw.wait_log("under stress: 9 of 10 connections")
    gw.wait_log("stress over", 5)


def listening_sockets(pid, port):
    """How many sockets listening on `port` the process holds (/proc, no ss)."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        for line in open(f"/proc/net/{name}").read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return sum(f"socket:[{i}]" in held for i in inodes)


def event_loops(pid):
    """SwiftNIO's event loop threads are named NIO-SGLTN-<group>-#<n>."""
    def name(t):
        try:
            return open(f"/proc/{pid}/task/{t}/comm").read()
        except FileNotFoundError:
            return ""  # a short-lived thread ended after the listing
    return sum(name(t).startswith("NIO-SGLTN-") for t in os.listdir(f"/proc/{pid}/task"))


def one_socket_per_loop(pid, port):
    """Waits until the counts agree: a thread started from an event loop
    carries that loop's name (Linux copies it) for the moment until it names
    itself (detachNamedThread)."""
    wait_for(lambda: listening_sockets(pid, port) == event_loops(pid) >= 1, 5,
             lambda: f"one listening socket per event loop: {listening_sockets(pid, port)} for {event_loops(pid)}")


def test_one_listener_per_event_loop_and_no_second_gateway(gateway_factory, mxgate_bin, tmp_path):
    """Each event loop accepts on its own socket (SO_REUSEPORT); a second
    mxgate started on the same port is refused, not let in beside it."""
    gw = gateway_factory()
    one_socket_per_loop(gw.proc.pid, gw.port)
    second = Mxgate(mxgate_bin, tmp_path / "second")
    second.config.write_text(second.config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{gw.port}"))
    r = subprocess.run([mxgate_bin, "serve", "--config", str(second.config)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"cannot bind 127.0.0.1:{gw.port}: Address already in use" in r.stderr
    # Every connection still reaches the first, whichever socket takes it.
    for i in range(8):
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
            assert s.sendmail("a@sender.test", ["bob@example.com"], f"Subject: {i}\r\n\r\nx\r\n".encode()) == {}
    wait_for(lambda: len(gw.audit()) >= 8, 10, "eight audit records")


def test_two_gateways_started_together_never_share_a_port(mxgate_bin, tmp_path):
    """Started in the same instant, both may pass the exclusivity probe; the
    count of listeners after listen() makes the later one (or both) give up."""
    for round_ in range(4):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        procs = []
        for i in range(2):
            gw = Mxgate(mxgate_bin, tmp_path / f"r{round_}-{i}")
            gw.config.write_text(gw.config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
            procs.append(gw)
        logs = [[] for _ in procs]
        for gw, log in zip(procs, logs):
            gw.proc = subprocess.Popen([mxgate_bin, "serve", "--config", str(gw.config)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            threading.Thread(target=lambda f=gw.proc.stderr, log=log: log.extend(f), daemon=True).start()
        try:
            # Each one either stops with a clear error or serves.
            def settled(gw, log):
                return gw.proc.poll() is not None or any("listening on" in line for line in log)
            wait_for(lambda: all(settled(gw, log) for gw, log in zip(procs, logs)), 30, "both to start or stop")
            running = [gw for gw in procs if gw.proc.poll() is None]
            assert len(running) <= 1, f"round {round_}: both serve port {port}"
            for gw, log in zip(procs, logs):
                if gw.proc.poll() is not None:
                    gw.proc.wait()
                    wait_for(lambda: any("Address already in use" in line for line in log), 5, "the reason")
        finally:
            for gw in procs:
                gw.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_privileges_are_dropped_after_binding(mxgate_bin, sink):
    nobody = pwd.getpwnam("nobody")
    d = tempfile.mkdtemp(prefix="mxgate-priv-")
    os.chmod(d, 0o755)
    gw = Mxgate(mxgate_bin, d, downstream=sink.address, extra='user = "nobody"',
                relay_extra='mode = "queue"\ntls = "none"', config_extra='[queue]\ndirectory = "queue"\n')
    try:
        gw.start()
        gw.wait_log("running as user nobody", 10)
        # Every thread runs as nobody: the serving process was started as
        # nobody (setpriv) with the listeners root had bound.
        import glob
        live = []
        for path in glob.glob(f"/proc/{gw.proc.pid}/task/*/status"):
            try:
                text = open(path).read()
            except FileNotFoundError:
                continue  # a short-lived thread ended after the listing: it runs as nobody no more
            fields = dict(l.split(":", 1) for l in text.splitlines() if ":" in l)
            if not fields["State"].strip().startswith("Z"):
                live.append(set(fields["Uid"].split()))
        assert live and all(u == {str(nobody.pw_uid)} for u in live), live
        # root bound one listening socket per event loop and passed them all on.
        one_socket_per_loop(gw.proc.pid, gw.port)
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
            assert s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: x\r\n\r\nsent as nobody\r\n") == {}
        assert b"sent as nobody" in sink.dumps(1, timeout=20)[0]
        assert os.stat(os.path.join(d, "queue", "active")).st_uid == nobody.pw_uid
        # What it writes after the drop belongs to nobody too.
        assert os.stat(os.path.join(d, "audit.log")).st_uid == nobody.pw_uid
    finally:
        gw.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_unwritable_audit_log_tempfails_then_recovers(gateway_factory):
    """The audit file cannot grow (a file-size limit, as a full disk): new
    mail gets 451 until it can, and the records held meanwhile are written."""
    gw = gateway_factory()
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: before\r\n\r\nx\r\n")
    wait_for(lambda: gw.audit(), 5, "the first record")
    size = os.path.getsize(gw.dir / "audit.log")
    subprocess.run(["prlimit", "--pid", str(gw.proc.pid), f"--fsize={size + 10}:unlimited"], check=True)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: during\r\n\r\nx\r\n")
    gw.wait_log("audit log write failed", 10)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.ehlo("client.test")
        code, text = s.mail("a@sender.test")
        assert code == 451 and b"audit log unavailable" in text
    assert gw.proc.poll() is None
    subprocess.run(["prlimit", "--pid", str(gw.proc.pid), "--fsize=unlimited"], check=True)
    gw.wait_log("audit log writable again", 10)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: after\r\n\r\nx\r\n")
    def three():
        recs = gw.audit()
        return recs if len([x for x in recs if x["event"] == "transaction"]) >= 3 else None
    recs = wait_for(three, 10, "three transaction records")
    assert [r for r in recs if r["event"] == "command" and r["reply"].startswith("451")]
    assert len(gw.maildir_files("bob@example.com")) == 3


def test_clamd_killed_mid_scan_tempfails(gateway_factory, tmp_path):
    """clamd dies while a scan is in flight: the client gets 451, the
    message is not delivered, and the gateway keeps serving."""
    from helpers import Clamd
    (tmp_path / "clamd-victim").mkdir()
    clamd = Clamd(tmp_path / "clamd-victim")
    clamd.start()
    try:
        gw = gateway_factory(policy='at data match virus reject "554 5.7.1 Virus found: {virus}"\n',
                             config_extra=f'[clamav]\nmode = "clamd"\nsocket = "{clamd.socket}"\ntimeout = "20s"\n')
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 20000
        result = {}

        def send():
            try:
                with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
                    s.sendmail("a@sender.test", ["bob@example.com"], big)
                    result["code"] = 250
            except smtplib.SMTPDataError as e:
                result["code"] = e.smtp_code
        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.3)
        clamd.proc.kill()
        t.join(60)
        assert result.get("code") in (451, 250)
        if result["code"] == 451:
            assert gw.maildir_files("bob@example.com") == []
        # With clamd gone, every scan fails closed, and the gateway still answers.
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=60) as s:
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: next\r\n\r\n" + EICAR + b"\r\n")
            assert e.value.smtp_code == 451
    finally:
        clamd.stop()


@pytest.mark.parametrize("version,accepted", [("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)])
def test_only_modern_tls_versions(gateway_factory, tls_cert, version, accepted):
    gw = gateway_factory(tls=tls_cert)
    args = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{gw.port}", version, "-brief"]
    if version != "-tls1_3":
        args += ["-cipher", "DEFAULT@SECLEVEL=0"]
    out = subprocess.run(args, input=b"QUIT\r\n", capture_output=True, timeout=30)
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert ("CONNECTION ESTABLISHED" in text) == accepted, text


def test_mail_loop_and_header_size_limits(gateway_factory):
    gw = gateway_factory()
    hops = "".join(f"Received: from hop{i}.example by hop{i + 1}.example; Mon, 30 Nov 2026 06:00:00 +0000\r\n" for i in range(51))
    huge = "".join(f"X-Filler-{i}: {'x' * 90}\r\n" for i in range(1200))   # about 120 KB of header
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"], (hops + "Subject: loop\r\n\r\nx\r\n").encode())
        assert e.value.smtp_code == 554 and b"5.4.6" in e.value.smtp_error
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("a@sender.test", ["bob@example.com"], (huge + "Subject: big\r\n\r\nx\r\n").encode())
        assert e.value.smtp_code == 552 and b"5.3.4" in e.value.smtp_error
        # Within both limits: delivered.
        s.sendmail("a@sender.test", ["bob@example.com"], (hops[: hops.index("hop10.example by")] + "Subject: ok\r\n\r\nx\r\n").encode())
    assert len(gw.maildir_files("bob@example.com")) == 1
    recs = [r for r in gw.audit(3) if r["event"] == "transaction"]
    assert [r["verdict"] for r in recs[:2]] == ["rejected", "rejected"] and recs[0]["rules"] == ["limits"]
