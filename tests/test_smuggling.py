"""SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764/5/6): every
published end-of-data look-alike, pipelined in one write with a smuggled
second transaction behind it, sent through mxgate to a downstream that is
itself lenient (it takes a bare LF as a line end, so <LF>.<LF> ends its DATA).
Whatever mxgate does with the text, the downstream must see one transaction
at most, never the smuggled MAIL FROM, and only CRLF line ends."""
import time

import pytest

from helpers import RawClient, WireRecorder, wait_for

# The end-of-data look-alikes: bare LF, bare CR, NUL and CR CR LF around the dot.
LOOKALIKES = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "lf-dot-cr": b"\n.\r",
    "cr-dot-lf": b"\r.\n",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
    "crlf-dot-nul-crlf": b"\r\n.\x00\r\n",
    "crcrlf-dot-crcrlf": b"\r\r\n.\r\r\n",
    "crlf-dot-crcrlf": b"\r\n.\r\r\n",
    # (CR CR LF . CR LF is not a look-alike: it contains a real CRLF.CRLF,
    # and every server ends the text there.)
    "cr-dot-crcrlf": b"\r.\r\r\n",
    "lf-dot-crcrlf": b"\n.\r\r\n",
}

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")

MODES = {
    "proxy-reject": ("", ""),
    "proxy-normalize": ("", 'bare_newline = "normalize"'),
    "queue-normalize": ('mode = "queue"\n', 'bare_newline = "normalize"'),
    "queue-reject": ('mode = "queue"\n', ""),
}


@pytest.fixture(scope="module")
def lenient():
    w = WireRecorder(lenient_lf=True)
    yield w
    w.stop()


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(LOOKALIKES))
def test_smuggling_never_reaches_a_lenient_downstream(gateway_factory, lenient, mode, name):
    relay_mode, limits = MODES[mode]
    gw = gateway_factory(downstream=lenient.address, relay_extra=f'tls = "none"\n{relay_mode}', limits=limits,
                         config_extra='[queue]\ndirectory = "queue"\nmin_backoff = "1s"\nmax_backoff = "1s"\n')
    before_tx, before_cmds = len(lenient.transactions), len(lenient.commands)
    c = RawClient(gw.port)
    assert c.reply()[0] == 220
    # Everything in one write: commands, text, look-alike, smuggled transaction, real end.
    c.send(b"EHLO client.test\r\nMAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
           b"From: alice@sender.test\r\nSubject: innocent\r\n\r\nhello" + LOOKALIKES[name] + SMUGGLED + b"\r\n.\r\nQUIT\r\n")
    codes = []
    while not codes or codes[-1] != 221:
        try:
            codes.append(c.reply()[0])
        except ConnectionError:
            break
    # EHLO, MAIL, RCPT, DATA (354), the one end of data, QUIT: nothing more.
    assert codes[:4] == [250, 250, 250, 354] and codes[-1] == 221 and len(codes) == 6, codes
    final = codes[4]
    assert final in (250, 550), codes
    if final == 250:
        wait_for(lambda: len(lenient.transactions) > before_tx, 20, "the message at the downstream")
    time.sleep(0.5)
    new_tx = lenient.transactions[before_tx:]
    new_cmds = b"".join(lenient.commands[before_cmds:])
    assert b"evil@attacker.test" not in new_cmds and b"victim@example.com" not in new_cmds
    assert len(new_tx) == (1 if final == 250 else 0)
    for data in new_tx:
        # Only CRLF line ends leave mxgate, and the smuggled text stays text.
        assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
        assert data.endswith(b"smuggled body\r\n\r\n.\r\n") or data.endswith(b"smuggled body\r\n.\r\n")
        assert b"\r\n.\r\n" not in data[:-5]
