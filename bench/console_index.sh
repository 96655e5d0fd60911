#!/bin/bash
# console_index.sh - the review console's audit index on a large log: the
# time the gateway takes to index a log it finds without an index, the
# index's size, and search and statistics times through the JSON API,
# beside `mxgate log` and grep on the same log (bench/console_index.py).
#
#   bench/console_index.sh            # a million records over 30 days
#   RECORDS=100000 bench/console_index.sh
#   LOG=path/to/audit.log RECORDS=N bench/console_index.sh   # an existing log of N records
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
export PATH=/opt/swift/usr/bin:$PATH
if [[ -z ${MXGATE:-} ]]; then
  scripts/build-release.sh --product mxgate >/dev/null
  MXGATE=$PWD/.build/release/mxgate
fi
TMP=$(mktemp -d /tmp/mxgate-index-log.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [[ -z ${LOG:-} ]]; then
  LOG=$TMP/audit.log
  python3 bench/make_audit_log.py --records "$RECORDS" --hours 720 --out "$LOG"
fi
echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(uname -r), $RECORDS records, $MXGATE"
python3 bench/console_index.py "$MXGATE" "$LOG" "$RECORDS"
