#!/usr/bin/env bash
# callgrind.sh - instructions per message of mxgate, counted by valgrind's
# callgrind: repeatable to a fraction of a percent where timings on this
# shared machine spread by 15 %, so it decides whether a change helps.
#
# For each mode, mxgate runs under callgrind twice, relaying N1 and then N2
# messages (smtp-source, 4 sessions, 1 recipient) into smtp-sink, with the
# benchmark rule set (bench/common.sh); (I(N2) - I(N1)) / (N2 - N1) is the
# cost of one message with start-up and shutdown taken out. User-space
# instructions only: what the kernel does for mxgate is not counted.
#
# Tunables: MODES="proxy queue" SIZE=4096 N1=500 N2=2500 BASE=/tmp/mxgate-callgrind
#   PORT0=20200 TOP=0 (print the TOP functions by inclusive cost of the N2 run)
#   KEEP=0 (1: leave BASE with each run's callgrind.out for callgrind_annotate)
# Builds its own release binary with DWARF 4 debug info (valgrind 3.19
# cannot read the DWARF 5 Swift writes by default) in .build/callgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=common.sh
source bench/common.sh
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
PATH=$PATH:/usr/sbin

MODES=${MODES:-"proxy queue"}
SIZE=${SIZE:-4096}
N1=${N1:-500}
N2=${N2:-2500}
BASE=${BASE:-/tmp/mxgate-callgrind}
PORT0=${PORT0:-20200}
TOP=${TOP:-0}
KEEP=${KEEP:-0}
ADDR=127.0.0.1
SINK_PORT=$PORT0
MX_PORT=$((PORT0 + 1))

# valgrind is only needed here, so scripts/setup.sh leaves it out.
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "callgrind.sh: installing valgrind" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends valgrind >/dev/null
fi
command -v smtp-source >/dev/null || { echo "callgrind.sh: smtp-source missing; run scripts/setup.sh first" >&2; exit 1; }

scripts/build-release.sh --product mxgate --scratch-path .build/callgrind -Xswiftc -dwarf-version=4 -Xcc -gdwarf-4 >/dev/null
MXGATE=$ROOT/.build/callgrind/release/mxgate

trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$BASE"
mkdir -p "$BASE"
chmod 755 "$BASE"
write_rules "$BASE"

start_sink
# instructions MODE N: total instructions of one mxgate run relaying N messages.
instructions() {
  local mode=$1 n=$2 d=$BASE/mx-$1-$2
  write_mxgate_config "$d" "$BASE" "$ADDR" "$MX_PORT" "$mode" "$SINK_PORT" 4
  (cd "$d" && exec valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.out" "$MXGATE" serve --config mxgate.toml) 2>"$d/valgrind.log" &
  local pid=$!
  for _ in $(seq 300); do ss -ltn | grep -q ":$MX_PORT " && break; sleep 0.1; done
  local before; before=$(sink_count)
  smtp-source -s 4 -m "$n" -l "$SIZE" -r 1 -f sender@source.test -t rcpt@dest.test -M client.source.test "$ADDR:$MX_PORT" 2>"$d/src.err" ||
    { echo "smtp-source failed ($mode): $(tail -2 "$d/src.err")" >&2; kill "$pid"; exit 1; }
  for _ in $(seq 1200); do (( $(sink_count) - before >= n )) && break; sleep 0.1; done
  (( $(sink_count) - before >= n )) || { echo "$mode: the sink got $(( $(sink_count) - before ))/$n" >&2; kill "$pid"; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$d/callgrind.out"
}

echo "# $(date -u +%FT%TZ) $(valgrind --version), size=$SIZE n1=$N1 n2=$N2"
for mode in $MODES; do
  # (a failure inside $(...) only ends that subshell)
  i1=$(instructions "$mode" "$N1") && [[ -n $i1 ]] || exit 1
  i2=$(instructions "$mode" "$N2") && [[ -n $i2 ]] || exit 1
  echo "mode=$mode size=$SIZE instructions_per_msg=$(( (i2 - i1) / (N2 - N1) )) total_n1=$i1 total_n2=$i2"
  if (( TOP > 0 )); then
    # awk reads to the end (head would close the pipe: SIGPIPE under pipefail).
    callgrind_annotate --inclusive=yes "$BASE/mx-$mode-$N2/callgrind.out" 2>/dev/null |
      awk -v n=$((TOP + 2)) '/^Ir/ { on = 1 } on && shown < n { print substr($0, 1, 200); shown++ }'
  fi
done
