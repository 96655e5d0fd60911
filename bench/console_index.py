#!/usr/bin/env python3
"""The review console's audit index against a large log (bench/console_index.sh).

Starts `mxgate serve` with [web] on a generated audit log and no index,
times how long the gateway takes to index it, then times searches and the
statistics through the console's JSON API (a viewer's bearer token), the
median of RUNS each, side by side with what an admin has without the
console: `mxgate log` filtering the JSON lines, and grep."""
import json
import os
import pathlib
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

MXGATE, LOG, RECORDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
RUNS = int(os.environ.get("RUNS", "5"))


def median_ms(fn, runs=RUNS):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def main():
    d = pathlib.Path(tempfile.mkdtemp(prefix="mxgate-index-"))
    (d / "var").mkdir()
    os.symlink(os.path.abspath(LOG), d / "var" / "audit.log")
    (d / "policies").mkdir()
    (d / "policies" / "empty.policy").write_text("# nothing: the benchmark only reads the log\n")
    (d / "mxgate.toml").write_text(f"""
[server]
listen = ["127.0.0.1:0"]
hostname = "mx.bench.test"
[relay]
downstream = "maildir:var/mail"
domains = ["example.com"]
[policy]
rules = "rules"
policies = "policies"
[audit]
path = "var/audit.log"
max_size = "100G"
[web]
listen = "127.0.0.1:0"
""")
    (d / "rules").mkdir()
    cfg = str(d / "mxgate.toml")
    subprocess.run([MXGATE, "web", "user", "add", "bench", "--role", "viewer", "--config", cfg],
                   input="bench password\n", text=True, check=True, capture_output=True)
    token = subprocess.run([MXGATE, "web", "user", "token", "bench", "--config", cfg],
                           text=True, check=True, capture_output=True).stdout.strip()
    logf = open(d / "serve.log", "w+")
    started = time.perf_counter()
    proc = subprocess.Popen([MXGATE, "serve", "--config", cfg], stdout=logf, stderr=subprocess.STDOUT)
    try:
        url = None
        while url is None:
            time.sleep(0.2)
            m = re.search(r"review console on (http://127\.0\.0\.1:\d+)/", (d / "serve.log").read_text())
            url = m.group(1) if m else None
            if proc.poll() is not None:
                raise SystemExit((d / "serve.log").read_text())
        index = d / "var" / "audit.log.index"
        count = 0
        while count < RECORDS:
            time.sleep(1)
            try:
                db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=30)
                count = db.execute("SELECT count(*) FROM records").fetchone()[0]
                db.close()
            except sqlite3.Error:
                pass
        indexed = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (d / "var").glob("audit.log.index*"))
        rss = int(re.search(r"VmHWM:\s+(\d+)", pathlib.Path(f"/proc/{proc.pid}/status").read_text()).group(1)) // 1024

        def api(path):
            req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())

        sample = json.loads(subprocess.run(["tail", "-n", "1", LOG], capture_output=True, text=True).stdout)
        first = json.loads(subprocess.run(["head", "-n", "1", LOG], capture_output=True, text=True).stdout)
        sender = first["mail_from"] or "info1@bulk-offers.example"
        queries = [
            ("newest 50, last hour (the default page)", "/api/search"),
            ("newest 50 of 30 days", "/api/search?window=30d"),
            ("sender, 30 days (oldest record's sender)", f"/api/search?window=30d&from={urllib.parse.quote(sender)}"),
            ("sender domain, 30 days", "/api/search?window=30d&from=lottery-win.example"),
            ("recipient, 30 days", "/api/search?window=30d&to=user7%40example.com"),
            ("client network /24, 30 days", "/api/search?window=30d&client=203.0.113.0/24"),
            ("verdict quarantined, page 10", "/api/search?window=30d&verdict=quarantined&page=10"),
            ("rule name, 30 days", "/api/search?window=30d&rule=dmarc-reject"),
            ("message-id", f"/api/search?window=30d&message_id={urllib.parse.quote(sample['message_id'] or '<none>')}"),
            ("free text, 30 days", "/api/search?window=30d&q=Eicar"),
            ("DMARC fail, 30 days", "/api/search?window=30d&dmarc=fail"),
            ("statistics, 1 day", "/api/stats?window=1d"),
            ("statistics, 30 days", "/api/stats?window=30d"),
        ]
        print(f"records indexed: {count}; from gateway start to the last record indexed: {indexed:.1f} s; "
              f"index {size / 2**20:.0f} MiB for a {os.path.getsize(LOG) / 2**20:.0f} MiB log; gateway peak RSS {rss} MiB")
        print(f"| query | console API (median of {RUNS}) | records |")
        print("|---|---|---|")
        for name, path in queries:
            ms, result = median_ms(lambda: api(path))
            n = len(result.get("records", [])) if "records" in result else result.get("decisions")
            print(f"| {name} | {ms:.1f} ms | {n} |")
        print()
        print("the same sender query without the console:")
        ms, out = median_ms(lambda: subprocess.run([MXGATE, "log", "--config", cfg, "--since", "30d", "--from", sender, "--json"],
                                                   capture_output=True, text=True).stdout, runs=1)
        print(f"| mxgate log --from {sender} --since 30d | {ms:.0f} ms | {len(out.splitlines())} |")
        ms, out = median_ms(lambda: subprocess.run(["grep", "-cF", f'"mail_from":"{sender}"', LOG], capture_output=True, text=True).stdout,
                            runs=3)
        print(f"| grep -cF on the log (median of 3) | {ms:.0f} ms | {out.strip()} |")
    finally:
        proc.terminate()
        proc.wait(30)
        if os.environ.get("KEEP") != "1":
            subprocess.run(["rm", "-rf", str(d)])


if __name__ == "__main__":
    main()
