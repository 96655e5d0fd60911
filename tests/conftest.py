"""Integration tests: mxgate as a real process against real SMTP peers
(swaks, smtplib, Postfix's smtp-sink, a private Postfix instance), all on
loopback. Every process a test starts is stopped by its fixture."""
import os
import pathlib
import subprocess

import pytest

from helpers import Mxgate, SmtpSink, Postfix, free_port  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _bin_path():
    env = os.environ.get("MXGATE_BIN")
    if env:
        return env
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True)
    return os.path.join(out.stdout.strip(), "mxgate")


@pytest.fixture(scope="session")
def mxgate_bin():
    path = _bin_path()
    assert os.path.exists(path), f"{path} missing: run `swift build` first"
    return path


@pytest.fixture
def sink(tmp_path):
    s = SmtpSink()
    s.start()
    yield s
    s.cleanup()


@pytest.fixture
def gateway_factory(mxgate_bin, tmp_path):
    started = []

    def make(**kwargs):
        g = Mxgate(mxgate_bin, tmp_path / f"gw{len(started)}", **kwargs)
        g.start()
        started.append(g)
        return g

    yield make
    for g in started:
        g.stop()


@pytest.fixture
def postfix_factory(tmp_path):
    started = []

    def make(name, **kwargs):
        p = Postfix(**kwargs)
        p.start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate made at test time with openssl."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=mx.test.example", "-addext", "subjectAltName=DNS:mx.test.example"],
                   check=True, capture_output=True)
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)
    return str(cert), str(key)


@pytest.fixture
def dns_factory(tmp_path):
    from helpers import DNSServer
    servers = []

    def make(zone):
        s = DNSServer(tmp_path / f"dns{len(servers)}", zone)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def clamd(tmp_path_factory):
    """A private clamd (Debian's clamav-daemon) with a signature database
    built here that detects EICAR: no public database can be fetched."""
    from helpers import Clamd
    c = Clamd(tmp_path_factory.mktemp("clamd"))
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def spamd():
    """A private SpamAssassin spamd (Debian's spamassassin), no network tests, no Bayes."""
    from scorer_daemons import Spamd
    d = Spamd()
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def rspamd():
    """A private rspamd (Debian's), its resolver pointed at a dead port, no Redis."""
    from scorer_daemons import Rspamd
    d = Rspamd()
    d.start()
    yield d
    d.stop()
