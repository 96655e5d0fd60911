"""A small authoritative DNS server for the tests (dnslib), on loopback UDP
and TCP at a port the kernel picks. Zone data comes as JSON:
  {"records": [["1.0.0.127.in-addr.arpa", "PTR", "host.test.example"], ...],
   "servfail": ["name", ...], "silent": ["name", ...], "log": "PATH"}
Names not listed get NXDOMAIN. With "log", each question is appended to
PATH as "NAME TYPE" (what reached the server, not what a cache answered).
Prints "port N" once listening."""
import json
import socket
import sys
import threading

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, zone):
        self.records = [(n.lower().rstrip("."), t, v) for n, t, v in zone.get("records", [])]
        self.servfail = {n.lower().rstrip(".") for n in zone.get("servfail", [])}
        self.silent = {n.lower().rstrip(".") for n in zone.get("silent", [])}
        self.log = zone.get("log")
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        if self.log:
            with self.lock, open(self.log, "a") as f:
                f.write(f"{qname} {qtype}\n")
        if qname in self.silent:
            return None
        if qname in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        found = [(n, t, v) for n, t, v in self.records if n == qname]
        for n, t, v in found:
            if t == qtype:
                reply.add_answer(*RR.fromZone(f"{n}. 60 IN {t} {v}"))
        if not found:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class QuietLogger:
    def __getattr__(self, name):
        return lambda *a, **k: None


def main():
    zone = json.loads(open(sys.argv[1]).read())
    resolver = ZoneResolver(zone)
    # Find a port free for both UDP and TCP.
    for _ in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        try:
            udp = DNSServer(resolver, port=port, address="127.0.0.1", logger=QuietLogger())
            tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True, logger=QuietLogger())
            break
        except OSError:
            continue
    udp.start_thread()
    tcp.start_thread()
    print(f"port {port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
