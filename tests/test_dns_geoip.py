"""Reverse DNS (PTR and forward-confirmed) through libunbound against a real
DNS server on loopback, and GeoIP through libmaxminddb against .mmdb files
written at test time and the real GeoLite2 database from maxminddb-geolite2."""
import json
import subprocess

import pytest

from helpers import RawClient

ZONE = {
    "records": [
        # 127.0.0.10: PTR and A agree (forward-confirmed)
        ["10.0.0.127.in-addr.arpa", "PTR", "good.test.example."],
        ["good.test.example", "A", "127.0.0.10"],
        # 127.0.0.11: the PTR name points elsewhere (not confirmed)
        ["11.0.0.127.in-addr.arpa", "PTR", "liar.dyn.test.example."],
        ["liar.dyn.test.example", "A", "192.0.2.1"],
    ],
    "servfail": ["12.0.0.127.in-addr.arpa"],
    "silent": ["13.0.0.127.in-addr.arpa"],
    # 127.0.0.14: no PTR at all (NXDOMAIN)
}

POLICY = """
at connect match client-name good.test.example and fcrdns reject "554 5.7.1 Hello {client_name}"
at connect match ptr /\\.dyn\\./ and not fcrdns reject "554 5.7.1 Unconfirmed PTR for {client_ip}"
at connect match client-name unknown and client 127.0.0.14 reject "554 5.7.1 No PTR for {client_ip}"
"""


@pytest.fixture
def dns_gateway(gateway_factory, dns_factory):
    dns = dns_factory(ZONE)
    return gateway_factory(policy=POLICY, config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\ntimeout = "1s"\n')


@pytest.mark.parametrize("source,code,text", [
    ("127.0.0.10", 554, "Hello good.test.example"),
    ("127.0.0.11", 554, "Unconfirmed PTR for 127.0.0.11"),
    ("127.0.0.14", 554, "No PTR for 127.0.0.14"),
    ("127.0.0.12", 451, "Temporary lookup failure"),   # SERVFAIL: tempfail, never accept
    ("127.0.0.13", 451, "Temporary lookup failure"),   # silent server: timeout
])
def test_reverse_dns(dns_gateway, source, code, text):
    c = RawClient(dns_gateway.port, source=source)
    got, lines = c.reply()
    assert got == code and text in lines[0], lines
    rec = [r for r in dns_gateway.audit(1) if r["client_ip"] == source][-1]
    assert rec["event"] == "connection"
    assert rec["verdict"] == ("rejected" if code == 554 else "tempfailed")


def test_client_with_confirmed_other_name_passes(gateway_factory, dns_factory):
    dns = dns_factory({"records": [["20.0.0.127.in-addr.arpa", "PTR", "mail.partner.example."],
                                   ["mail.partner.example", "A", "127.0.0.20"]]})
    gw = gateway_factory(policy="at connect match client-name unknown reject\nat connect match fcrdns score +0\n",
                         config_extra=f'[dns]\nservers = ["127.0.0.1:{dns.port}"]\n')
    c = RawClient(gw.port, source="127.0.0.20")
    assert c.reply()[0] == 220
    c.cmd("QUIT")


def write_country_db(path):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-Country", languages=["en"],
                   description={"en": "mxgate test country db"})
    for cidrs, cc in ((["127.0.0.30/32"], "KP"), (["127.0.0.31/32", "198.51.100.0/24"], "DE"), (["2001:db8::/32"], "NL")):
        w.insert_network(IPSet(cidrs), {"country": {"iso_code": cc}})
    w.to_db_file(str(path))


def write_asn_db(path):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-ASN", languages=["en"],
                   description={"en": "mxgate test asn db"})
    w.insert_network(IPSet(["127.0.0.32/32"]), {"autonomous_system_number": 64512, "autonomous_system_organization": "Test AS"})
    w.to_db_file(str(path))


def test_geoip_country_and_asn_from_fixture_databases(gateway_factory, tmp_path):
    write_country_db(tmp_path / "country.mmdb")
    write_asn_db(tmp_path / "asn.mmdb")
    gw = gateway_factory(policy="""
at connect match country KP reject "554 5.7.1 Not accepted from {country}"
at connect match asn 64512 reject "554 5.7.1 Not accepted from {asn}"
""", config_extra=f'[geoip]\ndatabase = "{tmp_path}/country.mmdb"\nasn_database = "{tmp_path}/asn.mmdb"\n')
    kp = RawClient(gw.port, source="127.0.0.30")
    code, lines = kp.reply()
    assert code == 554 and "Not accepted from KP" in lines[0]
    asn = RawClient(gw.port, source="127.0.0.32")
    code, lines = asn.reply()
    assert code == 554 and "Not accepted from AS64512" in lines[0]
    de = RawClient(gw.port, source="127.0.0.31")
    assert de.reply()[0] == 220
    de.cmd("QUIT")


def test_geoip_without_database_is_a_check_error(gateway_factory, mxgate_bin):
    gw = gateway_factory()
    gw.write_policy("at connect match country KP reject\n")
    out = subprocess.run([mxgate_bin, "check", "--config", str(gw.config)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{gw.dir}/policies/test.policy:1:1: country and asn need a GeoIP database" in out.stdout


def geolite2_path():
    """maxminddb-geolite2 ships a real GeoLite2-City.mmdb (2018) in _maxminddb_geolite2."""
    import importlib.util
    import os
    spec = importlib.util.find_spec("_maxminddb_geolite2")
    return os.path.join(os.path.dirname(spec.origin), "GeoLite2-City.mmdb")


@pytest.mark.parametrize("ip,country", [("8.8.8.8", "US"), ("81.2.69.142", "GB"), ("2a02:908::1", "DE")])
def test_real_geolite2_database(gateway_factory, mxgate_bin, tmp_path, ip, country):
    import maxminddb
    db = geolite2_path()
    # The expected country comes from MaxMind's own Python reader on the same file.
    with maxminddb.open_database(db) as reader:
        assert reader.get(ip)["country"]["iso_code"] == country
    gw = gateway_factory(policy=f'at connect match country {country} reject "554 5.7.1 {{country}} blocked"\n',
                         config_extra=f'[geoip]\ndatabase = "{db}"\n')
    eml = tmp_path / "m.eml"
    eml.write_text("From: a@b.example\nSubject: s\n\nx\n")
    out = subprocess.run([mxgate_bin, "test", "--config", str(gw.config), "--client-ip", ip, "--from", "a@b.example",
                          "--to", "bob@example.com", "--json", str(eml)], capture_output=True, text=True)
    rec = json.loads(out.stdout)
    assert rec["verdict"] == "rejected" and rec["reply"] == f"554 5.7.1 {country} blocked"
