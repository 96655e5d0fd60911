#!/usr/bin/env bash
# The classifier's and the heuristics' CPU per 10 KB message, learning cost,
# and the model's size at a million features (issue 17).
# See Sources/classifier-bench/main.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
scripts/build-release.sh --product classifier-bench >/dev/null
.build/release/classifier-bench
