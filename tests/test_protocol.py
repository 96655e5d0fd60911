"""RFC 5321 server behaviour over a real socket: replies, sequencing,
pipelining, limits, BDAT, and garbage. Dialogues are kept as data."""
import socket
import time

import pytest

from helpers import RawClient, wait_for

# (client line, expected reply code) — one SMTP dialogue per case.
DIALOGUES = {
    "basic": [("EHLO c.test", 250), ("MAIL FROM:<a@sender.test>", 250), ("RCPT TO:<b@example.com>", 250),
              ("RSET", 250), ("NOOP", 250), ("VRFY b", 252), ("EXPN list", 502), ("HELP", 214), ("QUIT", 221)],
    "sequence": [("MAIL FROM:<a@sender.test>", 503), ("RCPT TO:<b@example.com>", 503), ("DATA", 503),
                 ("HELO c.test", 250), ("RCPT TO:<b@example.com>", 503), ("MAIL FROM:<a@sender.test>", 250),
                 ("MAIL FROM:<a@sender.test>", 503), ("DATA", 554), ("QUIT", 221)],
    "syntax": [("EHLO", 501), ("EHLO c.test", 250), ("MAIL FROM:a@sender.test", 501), ("MAIL FROM:<a@b..c>", 501),
               ("MAIL FROM:<a@sender.test> BOGUS=1", 555), ("FOO", 500), ("RCPT TO:<b@example.com>", 503),
               ("MAIL FROM:<> SIZE=100", 250), ("RCPT TO:<b@example.com> NOTIFY=NEVER", 250), ("QUIT", 221)],
    "size": [("EHLO c.test", 250), ("MAIL FROM:<a@sender.test> SIZE=999999999", 552), ("QUIT", 221)],
    "postmaster": [("EHLO c.test", 250), ("MAIL FROM:<a@sender.test>", 250), ("RCPT TO:<Postmaster>", 250), ("QUIT", 221)],
    "utf8": [("EHLO c.test", 250), ("MAIL FROM:<jos\u00e9@sender.test>", 553),
             ("MAIL FROM:<jos\u00e9@sender.test> SMTPUTF8", 250), ("RCPT TO:<\u00fc@example.com>", 250), ("QUIT", 221)],
}

# Open-relay probes (nmap smtp-open-relay style) aimed at an accepted domain: all 554 or 501.
RELAY_TRICKS = [
    "<victim@other.test>", "<victim%other.test@example.com>", "<other.test!victim@example.com>",
    "<@example.com:victim@other.test>", '<"victim@other.test">', '<"victim@other.test"@example.com>',
    '<"victim%other.test"@example.com>', "<victim@[127.0.0.1]>", "<victim@example.com.>",
    "<victim@EXAMPLE.COM.other.test>", "<victim@other.test@example.com>",
    # The rest of nmap's smtp-open-relay list (with [127.0.0.1] as the gateway's own address).
    '<"victim%other.test">', "<victim%other.test@[127.0.0.1]>", '<"victim@other.test"@[127.0.0.1]>',
    "<victim@other.test@[127.0.0.1]>", "<@[127.0.0.1]:victim@other.test>", "<other.test!victim>",
    "<other.test!victim@[127.0.0.1]>", "<other.test!victim@example.com>",
    # Case, trailing dots, look-alike domains, encoded tricks.
    "<VICTIM@OTHER.TEST>", "<victim@other.test.>", "<victim@example.com.other.test>", "<victim@sub.example.com>",
    "<victim@example.co>", "<victim@example.com@>", "<victim%40other.test@example.com>",
    "<victim@[IPv6:::1]>", "<@example.com,@other.test:victim@other.test>",
]


@pytest.mark.parametrize("name", sorted(DIALOGUES))
def test_dialogue(gateway_factory, name):
    gw = gateway_factory()
    c = RawClient(gw.port)
    assert c.reply()[0] == 220
    for line, code in DIALOGUES[name]:
        got, lines = c.cmd(line)
        assert got == code, f"{line!r}: {lines}"


def test_relay_tricks_refused(gateway_factory):
    gw = gateway_factory()
    for i in range(0, len(RELAY_TRICKS), 10):   # a fresh session before the error limit
        c = RawClient(gw.port).begin()
        for trick in RELAY_TRICKS[i:i + 10]:
            code, lines = c.cmd(f"RCPT TO:{trick}")
            assert code in (501, 554), f"{trick}: {lines}"
            if code == 554:
                assert "5.7.1" in lines[0] and "Relay access denied" in lines[0]
        assert c.cmd("DATA")[0] == 554
        c.cmd("QUIT")


