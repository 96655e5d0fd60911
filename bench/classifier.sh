#!/usr/bin/env bash
# The classifier's and the heuristics' CPU per 10 KB message, learning cost,
# and the model's size at a million features (issue 17).
# With message files as arguments, part 1 measures those instead of the
# synthetic 10 KB message. See Sources/classifier-bench/main.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
scripts/build-release.sh --product classifier-bench >/dev/null
.build/release/classifier-bench "$@"
