#!/usr/bin/env python3
"""spool_files.py - what the file system charges a spool per message.

Writes N messages the way a spool does (write, rename into active/, one
syncfs(2) per 20 messages, then remove the delivered files) three ways:

  create     a new file per message, unlinked after delivery (Postfix, and
             mxgate before session 5)
  truncate   delivered files kept in free/ and reused, truncated first
  overwrite  delivered files kept in free/ and written over in place (mxgate)

and prints the CPU time (user + system) per message. Run it in the file
system the queue lives on: `bench/spool_files.py [DIR] [N] [SIZE]`
(defaults: /tmp/mxgate-spool-bench, 20000, 4400 bytes).
"""
import ctypes
import os
import shutil
import sys

libc = ctypes.CDLL(None, use_errno=True)


def run(base, mode, n, size):
    d = os.path.join(base, mode)
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("tmp", "active", "free"):
        os.makedirs(os.path.join(d, sub))
    data = b"x" * size
    dfd = os.open(os.path.join(d, "active"), os.O_RDONLY)
    spares, batch = [], []
    t0 = os.times()
    for i in range(n):
        name = f"{i:016X}"
        if mode != "create" and spares:
            path = spares.pop()
            fd = os.open(path, os.O_WRONLY | (os.O_TRUNC if mode == "truncate" else 0))
        else:
            path = os.path.join(d, "tmp", name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
        os.rename(path, os.path.join(d, "active", name))
        batch.append(name)
        if len(batch) == 20:
            libc.syncfs(dfd)
            for done in batch:
                src = os.path.join(d, "active", done)
                if mode != "create" and len(spares) < 128:
                    spare = os.path.join(d, "free", done)
                    os.rename(src, spare)
                    spares.append(spare)
                else:
                    os.unlink(src)
            batch = []
    t1 = os.times()
    os.close(dfd)
    shutil.rmtree(d, ignore_errors=True)
    cpu = (t1.user + t1.system - t0.user - t0.system) * 1e6 / n
    sys_ = (t1.system - t0.system) * 1e6 / n
    print(f"mode={mode} messages={n} size={size} cpu_us_per_msg={cpu:.0f} system_us_per_msg={sys_:.0f}", flush=True)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "/tmp/mxgate-spool-bench"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 4400
    for _ in range(2):
        for mode in ("create", "truncate", "overwrite"):
            run(base, mode, n, size)


if __name__ == "__main__":
    main()
