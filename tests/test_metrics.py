"""The Prometheus endpoint ([metrics] listen): counters move with real
traffic and the text is valid exposition format."""
import re
import smtplib
import urllib.request

import pytest

from helpers import wait_for


def scrape(gw):
    m = wait_for(lambda: re.search(r"metrics on http://([\d.]+:\d+)/metrics", gw.log), 10, "the metrics address")
    with urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_follow_traffic(gateway_factory, sink):
    gw = gateway_factory(downstream=sink.address, relay_extra='tls = "none"',
                         policy='at data match header Subject ~ /reject-me/ reject "550 5.7.1 Not wanted"\n',
                         config_extra='[metrics]\nlisten = "127.0.0.1:0"\n')
    before = scrape(gw)
    assert value(before, "mxgate_connections_total") == 0
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: fine\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPDataError):
            s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: reject-me\r\n\r\nx\r\n")
    text = scrape(gw)
    assert value(text, "mxgate_connections_total") == 1
    assert value(text, "mxgate_transactions_total", '{verdict="accepted"}') == 1
    assert value(text, "mxgate_transactions_total", '{verdict="rejected"}') == 1
    assert value(text, "mxgate_relay_duration_seconds_count") == 1
    assert "# HELP mxgate_relay_duration_seconds" in text and "# TYPE mxgate_relay_duration_seconds histogram" in text
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(re.sub(r"/metrics$", "/other", re.search(r"(http://\S+/metrics)", gw.log).group(1)), timeout=10)
    assert e.value.code == 404


def test_queue_gauges(gateway_factory):
    gw = gateway_factory(downstream="127.0.0.1:1", relay_extra='mode = "queue"\ntls = "none"',
                         config_extra='[queue]\ndirectory = "queue"\nmin_backoff = "1h"\nmax_backoff = "2h"\n'
                                      '[metrics]\nlisten = "127.0.0.1:0"\n')
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as s:
        s.sendmail("a@sender.test", ["bob@example.com"], b"Subject: q\r\n\r\nx\r\n")
    wait_for(lambda: value(scrape(gw), "mxgate_queue_deliveries_total", '{outcome="deferred"}') == 1, 10, "a deferral")
    assert value(scrape(gw), "mxgate_queue_messages") == 1
