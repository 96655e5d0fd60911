#!/usr/bin/env bash
# Rule-engine cost per message with a 100,000-entry CIDR table, a 100,000-entry
# domain list and 200 header regexps (see Sources/policy-bench/main.swift).
# Builds a release binary and runs RUNS times; each run prints five rounds of
# thread CPU time per message and their median.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-50000}
scripts/build-release.sh --product policy-bench >/dev/null
for _ in $(seq "$RUNS"); do .build/release/policy-bench "$MESSAGES"; done
