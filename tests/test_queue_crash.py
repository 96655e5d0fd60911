"""The queue's promise under the worst case: mxgate is killed with SIGKILL
at random moments while ten clients send 2,000 messages; after each restart
it goes on. Every message that got 250 must reach the sink (counted by
Message-ID; a message whose 250 was lost on the wire may arrive twice)."""
import random
import re
import smtplib
import threading
import time

from helpers import wait_for

TOTAL = 2000
CLIENTS = 10
KILLS = 3


def test_kill_9_under_load_loses_nothing(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='mode = "queue"\ntls = "none"\n',
                         config_extra='[queue]\ndirectory = "queue"\nmin_backoff = "1s"\nmax_backoff = "2s"\n')
    acked = set()
    lock = threading.Lock()
    errors = []

    def client(first):
        i = first
        while i < TOTAL:
            try:
                port = gw.port
                if port is None:
                    raise OSError("gateway restarting")
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                    s.ehlo("load.test")
                    while i < TOTAL:
                        mid = f"<crash-{i}@sender.test>"
                        msg = (f"From: a@sender.test\r\nTo: bob@example.com\r\nSubject: {i}\r\nMessage-ID: {mid}\r\n\r\n"
                               f"message {i}\r\n").encode()
                        s.sendmail("a@sender.test", ["bob@example.com"], msg)
                        with lock:
                            acked.add(mid)
                        i += CLIENTS
            except (OSError, smtplib.SMTPException) as e:
                if not isinstance(e, (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException)):
                    errors.append(repr(e))
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    rng = random.Random(20261130)
    for _ in range(KILLS):
        target = len(acked) + rng.randint(150, 450)
        wait_for(lambda: len(acked) >= target or not any(t.is_alive() for t in threads), 120, "progress before a kill")
        gw.proc.kill()
        gw.proc.wait()
        gw.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "clients did not finish"
    assert not errors, errors[:5]
    assert len(acked) == TOTAL

    def delivered():
        got = set()
        for f in sink.dir.iterdir():
            m = re.search(rb"Message-ID: (<crash-\d+@sender\.test>)", f.read_bytes())
            if m:
                got.add(m.group(1).decode())
        return got

    wait_for(lambda: acked <= delivered(), 180, "every acknowledged message at the sink")
    assert "queue recovery" not in gw.log or "moved to corrupt" not in gw.log
