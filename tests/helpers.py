"""Process helpers for the integration tests. Each helper starts one real
program on loopback, finds its port, and stops it again."""
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

POSTFIX_PATH = "/usr/sbin:/usr/lib/postfix/sbin"


def free_port():
    """A port the kernel just handed out for port 0. Programs that cannot
    bind port 0 themselves (smtp-sink, Postfix) get one of these."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def stop_process(proc, grace):
    """SIGTERM, then SIGKILL when `proc` has not exited within `grace` seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls `predicate` until it is truthy; `what` names it in the error,
    or is called then to describe the state it gave up on."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what() if callable(what) else what}")


class Mxgate:
    """`mxgate serve` with a config written for the test; listens on port 0
    and reads the bound port back from its log."""

    def __init__(self, binary, directory, downstream="maildir:mail", domains=("example.com",),
                 extra="", tls=None, relay_extra="", limits="", policy="", tables=None, config_extra=""):
        self.binary = binary
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "mxgate.toml"
        self.downstream = downstream
        self.domains = list(domains)
        self.extra = extra
        self.tls = tls
        self.relay_extra = relay_extra
        self.limits = limits
        self.config_extra = config_extra
        self.proc = None
        self.log_lines = []
        self.port = None
        self.write_policy(policy, tables or {})
        self.write_config()

    def write_policy(self, policy, tables=None):
        """policies/test.policy and any rules/ files a test needs."""
        (self.dir / "policies").mkdir(exist_ok=True)
        (self.dir / "policies" / "test.policy").write_text(policy.lstrip("\n"))
        for name, text in (tables or {}).items():
            path = self.dir / "rules" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def write_config(self, domains=None, raw=None):
        if raw is not None:
            self.config.write_text(raw)
            return
        doms = ", ".join(f'"{d}"' for d in (domains or self.domains))
        tls = ""
        if self.tls:
            tls = f'[tls]\ncertificate = "{self.tls[0]}"\nkey = "{self.tls[1]}"\n'
        self.config.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
hostname = "mx.test.example"
shutdown_timeout = "10s"
{self.extra}
[limits]
{self.limits}
[relay]
downstream = "{self.downstream}"
domains = [{doms}]
{self.relay_defaults()}
{self.relay_extra}
{tls}
[audit]
path = "audit.log"
{self.config_extra}
""")

    def relay_defaults(self):
        """Short relay timeouts for tests, unless the test sets its own."""
        defaults = {"connect_timeout": '"3s"', "command_timeout": '"10s"', "data_timeout": '"10s"'}
        return "\n".join(f"{k} = {v}" for k, v in defaults.items() if k not in self.relay_extra)

    def start(self):
        self.port = None  # a restart binds a new port
        self.proc = subprocess.Popen([self.binary, "serve", "--config", str(self.config), "--log-level", "debug"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.log_lines.append(line.rstrip("\n"))
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        if not ready.wait(30) or self.port is None:
            self.stop()
            raise RuntimeError("mxgate did not start:\n" + "\n".join(self.log_lines))

    @property
    def log(self):
        return "\n".join(self.log_lines)

    @property
    def milter_port(self):
        """The port of `[milter] listen = "inet:127.0.0.1:0"`, from the log."""
        def found():
            m = re.search(r"milter listening on inet:127\.0\.0\.1:(\d+)", self.log)
            return int(m.group(1)) if m else None
        return wait_for(found, 10, lambda: f"the milter listener in the log:\n{self.log}")

    def wait_log(self, text, timeout=10.0):
        """Waits until `text` is in the log: the line is written before the
        SMTP reply that a test waits for, but the thread that collects stderr
        may not have it yet."""
        wait_for(lambda: text in self.log, timeout, lambda: f"{text!r} in the log, which holds:\n{self.log}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def audit(self, wait_for_count=0, timeout=5.0):
        """Audit records so far; waits for the writer's (≤1 s) flush."""
        path = self.dir / "audit.log"

        def read():
            if not path.exists():
                return []
            records = []
            for line in path.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass  # a line still being written
            return records

        end = time.time() + timeout
        records = read()
        while len(records) < wait_for_count and time.time() < end:
            time.sleep(0.1)
            records = read()
        return records

    def cli(self, *args, check=True):
        out = subprocess.run([self.binary, *args, "--config", str(self.config)], capture_output=True, text=True, timeout=30)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def maildir_files(self, address):
        return sorted(glob.glob(str(self.dir / "mail" / address / "new" / "*")))


