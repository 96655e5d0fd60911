"""The statistical classifier through the real binary: `mxgate learn` from
files, a Maildir and an mbox; `mxgate test` and a running gateway judging as
trained (the gateway takes up a model written by another process without a
restart); --forget; a release learnt as ham; autolearn; a kill during a
write never leaves a broken model. The mail is made here, from two
vocabularies, never taken from a corpus."""
import json
import random
import signal
import smtplib
import subprocess
import time

from helpers import wait_for

SPAM_WORDS = ("cheap pills winner prize claim offer casino bonus unsubscribe limited discount guaranteed "
              "free money credit loan urgent act now viagra").split()
HAM_WORDS = ("meeting agenda patch review kernel release schedule minutes draft thanks build commit merge "
             "branch test docs question lunch project notes").split()

POLICY = "at data match spam-score >= 5 tag\n"


def message(spam, n, extra=""):
    rnd = random.Random(n * 2 + spam)
    words = SPAM_WORDS if spam else HAM_WORDS
    body = " ".join(rnd.choice(words) for _ in range(80))
    sender = f"Deals <deals{n}@promo.example>" if spam else "Alice <alice@example.org>"
    subject = " ".join(rnd.choice(words) for _ in range(4))
    return (f"From: {sender}\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMessage-ID: <{n}.{int(spam)}@t.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\nnumber {n} {extra}\r\n").encode()


def write_messages(folder, spam, rng, maildir=False):
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "cur" if maildir else folder
    target.mkdir(exist_ok=True)
    for n in rng:
        (target / f"{n}.eml").write_bytes(message(spam, n))
    return folder


def config_for(gw, extra=""):
    return f'[classifier]\nmodel = "classifier.model"\nmin_learned = 20\n{extra}\n'


def learn(gw, *args, check=True):
    out = subprocess.run([gw.binary, "learn", "--config", str(gw.config), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def judge(gw, path):
    out = subprocess.run([gw.binary, "test", "--config", str(gw.config), "--client-ip", "192.0.2.7", "--from", "a@t.example",
                          "--to", "bob@example.com", "--json", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def send(gw, data):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@t.example", ["bob@example.com"], data)


def test_learn_then_judge_in_test_and_in_a_running_gateway(gateway_factory, tmp_path):
    gw = gateway_factory(policy=POLICY, config_extra=config_for(None))
    probe = tmp_path / "probe.eml"
    probe.write_bytes(message(True, 9001))
    untrained = judge(gw, probe)
    assert "classifier" not in untrained and not any(s.startswith("CLASSIFIER") for s in untrained.get("symbols", {}))

    # Spam from a folder of files, ham from a Maildir and an mbox.
    spam = write_messages(tmp_path / "spam", True, range(40))
    ham = write_messages(tmp_path / "ham", False, range(30), maildir=True)
    mbox = tmp_path / "ham.mbox"
    mbox.write_bytes(b"".join(b"From alice@example.org Mon Jan  1 00:00:00 2024\n" + message(False, n).replace(b"\r\n", b"\n")
                              for n in range(30, 45)))
    out = learn(gw, "--spam", str(spam), "--ham", str(ham), str(mbox))
    assert "learnt 85 message(s)" in out.stdout and "40 spam, 45 ham learnt" in out.stdout
    assert "40 already learnt" in learn(gw, "--spam", str(spam)).stdout

    trained = judge(gw, probe)
    assert trained["classifier"] > 0.9 and trained["symbols"]["CLASSIFIER_SPAM"] > 5 and trained["verdict"] == "accepted"
    ham_probe = tmp_path / "hamprobe.eml"
    ham_probe.write_bytes(message(False, 9002))
    judged = judge(gw, ham_probe)
    assert judged["classifier"] < 0.1 and judged["symbols"]["CLASSIFIER_HAM"] < 0

    # The gateway started untrained; it picks the model up within its sync interval, no restart.
    def tagged():
        send(gw, message(True, 9100 + len(gw.maildir_files("bob@example.com"))))
        last = open(gw.maildir_files("bob@example.com")[-1], "rb").read()
        return b"X-Spam-Flag: YES" in last and b"CLASSIFIER_SPAM=" in last
    wait_for(tagged, timeout=20, what="the running gateway to classify with the new model")
    wait_for(lambda: any("classifier" in r for r in gw.audit()), timeout=10, what="the audit record (flushed within a second)")
    rec = [r for r in gw.audit() if "classifier" in r][-1]
    assert rec["classifier"] > 0.9 and rec["symbols"]["CLASSIFIER_SPAM"] > 5

    # A mistake taken back: forgetting the spam leaves too few to judge.
    out = learn(gw, "--forget", "--spam", str(spam))
    assert "forgot 40 message(s)" in out.stdout and "no verdicts until 20" in out.stdout
    assert "classifier" not in judge(gw, probe)


def test_release_is_learnt_as_ham_and_autolearn(gateway_factory, tmp_path):
    policy = POLICY + 'at data match header Subject ~ /hold me/ quarantine "held"\n' \
                      'at data match body ~ /GTUBE-LIKE/ score +20\n'
    gw = gateway_factory(policy=policy, config_extra=config_for(None, "autolearn = true\nautolearn_spam = 15\nautolearn_ham = 0"))
    send(gw, message(False, 1).replace(b"Subject: ", b"Subject: hold me "))
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout.splitlines()[0])
    out = gw.cli("quarantine", "release", held["id"])
    assert "learnt as ham" in out.stdout
    model = gw.dir / "classifier.model"
    assert model.exists()
    # Autolearn: clear spam (score 20 from a rule) and clear ham (score 0) are learnt by the gateway itself.
    send(gw, message(True, 2, extra="GTUBE-LIKE"))
    send(gw, message(False, 3))
    def counts():
        out = learn(gw, "--ham", str(tmp_path / "none"), check=False).stdout
        return "1 spam, 2 ham learnt" in out
    (tmp_path / "none").mkdir()
    wait_for(counts, timeout=20, what="autolearn to write the model")


def test_a_kill_during_learning_never_breaks_the_model(gateway_factory, tmp_path):
    gw = gateway_factory(policy=POLICY, config_extra=config_for(None))
    spam = write_messages(tmp_path / "spam", True, range(300))
    ham = write_messages(tmp_path / "ham", False, range(300))
    learn(gw, "--spam", str(spam), "--ham", str(ham))
    rng = random.Random(7)
    for i in range(8):
        more = write_messages(tmp_path / f"more{i}", i % 2 == 0, range(1000 + i * 300, 1300 + i * 300))
        p = subprocess.Popen([gw.binary, "learn", "--config", str(gw.config), "--spam" if i % 2 == 0 else "--ham", str(more)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        # Whatever the kill interrupted, the model reads back whole (the old one or the new one).
        out = learn(gw, "--ham", str(tmp_path / "ham"))
        assert "300 already learnt" in out.stdout
    assert "classifier" in judge(gw, tmp_path / "spam" / "1.eml")


def test_a_damaged_model_is_refused_with_its_name(gateway_factory, mxgate_bin, tmp_path):
    gw = gateway_factory(policy=POLICY, config_extra=config_for(None))
    (gw.dir / "classifier.model").write_bytes(b"MXGCLF01" + b"\0" * 60)
    gw.stop()
    out = subprocess.run([mxgate_bin, "serve", "--config", str(gw.config)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "classifier.model" in out.stderr and "checksum mismatch" in out.stderr
    bad = learn(gw, "--spam", str(write_messages(tmp_path / "s", True, range(2))), check=False)
    assert bad.returncode == 1 and "checksum mismatch" in bad.stderr
