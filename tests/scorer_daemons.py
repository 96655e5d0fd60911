"""Real SpamAssassin spamd and rspamd on loopback with private
configurations (after ../shared/peers/spam-test.sh): no network lists, no
Bayes, no Redis, so their answers depend on the message only."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import http.client
import tempfile

from helpers import free_port, stop_process, wait_for


def private_dir(prefix):
    """A folder the daemons' own users (nobody, _rspamd) can reach: pytest's
    tmp_path sits under a root-only folder."""
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)
    return d


def stop_daemon(d):
    """Stopped (20 s to exit), its private folder removed."""
    stop_process(d.proc, 20)
    shutil.rmtree(d.dir, ignore_errors=True)


class NXDomainServer:
    """Answers every DNS query NXDOMAIN at once, on loopback (as
    ../shared/peers/spam-test.sh does): rspamd's DNS rules then fail as
    on a machine without network, without each waiting for a timeout."""

    def __init__(self):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                q, a = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(q) < 12:
                continue
            i = 12
            while i < len(q) and q[i]:
                i += q[i] + 1
            self.sock.sendto(q[:2] + bytes([0x80 | (q[2] & 0x79), 0x83]) + b"\0\1" + b"\0" * 6 + q[12:i + 5], a)

    def close(self):
        self.sock.close()


class Spamd:
    def __init__(self, nxdomain=False):
        self.dir = private_dir("mxgate-spamd-")
        # Some plugins (DKIM, SPF) still query DNS with dns_available no: with
        # no resolver reachable each would wait for its timeout.
        self.nx = NXDomainServer() if nxdomain else None
        (self.dir / "etc").mkdir(parents=True)
        (self.dir / "home").mkdir()
        for pre in pathlib.Path("/etc/spamassassin").glob("*.pre"):
            shutil.copy(pre, self.dir / "etc")
        (self.dir / "etc" / "local.cf").write_text(
            "dns_available no\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\nuse_bayes 0\nbayes_auto_learn 0\nrequired_score 5.0\n"
            "time_limit 30\n" + (f"dns_server 127.0.0.1:{self.nx.port}\n" if self.nx else ""))
        shutil.chown(self.dir / "home", "nobody")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.proc = None

    def start(self):
        spamd = shutil.which("spamd", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))
        self.proc = subprocess.Popen(
            [spamd, "-i", f"127.0.0.1:{self.port}", "-A", "127.0.0.1", "-u", "nobody", "-x", "-H", str(self.dir / "home"),
             f"--siteconfigpath={self.dir / 'etc'}", "-C", "/usr/share/spamassassin", "-m", "2", "--min-spare=1", "--max-spare=2", "--max-conn-per-child=1000000",
             "-s", str(self.dir / "spamd.log"), "-r", str(self.dir / "spamd.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self.ping, 120, "spamd to answer PING")

    def ping(self):
        if self.proc.poll() is not None:
            raise RuntimeError("spamd exited: " + self.proc.stderr.read().decode(errors="replace"))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return b"PONG" in s.recv(100)
        except OSError:
            return False

    def pause(self):
        """SIGSTOP on every spamd process: it accepts (the kernel does) and never answers."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self):
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    def pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [self.proc.pid] + [int(p) for p in out]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
        stop_daemon(self)
        if self.nx:
            self.nx.close()


class Rspamd:
    def __init__(self, nxdomain=False):
        self.dir = private_dir("mxgate-rspamd-")
        self.nx = NXDomainServer() if nxdomain else None
        for d in ("etc/override.d", "etc/local.d", "db", "run", "log"):
            (self.dir / d).mkdir(parents=True)
        self.port, self.controller, self.proxy = free_port(), free_port(), free_port()
        self.dns = self.nx.port if self.nx else free_port()
        (self.dir / "etc/override.d/worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{self.port}";\ncount = 1;\n')
        (self.dir / "etc/override.d/worker-controller.inc").write_text(f'bind_socket = "127.0.0.1:{self.controller}";\n')
        (self.dir / "etc/override.d/worker-proxy.inc").write_text(f'bind_socket = "127.0.0.1:{self.proxy}";\ncount = 1;\n')
        # Its resolver: the NXDOMAIN server, or a port nothing answers on (DNS rules fail, as without network).
        (self.dir / "etc/local.d/options.inc").write_text(f'dns {{\n  nameserver = ["127.0.0.1:{self.dns}"];\n  timeout = 1s;\n  retransmits = 1;\n}}\n')
        for d in ("db", "run", "log"):
            shutil.chown(self.dir / d, "_rspamd", "_rspamd")
        os.chmod(self.dir, 0o755)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
             "--var", f"LOCAL_CONFDIR={self.dir / 'etc'}", "--var", f"DBDIR={self.dir / 'db'}",
             "--var", f"RUNDIR={self.dir / 'run'}", "--var", f"LOGDIR={self.dir / 'log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self.ping, 120, "rspamd to answer /ping")

    def ping(self):
        if self.proc.poll() is not None:
            raise RuntimeError("rspamd exited: " + self.proc.stderr.read().decode(errors="replace"))
        try:
            h = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            h.request("GET", "/ping")
            return h.getresponse().read().startswith(b"pong")
        except OSError:
            return False

    def stop(self):
        stop_daemon(self)
        if self.nx:
            self.nx.close()
