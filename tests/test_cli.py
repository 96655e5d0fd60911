"""The command line: check, log, and the serve lifecycle (SIGTERM, SIGHUP)."""
import json
import os
import pathlib
import signal
import smtplib
import subprocess
import time

from helpers import RawClient

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)


def test_check_accepts_the_shipped_config(mxgate_bin):
    out = run(mxgate_bin, "check", "--config", str(ROOT / "mxgate.toml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mxgate.toml: ok" in out.stdout
    assert "domains" in out.stdout


def test_check_reports_file_line_column(mxgate_bin, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nlisten = ["127.0.0.1:2525"]\nmax_conections = 5\n[relay]\ndomains = ["example.com"]\nmode = 3\n')
    out = run(mxgate_bin, "check", "--config", str(cfg))
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert f"{cfg}:3:1: unknown key 'max_conections' in [server]" in lines[0]
    assert f"{cfg}:6:8: [relay] mode must be a string, not an integer" in lines[1]


def test_check_reports_bad_certificate(mxgate_bin, tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    cfg = tmp_path / "m.toml"
    cfg.write_text('[relay]\ndomains = ["example.com"]\n[tls]\ncertificate = "cert.pem"\nkey = "key.pem"\n')
    out = run(mxgate_bin, "check", "--config", str(cfg))
    assert out.returncode == 1
    assert "cannot load TLS certificate" in out.stdout and str(tmp_path / "cert.pem") in out.stdout


def test_help_is_there_for_every_command(mxgate_bin):
    for cmd in ("serve", "check", "log"):
        out = run(mxgate_bin, cmd, "--help")
        assert out.returncode == 0
        assert "--config" in out.stdout


def traffic(gw):
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("alice@sender.test", ["bob@example.com"], b"Subject: 1\r\nMessage-ID: <one@x>\r\n\r\nx\r\n")
        try:
            s.sendmail("<>", ["eve@other.test"], b"Subject: 2\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused:
            pass
        s.sendmail("carol@partner.test", ["dave@example.com"], b"Subject: 3\r\n\r\nx\r\n")


def test_log_filters(gateway_factory):
    gw = gateway_factory()
    traffic(gw)
    gw.audit(3)
    out = gw.cli("log")
    assert out.stdout.splitlines()[0].split() == ["TIME", "VERDICT", "CLIENT", "FROM", "TO", "RULES", "REPLY"]
    assert len(out.stdout.splitlines()) == 4
    rejected = [json.loads(l) for l in gw.cli("log", "--verdict", "rejected", "--json").stdout.splitlines()]
    assert len(rejected) == 1 and rejected[0]["rcpt_to"] == ["eve@other.test"] and rejected[0]["mail_from"] == ""
    accepted = gw.cli("log", "--verdict", "accepted").stdout
    assert "bob@example.com" in accepted and "dave@example.com" in accepted and "eve@" not in accepted
    by_from = [json.loads(l) for l in gw.cli("log", "--from", "@partner.test", "--json").stdout.splitlines()]
    assert [r["mail_from"] for r in by_from] == ["carol@partner.test"]
    by_to = [json.loads(l) for l in gw.cli("log", "--to", "bob@example.com", "--json").stdout.splitlines()]
    assert len(by_to) == 1 and by_to[0]["message_id"] == "<one@x>"
    assert len(gw.cli("log", "--client-ip", "127.0.0.1", "--json").stdout.splitlines()) == 3
    assert gw.cli("log", "--client-ip", "192.0.2.1", "--json").stdout == ""
    assert len(gw.cli("log", "--since", "1h", "--json").stdout.splitlines()) == 3
    bad = gw.cli("log", "--verdict", "maybe", check=False)
    assert bad.returncode != 0 and "--verdict must be one of" in bad.stderr


def test_log_follow(gateway_factory):
    gw = gateway_factory()
    proc = subprocess.Popen([gw.binary, "log", "--config", str(gw.config), "--follow", "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        traffic(gw)
        lines = []
        end = time.time() + 10
        while len(lines) < 3 and time.time() < end:
            lines.append(proc.stdout.readline())
        assert len(lines) == 3
        assert json.loads(lines[0])["rcpt_to"] == ["bob@example.com"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_sigterm_finishes_open_transaction(gateway_factory):
    gw = gateway_factory()
    c = RawClient(gw.port).begin()
    c.cmd("RCPT TO:<late@example.com>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: late\r\n\r\nfirst half\r\n")
    idle = RawClient(gw.port)
    idle.reply()
    gw.signal(signal.SIGTERM)
    # The idle session is told to go away; new connections are refused.
    code, lines = idle.reply()
    assert code == 421 and "4.3.2" in lines[0]
    time.sleep(0.3)
    c.send(b"second half\r\n.\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("QUIT")[0] in (221, 421)
    assert gw.proc.wait(15) == 0
    assert len(gw.maildir_files("late@example.com")) == 1
    gw.wait_log("mxgate stopped")
    recs = [r for r in gw.audit(1) if r["event"] == "transaction"]
    assert recs and recs[-1]["rcpt_to"] == ["late@example.com"]


def test_sighup_reloads_and_survives_a_broken_config(gateway_factory):
    gw = gateway_factory()
    c = RawClient(gw.port).begin()
    assert c.cmd("RCPT TO:<x@new.test>")[0] == 554
    gw.write_config(domains=["example.com", "new.test"])
    gw.signal(signal.SIGHUP)
    gw.wait_log("reload: configuration", 10)
    # The open session keeps its policy; a new one sees the new domain.
    assert c.cmd("RCPT TO:<x@new.test>")[0] == 554
    c2 = RawClient(gw.port).begin()
    assert c2.cmd("RCPT TO:<x@new.test>")[0] == 250
    good = gw.config.read_text()
    gw.write_config(raw=good + "\n[relay]\nbroken = yes\n")
    gw.signal(signal.SIGHUP)
    gw.wait_log("reload failed, keeping the running configuration", 10)
    assert gw.proc.poll() is None
    c3 = RawClient(gw.port).begin()
    assert c3.cmd("RCPT TO:<x@new.test>")[0] == 250
    for cl in (c, c2, c3):
        cl.cmd("QUIT")


HELP_COMMANDS = [[], ["serve"], ["check"], ["test"], ["lookup"], ["log"], ["quarantine"], ["quarantine", "list"],
                 ["quarantine", "release"], ["quarantine", "expire"], ["queue"], ["queue", "list"], ["queue", "flush"]]


def test_help_reads_cleanly_at_80_columns(mxgate_bin):
    """Every help text fits 80 columns, and no prose line was broken early: a
    line followed by more of its paragraph could not have taken that
    paragraph's next word (greedy wrapping to 79 columns, as ArgumentParser does it)."""
    for args in HELP_COMMANDS:
        out = subprocess.run([mxgate_bin, *args, "--help"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "COLUMNS": "80"})
        assert out.returncode == 0, (args, out.stderr)
        lines = out.stdout.splitlines()
        assert lines, args
        for i, line in enumerate(lines):
            assert len(line) <= 80, f"mxgate {' '.join(args)} --help: line over 80 columns: {line!r}"
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            prose = line and not line.startswith(" ") and not line.endswith(":") and not line.isupper()
            if prose and nxt and not nxt.startswith(" "):
                word = nxt.split()[0]
                assert len(line) + 1 + len(word) >= 80, \
                    f"mxgate {' '.join(args)} --help: ragged line {line!r} (next: {nxt!r})"


def test_policy_rules_key_is_where_tables_are_found(mxgate_bin, tmp_path):
    """[policy] rules names the tables' folder: a relative table path in a
    policy is found there, wherever the folder is; the spelling earlier
    releases used (cidr:rules/x with the default rules = "rules") still works."""
    tables = tmp_path / "var" / "lib" / "tables"
    tables.mkdir(parents=True)
    (tables / "blocked.cidr").write_text("203.0.113.0/24 listed by ops\n")
    etc = tmp_path / "etc"
    (etc / "policies").mkdir(parents=True)
    (etc / "policies" / "in.policy").write_text(
        'table blocked cidr:blocked.cidr\nat connect match client <blocked> reject "554 5.7.1 Go away"\n')
    cfg = etc / "mxgate.toml"
    cfg.write_text(f'[relay]\ndomains = ["example.com"]\ndownstream = "maildir:mail"\n'
                   f'[policy]\nrules = "{tables}"\npolicies = "policies"\n')
    out = run(mxgate_bin, "check", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    eml = tmp_path / "m.eml"
    eml.write_text("From: a@sender.test\nSubject: hi\n\nhi\n")
    out = run(mxgate_bin, "test", "--config", str(cfg), "--client-ip", "203.0.113.7", "--from", "a@sender.test",
              "--to", "alice@example.com", str(eml))
    assert "verdict:    rejected at connect" in out.stdout, out.stdout + out.stderr
    assert f"{tables}/blocked.cidr:1" in out.stdout
    found = run(mxgate_bin, "lookup", "--config", str(cfg), "cidr:blocked.cidr", "203.0.113.9")
    assert found.returncode == 0 and "listed by ops" in found.stdout, found.stdout + found.stderr

    # The old spelling names a file under mxgate.toml's folder, not in the rules folder: an error, not a silent fallback.
    (etc / "rules").mkdir()
    (etc / "rules" / "blocked.cidr").write_text("198.51.100.0/24\n")
    (etc / "policies" / "in.policy").write_text('table blocked cidr:rules/blocked.cidr\nat connect match client <blocked> reject\n')
    out = run(mxgate_bin, "check", "--config", str(cfg))
    assert out.returncode == 1
    assert f"{etc}/policies/in.policy:1:20: cannot read table file {tables}/rules/blocked.cidr" in out.stdout, out.stdout

    # With the default rules = "rules", cidr:rules/blocked.cidr and cidr:blocked.cidr are the same file.
    cfg.write_text('[relay]\ndomains = ["example.com"]\ndownstream = "maildir:mail"\n')
    for spec in ["rules/blocked.cidr", "blocked.cidr"]:
        (etc / "policies" / "in.policy").write_text(f'table blocked cidr:{spec}\nat connect match client <blocked> reject\n')
        out = run(mxgate_bin, "test", "--config", str(cfg), "--client-ip", "198.51.100.7", "--from", "a@sender.test",
                  "--to", "alice@example.com", str(eml))
        assert "verdict:    rejected at connect" in out.stdout, (spec, out.stdout + out.stderr)
