#!/usr/bin/env bash
# Memory with 10,000 idle connections, RSS growth relaying 50 MB, and added
# latency at moderate load, for mxgate in proxy mode (release build).
# See bench/memory_latency.py.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
scripts/build-release.sh --product mxgate >/dev/null
ulimit -n "$(ulimit -Hn)"   # 10,000 client sockets here, 10,000 in mxgate
exec python3 bench/memory_latency.py
