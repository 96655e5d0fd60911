#!/usr/bin/env bash
# accuracy.sh CORPUS_DIR - spam, phishing and ham flagged, 1-ROCA and a ROC
# curve (PNG) for mxgate untrained (shipped rules and fitted weights) and
# trained (mxgate learn on the other half), with SpamAssassin's spamd and
# rspamd (Debian's packages, offline: no network tests, no Bayes, no Redis)
# on the same messages in the same run. CORPUS_DIR holds a LABELS.tsv of
# path, label (ham, spam, phish), source, like ../shared/corpus.
# Writes bench/results/accuracy.{md,png,json}.
# Tunables: LIMIT=0 (messages per half, 0: all), WORKERS=2, PEERS=1 (0: mxgate only),
#           SPAMD=1 (0: leave spamd out; see BENCHMARKS.md on its stalls here)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
CORPUS=${1:?usage: bench/accuracy.sh CORPUS_DIR}
scripts/setup.sh >/dev/null
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
scripts/build-release.sh --product mxgate >/dev/null   # the flags every benchmark builds with: one build, not two
BIN=$(swift build -c release --show-bin-path)/mxgate
mkdir -p bench/results
python3 - "$CORPUS" "$BIN" "${LIMIT:-0}" "${WORKERS:-2}" "${PEERS:-1}" "${SPAMD:-1}" <<'PY'
import os, subprocess, sys
sys.path.insert(0, "tests")
corpus, binary, limit, workers, peers, with_spamd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1", sys.argv[6] == "1"
args = ["python3", "bench/accuracy.py", corpus, "--mxgate", binary, "--limit", limit, "--workers", workers,
        "--png", "bench/results/accuracy.png", "--json", "bench/results/accuracy.json"]
daemons = []
try:
    if peers:
        from scorer_daemons import Spamd, Rspamd
        r = Rspamd(nxdomain=True)
        daemons.append(r)
        r.start()
        args += ["--rspamd", f"127.0.0.1:{r.port}"]
        if with_spamd:
            s = Spamd(nxdomain=True)
            daemons.append(s)
            s.start()
            args += ["--spamd", f"127.0.0.1:{s.port}"]
    out = subprocess.run(args, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        sys.exit(f"accuracy.py failed ({out.returncode})")
    print(out.stdout, end="")
    open("bench/results/accuracy.md", "w").write(out.stdout)
finally:
    for d in daemons:
        d.stop()
PY
