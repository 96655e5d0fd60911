"""The source tree stays readable: no file past 700 lines, and the session,
which every new check and delivery used to grow, under 500 (issue 15;
docs/architecture.md says where new code goes instead)."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def lines(p):
    return len(p.read_text().splitlines())


def test_no_source_file_over_700_lines():
    big = {str(p.relative_to(ROOT)): lines(p) for p in (ROOT / "Sources").rglob("*.swift") if lines(p) > 700}
    assert not big, big


def test_session_under_500_lines_and_names_no_analyzer_or_delivery():
    session = ROOT / "Sources" / "Gateway" / "Session.swift"
    assert lines(session) < 500
    text = session.read_text()
    for name in ["ClamdAnalyzer", "MIMEAnalyzer", "DNSListAnalyzer", "ProxyDelivery", "QueueDelivery",
                 "LocalMaildirDelivery", "MIMEWalker", "DownstreamPool", "Spool."]:
        assert name not in text, name
