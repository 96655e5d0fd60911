#!/usr/bin/env python3
"""Writes a synthetic mxgate audit log: RECORDS JSON lines spread over the
last HOURS hours, oldest first, shaped like a busy MX's (most mail accepted,
relay and blocklist refusals at RCPT, spam held or refused at DATA, a few
viruses and tempfails), each record with the fields the gateway writes.

    bench/make_audit_log.py --records 1000000 --hours 720 --out var/audit.log

Deterministic for a given --seed. Used by bench/console_index.sh and by the
console's screenshots (docs/console.md); no real mail is involved."""
import argparse
import json
import random
import time

RULES = {
    "relay": ("relay-gate", "554 5.7.1 <{rcpt}>: Relay access denied (domain not accepted here)", "recipient", "rejected"),
    "blocked": ("policies/inbound.policy:24 blocked-clients", "554 5.7.1 Access denied: client {ip} is blocked", "connection", "rejected"),
    "spam": ("policies/spam.policy:31 spam-reject", "550 5.7.1 Message refused as spam (score {score})", "transaction", "rejected"),
    "held": ("policies/spam.policy:27 spam-quarantine", "250 2.0.0 Ok: quarantined", "transaction", "quarantined"),
    "virus": ("clamav", "554 5.7.1 Virus found: {virus}", "transaction", "rejected"),
    "dmarc": ("policies/inbound.policy:47 dmarc-reject", "550 5.7.1 DMARC policy of {domain} says reject", "transaction", "rejected"),
    "limit": ("limit messages-per-client", "451 4.7.1 Too many messages from {ip}, slow down", "transaction", "tempfailed"),
    "ok": (None, "250 2.0.0 Ok: queued as {qid}", "transaction", "accepted"),
}
WEIGHTS = [("ok", 62), ("relay", 12), ("blocked", 6), ("spam", 7), ("held", 6), ("dmarc", 3), ("limit", 3), ("virus", 1)]
SPAM_DOMAINS = ["bulk-offers.example", "cheap-meds.example", "promo-blast.example", "lottery-win.example", "crypto-gain.example"]
GOOD_DOMAINS = ["partner.example", "supplier.example", "bank.example", "news.example", "lists.example", "mail.example"]
SYMBOLS = ["BAYES_SPAM", "URL_SHORTENER", "FROM_DISPLAY_MISMATCH", "HTML_ONLY", "DATE_IN_FUTURE", "PHISH_LINK_MISMATCH"]


def record(rng, t, n, kind):
    rule, reply, event, verdict = RULES[kind]
    spammy = kind in ("spam", "held", "relay", "blocked", "virus", "dmarc", "limit")
    domain = rng.choice(SPAM_DOMAINS if spammy else GOOD_DOMAINS)
    net = rng.choice([(198, 51, 100), (203, 0, 113), (192, 0, 2)]) if spammy else (10, rng.randrange(256), rng.randrange(256))
    ip = "%d.%d.%d.%d" % (*net, rng.randrange(1, 255))
    rcpt = f"user{rng.randrange(500)}@{'nowhere.example' if kind == 'relay' else 'example.com'}"
    score = round(rng.uniform(8, 25), 2) if kind in ("spam", "held") else round(rng.uniform(-2, 4), 2)
    sender = f"{rng.choice(['info', 'news', 'billing', 'noreply', 'sales'])}{rng.randrange(100)}@{domain}"
    session = "%08X%04X" % (int(t), n % 0x10000)
    r = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000),
        "event": event, "session": session, "client_ip": ip, "client_port": rng.randrange(1024, 65535),
        "helo": f"mx{rng.randrange(9)}.{domain}", "tls": rng.random() < 0.6,
        "mail_from": None if event == "connection" else sender,
        "rcpt_to": [] if event == "connection" else [rcpt],
        "message_id": f"<{n}.{rng.randrange(10**9)}@{domain}>" if event == "transaction" else None,
        "size": rng.randrange(2000, 80000) if event == "transaction" else None,
        "verdict": verdict,
        "reply": reply.format(rcpt=rcpt, ip=ip, score=score, virus="Eicar-Signature", domain=domain, qid="%X" % n),
        "rules": [rule] if rule else [],
        "spam_score": score if event == "transaction" else None,
        "virus": "Eicar-Signature" if kind == "virus" else None,
        "relay": "mail.internal.example:25 250 2.0.0 Ok" if kind == "ok" else None,
    }
    if rule and rule.startswith("policies/"):
        r["because"] = {rule: f"spam score {score} >= 8" if kind in ("spam", "held") else f"client {ip} in table blocked-clients"}
    if event == "transaction":
        r["symbols"] = {s: round(rng.uniform(0.5, 4), 2) for s in rng.sample(SYMBOLS, 2 if spammy else 0)}
        if not r["symbols"]:
            del r["symbols"]
        r["auth"] = {"spf": {"result": "fail" if kind == "dmarc" else rng.choice(["pass", "pass", "softfail", "none"]), "domain": domain},
                     "dkim": [{"result": "pass", "domain": domain, "selector": "s1"}] if not spammy else [],
                     "dmarc": {"result": "fail" if kind == "dmarc" else "pass", "domain": domain, "policy": "reject",
                               "disposition": "reject" if kind == "dmarc" else "none"}}
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--hours", type=float, default=720)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    kinds = [k for k, w in WEIGHTS for _ in range(w)]
    end = time.time()
    start = end - args.hours * 3600
    step = (end - start) / max(args.records, 1)
    with open(args.out, "w") as out:
        for n in range(args.records):
            t = start + n * step
            kind = rng.choice(kinds)
            out.write(json.dumps(record(rng, t, n, kind), separators=(",", ":"), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
