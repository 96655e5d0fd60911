#!/usr/bin/env bash
# clamd-backed scanning overhead (issue 4): mxgate's ClamdClient against a
# minimal raw INSTREAM client, both on one private clamd (EICAR-only
# database, MaxThreads 4). See Sources/clamd-bench/main.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
scripts/build-release.sh --product clamd-bench >/dev/null
dir=$(mktemp -d /tmp/mxgate-bench-clamd.XXXXXX)
chmod 755 "$dir"
mkdir "$dir/db"
echo "MxGate.Test.EICAR:0:*:$(printf 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' | od -An -tx1 | tr -d ' \n')" >"$dir/db/eicar.ndb"
cat >"$dir/clamd.conf" <<CONF
LocalSocket $dir/clamd.sock
DatabaseDirectory $dir/db
Foreground yes
LogFile $dir/clamd.log
TemporaryDirectory $dir
StreamMaxLength 30M
MaxThreads 4
User root
CONF
/usr/sbin/clamd --config-file="$dir/clamd.conf" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 600); do [[ -S $dir/clamd.sock ]] && break; sleep 0.05; done
sleep 0.5
.build/release/clamd-bench "$dir/clamd.sock"