class SmtpSink:
    """Postfix's smtp-sink, dumping each transaction to its own file."""

    def __init__(self, extra_args=(), port=None):
        # smtp-sink drops to "nobody" before writing dumps, so the dump folder
        # must be reachable by nobody: pytest's own tmp_path (mode 0700) is not.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mxgate-sink-"))
        os.chmod(self.dir, 0o777)
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = port
        self.fixed_port = port is not None

    def start(self):
        for _ in range(5):
            if not self.fixed_port:
                self.port = free_port()
            args = [shutil.which("smtp-sink", path=POSTFIX_PATH + ":" + os.environ.get("PATH", "")),
                    "-u", "nobody", "-c", "-h", "sink.test.example", "-d", str(self.dir) + "/%H%M%S.",
                    *self.extra_args, f"127.0.0.1:{self.port}", "100"]
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                wait_port(self.port, 5)
                return
            except TimeoutError:
                self.proc.kill()
                self.proc.wait()
        raise RuntimeError("smtp-sink did not start")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def dumps(self, count=1, timeout=10.0):
        def ready():
            files = sorted(p for p in self.dir.iterdir() if p.is_file())
            return files if len(files) >= count else None
        files = wait_for(ready, timeout, f"{count} message(s) at smtp-sink")
        time.sleep(0.2)  # the dump is complete once smtp-sink answered ".", give it a moment to close
        return [f.read_bytes() for f in files]

    def stop(self):
        stop_process(self.proc, 5)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def counters(self):
        """smtp-sink -c prints 'sess=N quit=N mesg=N' counters."""
        self.stop()
        out = self.proc.stdout.read().decode(errors="replace")
        found = re.findall(r"sess=(\d+) quit=(\d+) mesg=(\d+)", out)
        return tuple(int(x) for x in found[-1]) if found else None


class Postfix:
    """A private Postfix instance (its own config and queue under the test's
    temp folder), started with `postfix -c DIR start`; the system instance
    is never touched."""

    def __init__(self, relayhost=None, relay_domains="", extra_main="", tls_level="may"):
        # Postfix's daemons run as "postfix" and must reach their folders:
        # pytest's tmp_path (mode 0700) is not reachable, so use /tmp directly.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mxgate-pf-"))
        os.chmod(self.dir, 0o755)
        self.tls_level = tls_level
        self.conf = self.dir / "etc"
        self.spool = self.dir / "spool"
        self.port = free_port()
        self.relayhost = relayhost
        self.relay_domains = relay_domains
        self.extra_main = extra_main
        self.env = dict(os.environ, PATH=POSTFIX_PATH + ":" + os.environ.get("PATH", ""))

    def start(self):
        self.conf.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "postfix")
        relayhost = f"relayhost = [127.0.0.1]:{self.relayhost}" if self.relayhost else ""
        (self.conf / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.test.example
mydomain = test.example
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
relay_domains = {self.relay_domains}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
{relayhost}
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
smtp_tls_security_level = {self.tls_level}
smtp_tls_loglevel = 1
maillog_file = {self.dir}/maillog
maillog_file_prefixes = /var, /dev/stdout, /tmp
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{self.extra_main}
""")
        (self.conf / "master.cf").write_text(f"""
127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
        subprocess.run(["postfix", "-c", str(self.conf), "check"], env=self.env, check=True, capture_output=True)
        out = subprocess.run(["postfix", "-c", str(self.conf), "start"], env=self.env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_port(self.port, 15)

    def reload(self):
        subprocess.run(["postfix", "-c", str(self.conf), "reload"], env=self.env, check=True, capture_output=True)

    def maillog(self):
        p = self.dir / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""

    def queue_empty(self):
        out = subprocess.run(["postqueue", "-c", str(self.conf), "-p"], env=self.env, capture_output=True, text=True)
        return "Mail queue is empty" in out.stdout

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], env=self.env, capture_output=True)
        pidfile = self.spool / "pid" / "master.pid"
        end = time.time() + 10
        while time.time() < end and pidfile.exists():
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


