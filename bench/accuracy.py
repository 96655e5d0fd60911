#!/usr/bin/env python3
"""Accuracy of mxgate (untrained and trained) and, side by side, SpamAssassin
and rspamd, on a labelled corpus (a LABELS.tsv of path, label, source).

Messages are split in two by a hash of their path: one half trains, the
other is measured. A message counts as flagged when it is refused,
quarantined or tagged (mxgate), at or over required_score (spamd), or has
an action from "add header" up (rspamd). 1-ROCA is computed from each
engine's score. Writes a table on stdout and the ROC curves as a PNG.

Usage: accuracy.py CORPUS_DIR --mxgate BIN [--spamd HOST:PORT] [--rspamd HOST:PORT]
                   [--png FILE] [--json FILE] [--limit N] [--passes N] [--salt S] [--folds K --fold I]
"""
import argparse, concurrent.futures as cf, hashlib, http.client, json, os, socket, subprocess, sys, tempfile

def split(corpus, limit, salt="mxgate-accuracy:", folds=2, fold=1):
    """Train on the messages whose hash is not `fold` (mod `folds`), test on those that are: with the
    default, halves; with --folds 4, three quarters train, closer to training on a whole corpus."""
    train, test = [], []
    with open(os.path.join(corpus, "LABELS.tsv")) as f:
        next(f)
        for line in f:
            path, label = line.rstrip("\n").split("\t")[:2]
            full = os.path.join(corpus, path)
            if not os.path.isfile(full):
                continue
            (test if hashlib.sha256(salt.encode() + path.encode()).digest()[0] % folds == fold else train).append((full, label))
    if limit:
        train, test = train[::max(1, len(train) // limit)], test[::max(1, len(test) // limit)]
    return train, test

def write_config(d, model):
    shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    conf = os.path.join(d, "mxgate.toml")
    with open(os.path.join(shipped, "mxgate.toml")) as f:
        text = f.read()
    text = text.replace('path = "var/audit.log"', f'path = "{d}/audit.log"')
    text = text.replace('rules = "rules"', f'rules = "{shipped}/rules"').replace('policies = "policies"', f'policies = "{shipped}/policies"')
    text = text.replace('database = "rules/clamav"', f'database = "{shipped}/rules/clamav"')
    import re
    text = re.sub(r'(?ms)^\[classifier\].*?(?=^\[|\Z)', '', text)
    text += f'\n[classifier]\nmodel = "{model}"\n'
    with open(conf, "w") as f:
        f.write(text)
    return conf

def tag_rules():
    """The names (FILE:LINE) of the shipped rules whose action is tag: a tagged message is flagged."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "policies")
    names = set()
    for f in os.listdir(root):
        for i, line in enumerate(open(os.path.join(root, f)), 1):
            code = line.split("#")[0].split()
            if code and code[-1] == "tag":
                names.add(f"policies/{f}:{i}")
    return names

def mxgate_scores(bin_, conf, msgs):
    out = []
    tags = tag_rules()
    for i in range(0, len(msgs), 200):
        chunk = [p for p, _ in msgs[i:i + 200]]
        r = subprocess.run([bin_, "test", "--config", conf, "--client-ip", "192.0.2.10", "--helo", "mail.example.org",
                            "--from", "sender@example.org", "--to", "user@example.com", "--json", *chunk],
                           capture_output=True, text=True)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if len(lines) != len(chunk):
            open("/tmp/mxgate-test-stderr.txt", "w").write(r.stderr)
            sys.exit(f"mxgate test gave {len(lines)} records for {len(chunk)} messages: {r.stderr[-2000:]}")
        for l in lines:
            rec = json.loads(l)
            flagged = rec["verdict"] != "accepted" or any(r.endswith(t) for r in rec.get("rules", []) for t in tags)
            score = rec.get("spam_score") or 0.0
            if rec["verdict"] in ("rejected", "quarantined"):
                score = max(score, 1000.0 if rec["verdict"] == "rejected" else 500.0)
            out.append((score, flagged, rec))
    return out

def spamd_score(addr, path):
    """Through Debian's spamc (-c: "score/required"), which bounds every exchange (-t)."""
    host, port = addr.split(":")
    with open(path, "rb") as f:
        r = subprocess.run(["spamc", "-d", host, "-p", port, "-c", "-t", "60", "-x"], stdin=f, capture_output=True, timeout=120)
    score, need = r.stdout.decode().strip().split("/")
    return float(score), float(score) >= float(need)


def rspamd_score(addr, path):
    host, port = addr.split(":")
    h = http.client.HTTPConnection(host, int(port), timeout=120)
    # No envelope headers: the corpus has no real client address or HELO to give, and invented ones
    # cost rspamd points its DNS cannot clear offline; like spamd, it judges the message alone.
    h.request("POST", "/checkv2", body=open(path, "rb").read())
    r = json.loads(h.getresponse().read())
    h.close()
    return r.get("score", 0.0), r.get("action") in ("add header", "rewrite subject", "reject")

def roca(scored):
    """1 - area under the ROC curve (spam+phish positive), ties counted half."""
    pos = [s for s, y in scored if y]
    neg = [s for s, y in scored if not y]
    if not pos or not neg:
        return float("nan")
    allv = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    # Mann-Whitney U with average ranks
    ranks, i = {}, 0
    rank_sum = 0.0
    n = len(allv)
    while i < n:
        j = i
        while j < n and allv[j][0] == allv[i][0]:
            j += 1
        avg = (i + j + 1) / 2
        for k in range(i, j):
            if allv[k][1]:
                rank_sum += avg
        i = j
    u = rank_sum - len(pos) * (len(pos) + 1) / 2
    return 1 - u / (len(pos) * len(neg))

def summarize(name, labels, results):
    t = {"spam": [0, 0], "phish": [0, 0], "ham": [0, 0]}
    for (score, flagged), label in zip(results, labels):
        t[label][0] += flagged
        t[label][1] += 1
    pct = {k: 100.0 * v[0] / v[1] if v[1] else float("nan") for k, v in t.items()}
    r = roca([(s, l != "ham") for (s, _), l in zip(results, labels)])
    return {"engine": name, "spam": pct["spam"], "phish": pct["phish"], "ham": pct["ham"], "roca_pct": 100 * r,
            "n": {k: v[1] for k, v in t.items()}}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--spamd")
    ap.add_argument("--rspamd")
    ap.add_argument("--png")
    ap.add_argument("--json")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--salt", default="mxgate-accuracy:", help="another split, to see how much a figure owes to this one")
    ap.add_argument("--folds", type=int, default=2, help="split in this many parts by hash; one is the test set")
    ap.add_argument("--fold", type=int, default=1, help="which part (0 to folds-1) is the test set")
    ap.add_argument("--dump", help="write each test message's label, scores and path (JSON lines)")
    a = ap.parse_args()
    train, test = split(a.corpus, a.limit, a.salt, a.folds, a.fold)
    labels = [l for _, l in test]
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "classifier.model")
        conf = write_config(d, model)
        untrained = mxgate_scores(a.mxgate, conf, test)
        rows.append(summarize("mxgate, shipped rules, no training", labels, [(s, f) for s, f, _ in untrained]))
        curves[rows[-1]["engine"]] = ([(s, f) for s, f, _ in untrained], labels)
        spam = [p for p, l in train if l != "ham"]
        ham = [p for p, l in train if l == "ham"]
        r = subprocess.run([a.mxgate, "learn", "--config", conf, "--passes", str(a.passes), "--spam", *spam, "--ham", *ham],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("mxgate learn failed: " + r.stderr)
        print("# " + r.stdout.strip().replace("\n", "; "), file=sys.stderr)
        trained = mxgate_scores(a.mxgate, conf, test)
        res = [(s, f) for s, f, _ in trained]
        rows.append(summarize(f"mxgate, trained on {len(train)}", labels, res))
        curves[rows[-1]["engine"]] = (res, labels)
        probs = [((rec.get("classifier") or 0.5), rec.get("classifier", 0.5) >= 0.5) for _, _, rec in trained]
        rows.append(summarize("mxgate classifier alone (p >= 0.5)", labels, probs))
        if a.dump:
            with open(a.dump, "w") as f:
                for (p, l), (s0, _, _), (s1, _, rec) in zip(test, untrained, trained):
                    f.write(json.dumps({"path": p, "label": l, "untrained": s0, "trained": s1, "p": rec.get("classifier"),
                                        "symbols": rec.get("symbols", {})}) + "\n")
    for name, addr, fn in (("SpamAssassin (spamd)", a.spamd, spamd_score), ("rspamd", a.rspamd, rspamd_score)):
        if not addr:
            continue
        errors = []
        def ask(p):
            try:
                return fn(addr, p[0])
            except Exception as e:  # counted as not flagged, and reported
                errors.append(f"{p[0]}: {e}")
                return (0.0, False)
        with cf.ThreadPoolExecutor(a.workers) as ex:
            res = list(ex.map(ask, test))
        if errors:
            print(f"# {name}: {len(errors)} message(s) not scored, e.g. {errors[0]}", file=sys.stderr)
        rows.append(summarize(name, labels, res))
        curves[name] = (res, labels)
    n = rows[0]["n"]
    print(f"test set: {n['spam']} spam, {n['phish']} phishing, {n['ham']} ham (trained on the other {len(train)})")
    print("| engine | spam flagged | phishing flagged | ham flagged | 1-ROCA (%) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['spam']:.1f} % | {r['phish']:.1f} % | {r['ham']:.2f} % | {r['roca_pct']:.3f} |")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    if a.png and curves:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 5))
        for name, (res, labs) in curves.items():
            pts = sorted(zip([s for s, _ in res], [l != "ham" for l in labs]), key=lambda x: -x[0])
            P = sum(1 for _, y in pts if y); N = len(pts) - P
            tp = fp = 0; xs = [0.0]; ys = [0.0]
            for s, y in pts:
                if y: tp += 1
                else: fp += 1
                xs.append(100.0 * fp / N); ys.append(100.0 * tp / P)
            ax.plot(xs, ys, label=name)
        ax.set_xscale("symlog", linthresh=0.1); ax.set_xlim(0, 100)
        ax.set_xlabel("ham flagged (%)"); ax.set_ylabel("spam and phishing flagged (%)")
        ax.set_title("ROC on the held-out half"); ax.legend(loc="lower right"); ax.grid(True, alpha=0.3)
        fig.tight_layout(); fig.savefig(a.png, dpi=110)

if __name__ == "__main__":
    main()
