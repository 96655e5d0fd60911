#!/usr/bin/env python3
"""Memory and latency of mxgate in proxy mode (issue 7), with public tools
only: Postfix's smtp-sink as the downstream, Python's smtplib as the client.

  bench/memory_latency.sh        (builds release, raises the fd limit, runs this)

1. RSS with 10,000 concurrent idle connections (each has read its greeting).
2. RSS growth while relaying one 50 MB message.
3. Added latency per message at moderate load: 4 clients, 500 messages each
   of 4 KB over kept-open connections, timed from the start of MAIL to the
   answer to the end of data, through mxgate and straight into the same
   smtp-sink; p50 and p99 of both and the difference.
"""
import os
import re
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MXGATE = os.path.join(ROOT, ".build", "release", "mxgate")
POSTFIX_PATH = "/usr/sbin:/usr/lib/postfix/sbin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing on {port}")


def main():
    work = tempfile.mkdtemp(prefix="mxgate-memlat-")
    os.chmod(work, 0o755)
    sink_port = free_port()
    sink = subprocess.Popen([shutil.which("smtp-sink", path=POSTFIX_PATH), "-u", "nobody", "-c", f"127.0.0.1:{sink_port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(sink_port)
    os.makedirs(f"{work}/policies")
    open(f"{work}/policies/empty.policy", "w").write("")
    open(f"{work}/mxgate.toml", "w").write(f"""
[server]
listen = ["127.0.0.1:0"]
hostname = "mx.bench.test"
max_connections = 20000
[limits]
message_size = "60M"
[relay]
downstream = "127.0.0.1:{sink_port}"
domains = ["dest.test"]
tls = "none"
[audit]
path = "audit.log"
""")
    gw = subprocess.Popen([MXGATE, "serve", "--config", f"{work}/mxgate.toml"], stderr=subprocess.PIPE, text=True)
    port = None
    for line in gw.stderr:
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [None for _ in gw.stderr], daemon=True).start()
    try:
        time.sleep(0.5)
        base = rss_kb(gw.pid)

        # 1. 10,000 idle connections, spread over 127.0.0.2-41 so no source runs out of ports.
        conns = []
        for i in range(10000):
            s = socket.socket()
            s.bind((f"127.0.0.{2 + i % 40}", 0))
            s.connect(("127.0.0.1", port))
            conns.append(s)
        for s in conns:
            s.settimeout(30)
            data = b""
            while b"\r\n" not in data:
                data += s.recv(512)
            assert data.startswith(b"220"), data
        time.sleep(1)
        idle = rss_kb(gw.pid)
        print(f"idle_connections=10000 rss_before_kb={base} rss_kb={idle} growth_kb={idle - base} per_connection_bytes={(idle - base) * 1024 // 10000}")
        for s in conns:
            s.close()
        time.sleep(2)

        # 2. One 50 MB message relayed; RSS sampled every 10 ms.
        before = rss_kb(gw.pid)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kb(gw.pid))
                time.sleep(0.01)
        t = threading.Thread(target=sample)
        t.start()
        line = b"The quarterly report is attached; nothing in this line matters at all, really.\r\n"
        msg = b"From: a@source.test\r\nTo: r@dest.test\r\nSubject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
        start = time.time()
        with smtplib.SMTP("127.0.0.1", port, timeout=300) as c:
            c.sendmail("a@source.test", ["r@dest.test"], msg)
        secs = time.time() - start
        done.set()
        t.join()
        print(f"relay_50MB secs={secs:.2f} rss_before_kb={before} rss_peak_kb={peak[0]} growth_kb={peak[0] - before}")

        # 3. Latency at moderate load, through mxgate and straight to the sink.
        def run(target_port):
            times = []
            lock = threading.Lock()
            body = b"From: a@source.test\r\nTo: r@dest.test\r\nSubject: lat\r\n\r\n" + (b"x" * 76 + b"\r\n") * 52

            def client():
                with smtplib.SMTP("127.0.0.1", target_port, timeout=60) as c:
                    c.ehlo("client.source.test")
                    mine = []
                    for _ in range(500):
                        t0 = time.perf_counter()
                        c.mail("a@source.test")
                        c.rcpt("r@dest.test")
                        code, _ = c.data(body)
                        mine.append(time.perf_counter() - t0)
                        assert code == 250
                    with lock:
                        times.extend(mine)
            threads = [threading.Thread(target=client) for _ in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            times.sort()
            return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
        d50, d99 = run(sink_port)
        m50, m99 = run(port)
        print(f"latency_direct_ms p50={d50:.2f} p99={d99:.2f}")
        print(f"latency_mxgate_ms p50={m50:.2f} p99={m99:.2f}")
        print(f"added_latency_ms p50={m50 - d50:.2f} p99={m99 - d99:.2f}")
    finally:
        gw.terminate()
        gw.wait(30)
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