class RawClient:
    """A line-level SMTP client for what smtplib will not send: pipelined
    batches, malformed commands, smuggling attempts."""

    def __init__(self, port, timeout=10.0, source=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One whole (possibly multi-line) reply as (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got " + repr(self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode(errors="replace")
            lines.append(text)
            if len(text) < 4 or text[3] == " ":
                return int(text[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def begin(self, sender="a@sender.test"):
        """Greeting, EHLO and MAIL FROM, each asserted; ready for RCPT."""
        assert self.reply()[0] == 220
        assert self.cmd("EHLO c.test")[0] == 250
        assert self.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        return self

    def closed(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


class WireRecorder:
    """A minimal SMTP server used only where a real server cannot show what
    the test needs: the exact bytes mxgate puts on the wire during DATA, and
    a server that dies mid-DATA on cue. Real-server behaviour is tested
    against smtp-sink and Postfix; this is a measuring instrument."""

    def __init__(self, close_after_data_bytes=None, lenient_lf=False):
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.close_after = close_after_data_bytes
        self.lenient_lf = lenient_lf
        self.transactions = []   # raw DATA bytes (dot-stuffed, as on the wire), one per message
        self.commands = []
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        while not self.stopped:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        buf = b""
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 wire.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                self.commands.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-wire.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    data = b""
                    end = b"\n.\n" if self.lenient_lf else b"\r\n.\r\n"
                    while not (data.endswith(end) or data == b".\r\n"):
                        if self.lenient_lf and (data.endswith(b"\r\n.\r\n") or data.endswith(b"\n.\r\n")):
                            break
                        ch = f.read(1)
                        if not ch:
                            return
                        data += ch
                        if self.close_after is not None and len(data) >= self.close_after:
                            conn.close()
                            return
                    self.transactions.append(data)
                    conn.sendall(b"250 2.0.0 Ok: queued as WIRE%d\r\n" % len(self.transactions))
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except OSError:
            return
        finally:
            conn.close()

    def stop(self):
        self.stopped = True
        self.server.close()


class DNSServer:
    """tests/dns_server.py (dnslib) on loopback with the given zone."""

    def __init__(self, directory, zone):
        self.zone_file = pathlib.Path(directory) / "zone.json"
        self.zone_file.parent.mkdir(parents=True, exist_ok=True)
        self.zone_file.write_text(json.dumps(zone))
        self.proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).parent / "dns_server.py"), str(self.zone_file)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("port "), line
        self.port = int(line.split()[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


# EICAR, assembled from pieces so this file is not itself detected.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*").encode()


class Clamd:
    """clamd in the foreground on a unix socket, with a tiny database:
    an .ndb body signature and an .hdb MD5 signature for EICAR."""

    def __init__(self, directory):
        import hashlib
        self.dir = pathlib.Path(directory)
        os.chmod(self.dir, 0o755)
        db = self.dir / "db"
        db.mkdir()
        self.db = str(db)
        (db / "mxgate-test.ndb").write_text("MxGate.Test.EICAR:0:*:" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE".hex() + "\n")
        (db / "mxgate-test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:MxGate.Test.EICAR.MD5\n")
        self.socket = str(self.dir / "clamd.sock")
        (self.dir / "clamd.conf").write_text(f"""
LocalSocket {self.socket}
LocalSocketMode 666
DatabaseDirectory {db}
Foreground yes
LogFile {self.dir}/clamd.log
TemporaryDirectory {self.dir}
StreamMaxLength 30M
MaxThreads 4
User root
""")
        self.proc = None

    def start(self):
        clamd = shutil.which("clamd", path="/usr/sbin:" + os.environ.get("PATH", ""))
        self.proc = subprocess.Popen([clamd, f"--config-file={self.dir}/clamd.conf"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self.ping, 60, "clamd to answer PING")

    def ping(self):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1)
            s.connect(self.socket)
            s.sendall(b"zPING\0")
            ok = s.recv(16).startswith(b"PONG")
            s.close()
            return ok
        except OSError:
            if self.proc.poll() is not None:
                raise RuntimeError("clamd exited: " + self.proc.stderr.read().decode(errors="replace"))
            return False

    def stop(self):
        stop_process(self.proc, 10)


class Redis:
    """A private redis-server (Debian's) on a unix socket in the test's
    directory: loopback-only by construction, and no port to choose."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.proc = None

    @property
    def url(self):
        return f"unix:{self.socket}"

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ping(), 10, "redis-server answering PING")

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", str(self.socket), *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def ping(self):
        return self.socket.exists() and self.cli("PING") == "PONG"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.socket.exists():
            self.socket.unlink()


def smtp_send(port, sender, recipients, msg, helo=None, source=None, timeout=60):
    """Sends one message with smtplib; the server's answer as (code, text),
    (250, "") when it was accepted: the refused step's reply otherwise."""
    import smtplib
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None) as s:
            if helo:
                s.ehlo(helo)
            s.sendmail(sender, recipients, msg)
        return 250, ""
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode()
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        return code, text.decode()
