#!/usr/bin/env bash
# Content scanning cost (issue 4): MIME walk + the shipped policies for 10 KB
# and 1 MB messages, and RSS growth while walking a 50 MB message.
# See Sources/content-bench/main.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
scripts/build-release.sh --product content-bench >/dev/null
.build/release/content-bench
