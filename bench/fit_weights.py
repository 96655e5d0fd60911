#!/usr/bin/env python3
"""Fits the scores of policies/heuristics.policy on a labelled corpus, the
way SpamAssassin's rescoring does: the shipped policy's other scores stay as
they are, the tag threshold stays at 5, and each signal gets the
non-negative score that best separates spam and phishing from ham, by a
logistic loss on (score - 5) with ham weighted more (a false positive costs
more than a miss), phishing weighted as a class of its own (a corpus holds
far fewer phishing messages than spam), and a small L2 penalty (a signal
seen on a few messages does not get a large score).

It fits on the training half of accuracy.py's split, so bench/accuracy.sh
measures the shipped scores on messages they were not fitted on.

Usage: fit_weights.py CORPUS_DIR --mxgate BIN [--write] [--ham-weight W] [--phish-weight W] [--salt S]

--write rewrites the scores in place, and docs/policy.md's table of signals.
"""
import argparse, json, math, os, re, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import accuracy  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
POLICY = os.path.join(ROOT, "policies", "heuristics.policy")
LINE = re.compile(r"^(at data match signal\s+)(\S+)(\s+score\s+)([+-]?[0-9.]+)(.*)$")
# The scoring tables' entries are fitted too: NAME /regexp/flags score +N
TABLES = [os.path.join(ROOT, "rules", f) for f in ("spam-body.rules", "spam-headers.rules")]
ENTRY = re.compile(r"^([A-Z0-9_]+)(\s+/.*/[a-z]*\s+score\s+)([+-]?[0-9.]+)(.*)$")


def table_lines():
    """Entry name -> (file, line index)."""
    out = {}
    for path in TABLES:
        for i, line in enumerate(open(path).read().split("\n")):
            m = ENTRY.match(line)
            if m:
                out[m.group(1)] = (path, i)
    return out


def signal_lines():
    out = {}
    for i, line in enumerate(open(POLICY).read().split("\n")):
        m = LINE.match(line)
        if m:
            out[m.group(2)] = i
    return out


MIN_SEEN = 8
# No fitted signal flags a message on its own (the tag line is 5): two
# pieces of evidence at least, so one signal's false positives never suffice.
CAP = 4.5
# Signals that always come together count as one for the cap: HTML_ONLY_NO_MAILER
# is never without HTML_ONLY.
GROUPS = [("HTML_ONLY", "HTML_ONLY_NO_MAILER")]


def current_scores(lines, entries):
    out = {}
    text = open(POLICY).read().split("\n")
    for n, i in lines.items():
        out[n] = float(LINE.match(text[i]).group(4))
    cache = {}
    for e, (path, i) in entries.items():
        cache.setdefault(path, open(path).read().split("\n"))
        out["T:" + e] = float(ENTRY.match(cache[path][i]).group(3))
    return out


def collect(bin_, msgs, entries=()):
    """Per message: the signals and table entries found, and the score of everything else."""
    with tempfile.TemporaryDirectory() as d:
        conf = accuracy.write_config(d, os.path.join(d, "none.model"))
        rows = []
        for score, flagged, rec in accuracy.mxgate_scores(bin_, conf, msgs):
            found = set(rec.get("signals", []))
            other = 0.0
            for k, v in rec.get("symbols", {}).items():
                entry = k.rsplit(" ", 1)[-1]
                if "heuristics.policy" in k:
                    continue
                if entry in entries:
                    found.add("T:" + entry)
                else:
                    other += v
            decided = rec["verdict"] in ("rejected", "quarantined") and not rec.get("symbols")
            rows.append((found, other, decided))
        return rows


def fit(rows, labels, names, ham_weight, phish_weight=0.0, l2=0.0002, tau=2.0, steps=3000, rate=0.05, fixed=None):
    """`fixed`: name -> score kept as written (too rare in the corpus to fit).
    The classes weigh in total: spam 1, ham `ham_weight`, and phishing
    `phish_weight` on its own (0: phishing is counted as more spam). A corpus
    holds a few phishing messages to many spam, so without its own weight the
    signals only phishing shows (a shortener, a credential prompt) fit to
    nothing against the ham they cost."""
    fixed = fixed or {}
    idx = {n: i for i, n in enumerate(names)}
    kind = (lambda l: "ham" if l == "ham" else "phish" if l == "phish" and phish_weight > 0 else "spam")
    data = [([idx[s] for s in sig if s in idx and s not in fixed], other + sum(fixed.get(s, 0) for s in sig),
             1.0 if l != "ham" else 0.0, kind(l)) for (sig, other, _), l in zip(rows, labels)]
    s = [fixed.get(n, 1.0) for n in names]
    m = [0.0] * len(names); v = [0.0] * len(names)
    count = {k: max(1, sum(1 for *_, c in data if c == k)) for k in ("spam", "phish", "ham")}
    cw = {"spam": 1.0 / count["spam"], "phish": phish_weight / count["phish"], "ham": ham_weight / count["ham"]}
    for t in range(1, steps + 1):
        g = [2 * l2 * x for x in s]
        for active, other, y, c in data:
            z = (other + sum(s[i] for i in active) - 5.0) / tau
            p = 1 / (1 + math.exp(-max(-40, min(40, z))))
            d = cw[c] * (p - y) / tau
            for i in active:
                g[i] += d
        for i in range(len(s)):  # Adam, projected onto 0 <= s <= CAP
            if names[i] in fixed:
                continue
            m[i] = 0.9 * m[i] + 0.1 * g[i]; v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
            mh = m[i] / (1 - 0.9 ** t); vh = v[i] / (1 - 0.999 ** t)
            s[i] = min(CAP, max(0.0, s[i] - rate * mh / (math.sqrt(vh) + 1e-8)))
        for group in GROUPS:
            members = [idx[n] for n in group if n in idx]
            total = sum(s[i] for i in members)
            if total > CAP:
                for i in members:
                    s[i] *= CAP / total
    return s