def test_pipelined_batch_answered_in_order(gateway_factory):
    gw = gateway_factory()
    c = RawClient(gw.port)
    c.reply()
    c.send("EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@other.test>\r\n"
           "RCPT TO:<z@example.com>\r\nDATA\r\n")
    codes = [c.reply()[0] for _ in range(6)]
    assert codes == [250, 250, 250, 554, 250, 354]
    c.send("Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<b@sender.test>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n")
    assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    c.send("Subject: p2\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert [c.reply()[0] for _ in range(2)] == [250, 221]
    assert len(gw.maildir_files("x@example.com")) == 2
    assert len(gw.maildir_files("z@example.com")) == 1


def test_bdat_chunks(gateway_factory):
    gw = gateway_factory()
    c = RawClient(gw.port).begin()
    c.cmd("RCPT TO:<bdat@example.com>")
    part1 = b"Subject: bdat\r\n\r\n.line with dot\r\n"
    part2 = b"second chunk\r\n"
    c.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert c.reply()[0] == 250
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, lines = c.reply()
    assert code == 250, lines
    raw = open(gw.maildir_files("bdat@example.com")[0], "rb").read()
    assert raw.endswith(b"Subject: bdat\r\n\r\n.line with dot\r\nsecond chunk\r\n")
    # BDAT without a transaction: the chunk is still consumed, then 503.
    c.send(b"BDAT 5 LAST\r\nhello")
    assert c.reply()[0] == 503
    assert c.cmd("NOOP")[0] == 250


def test_message_over_size_limit(gateway_factory):
    gw = gateway_factory(limits='message_size = 2000')
    c = RawClient(gw.port).begin()
    c.cmd("RCPT TO:<big@example.com>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 200 + b".\r\n")
    code, lines = c.reply()
    assert code == 552 and "5.3.4" in lines[0]
    assert c.cmd("NOOP")[0] == 250
    assert gw.maildir_files("big@example.com") == []
    rec = [r for r in gw.audit(1) if r["event"] == "transaction"][-1]
    assert rec["verdict"] == "rejected" and rec["size"] > 2000 and rec["rules"] == ["limits"]


def test_overlong_command_line_and_nul(gateway_factory):
    gw = gateway_factory()
    c = RawClient(gw.port)
    c.reply()
    c.send("NOOP " + "x" * 100000 + "\r\n")
    code, lines = c.reply()
    assert code == 500 and "too long" in lines[0]
    c.send(b"NOOP\x00\r\n")
    assert c.reply()[0] == 500
    assert c.cmd("NOOP")[0] == 250


def test_too_many_errors_disconnects(gateway_factory):
    gw = gateway_factory(limits="errors = 3")
    c = RawClient(gw.port)
    c.reply()
    assert c.cmd("FOO")[0] == 500
    assert c.cmd("BAR")[0] == 500
    assert c.cmd("BAZ")[0] == 421
    assert c.closed()


def test_command_timeout(gateway_factory):
    gw = gateway_factory(limits='command_timeout = 1')
    c = RawClient(gw.port)
    c.reply()
    start = time.time()
    code, lines = c.reply()
    assert code == 421 and "4.4.2" in lines[0]
    assert time.time() - start < 5
    assert c.closed()
    rec = wait_for(lambda: [r for r in gw.audit(0) if r["event"] == "connection"], 5, "timeout audit record")
    assert rec[-1]["verdict"] == "tempfailed"


def test_max_connections(gateway_factory):
    gw = gateway_factory(extra="max_connections = 2")
    a, b = RawClient(gw.port), RawClient(gw.port)
    assert a.reply()[0] == 220 and b.reply()[0] == 220
    c = RawClient(gw.port)
    code, lines = c.reply()
    assert code == 421 and "4.7.0" in lines[0]
    assert c.closed()
    a.cmd("QUIT")
    assert a.closed()

    # The freed slot is counted when the gateway has closed its side, a moment
    # after the client sees the close.
    def admitted():
        d = RawClient(gw.port)
        code = d.reply()[0]
        d.close()
        return code == 220
    wait_for(admitted, 10, "a slot after QUIT")


def test_client_vanishing_mid_data_loses_nothing_claimed(gateway_factory):
    gw = gateway_factory()
    c = RawClient(gw.port).begin()
    c.cmd("RCPT TO:<gone@example.com>")
    c.cmd("DATA")
    c.send(b"Subject: half\r\n\r\nhalf a message")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    time.sleep(0.5)
    assert gw.maildir_files("gone@example.com") == []
    # and the gateway goes on
    c2 = RawClient(gw.port)
    assert c2.reply()[0] == 220