def rates(rows, labels, names, s):
    idx = {n: i for i, n in enumerate(names)}
    hit = {"spam": [0, 0], "phish": [0, 0], "ham": [0, 0]}
    for (sig, other, decided), l in zip(rows, labels):
        total = other + sum(s[idx[x]] for x in sig if x in idx)
        hit[l][0] += decided or total >= 5
        hit[l][1] += 1
    return {k: 100.0 * a / b for k, (a, b) in hit.items() if b}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--write", action="store_true", help="rewrite the scores in policies/heuristics.policy")
    ap.add_argument("--ham-weight", type=float, default=25.0)
    ap.add_argument("--phish-weight", type=float, default=1.0, help="phishing's weight in total beside spam's 1 (0: counted as spam)")
    ap.add_argument("--salt", default="mxgate-accuracy:", help="fit on another split's training half (as accuracy.py --salt)")
    ap.add_argument("--dump", help="keep what was collected (pickle), to refit without rerunning mxgate")
    a = ap.parse_args()
    train, _ = accuracy.split(a.corpus, 0, a.salt)
    labels = [l for _, l in train]
    lines = signal_lines()
    entries = table_lines()
    names = sorted(lines) + sorted("T:" + e for e in entries)
    rows = collect(a.mxgate, train, entries)
    seen = {n: sum(1 for sig, _, _ in rows if n in sig) for n in names}
    if a.dump:
        import pickle
        pickle.dump((rows, train, names), open(a.dump, "wb"))
    # A signal on fewer than MIN_SEEN messages of the corpus keeps the score
    # written in the file (an expert's prior, as SpamAssassin keeps hand-set
    # scores for rules its mass-checks rarely see): zero evidence is not evidence of zero.
    current = current_scores(lines, entries)
    fixed = {n: current[n] for n in names if seen[n] < MIN_SEEN}
    s = fit(rows, labels, names, a.ham_weight, a.phish_weight, fixed=fixed)
    r = rates(rows, labels, names, s)
    print(f"fitted on {len(train)} messages: spam {r['spam']:.1f} %, phishing {r['phish']:.1f} %, ham {r['ham']:.2f} % flagged")
    for n, w in sorted(zip(names, s), key=lambda x: -x[1]):
        print(f"  {n:30} {w:5.2f}  (on {seen[n]} messages{', kept as written' if n in fixed else ''})")
    if a.write:
        files = {POLICY: open(POLICY).read().split("\n")}
        for path in TABLES:
            files[path] = open(path).read().split("\n")
        for n, w in zip(names, s):
            if n in fixed:
                continue
            score = f"+{round(w, 1)}"
            if n.startswith("T:"):
                path, i = entries[n[2:]]
                m = ENTRY.match(files[path][i])
                files[path][i] = f"{m.group(1)}{m.group(2)}{score}{m.group(4)}"
            else:
                m = LINE.match(files[POLICY][lines[n]])
                files[POLICY][lines[n]] = f"{m.group(1)}{m.group(2)}{m.group(3)}{score:<5}{m.group(5).lstrip(' ') and '  ' + m.group(5).lstrip(' ')}"
        for path, text in files.items():
            open(path, "w").write("\n".join(text))
            print(f"wrote {path}")
        write_doc_table()


DOC = os.path.join(ROOT, "docs", "policy.md")
SIGNAL = re.compile(r"^at data match signal\s+(\S+)\s+score\s+\+?([0-9.]+)\s*#\s*(.*)$")


def write_doc_table():
    """docs/policy.md's table of signals, from heuristics.policy's lines and their comments."""
    rows = [SIGNAL.match(l) for l in open(POLICY).read().split("\n")]
    table = ["| signal | what it sees | shipped score |", "|---|---|---|"]
    table += [f"| `{m.group(1)}` | {m.group(3).strip()} | {m.group(2)} |" for m in rows if m]
    doc = open(DOC).read().split("\n")
    start = doc.index(table[0])
    end = start
    while end < len(doc) and doc[end].startswith("|"):
        end += 1
    doc[start:end] = table
    open(DOC, "w").write("\n".join(doc))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
