#!/usr/bin/env bash
# queue_backlog.sh - queue mode with a backlog: how fast new mail goes through
# while many messages wait in the queue for a destination that is down (a
# downstream outage, a dead partner MX), as the scheduler looks at the queue
# every time a delivery finishes.
#
#   For each BACKLOG size: a fresh mxgate in queue mode; BACKLOG messages of
#   1 KB to down.test, routed to a closed port (each deferred once, next try
#   in an hour); then MSGS messages of SIZE bytes to dest.test, relayed to
#   smtp-sink. Prints messages per second and CPU microseconds per message of
#   the second load, and each figure as a ratio to the run without a backlog.
#
# Tunables: BACKLOG="0 50000" MSGS=20000 SIZE=4096 SESSIONS=20 RUNS=1
#   MXGATE=.build/release/mxgate (built with scripts/build-release.sh unless given)
#   BASE=/tmp/mxgate-backlog PORT0=20200 (ports PORT0..PORT0+2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=common.sh
source bench/common.sh
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
PATH=$PATH:/usr/sbin:/usr/lib/postfix/sbin

BACKLOG=${BACKLOG:-"0 50000"}
MSGS=${MSGS:-20000}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-1}
BASE=${BASE:-/tmp/mxgate-backlog}
PORT0=${PORT0:-20200}
ADDR=127.0.0.1
SINK_PORT=$PORT0
MX_PORT=$((PORT0 + 1))
DOWN_PORT=$((PORT0 + 2))  # nothing listens here
if [[ -z ${MXGATE:-} ]]; then
  scripts/build-release.sh --product mxgate >/dev/null
  MXGATE=$ROOT/.build/release/mxgate
fi

trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$BASE"
chmod 755 "$BASE"
write_rules "$BASE"

start_sink

deferred() { grep -c '"reason":"deferred"' "$1/audit.log" 2>/dev/null || true; }

echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(uname -r), sessions=$SESSIONS msgs=$MSGS size=$SIZE, $MXGATE"
declare -A RATE CPU
for run in $(seq 1 "$RUNS"); do
  for backlog in $BACKLOG; do
    d=$BASE/mx-$backlog
    rm -rf "$d"
    write_mxgate_config "$d" "$BASE" "$ADDR" "$MX_PORT" queue "$SINK_PORT" "$SESSIONS"
    sed -i -e 's/^domains = .*/domains = ["dest.test", "down.test"]/' \
      -e 's/^directory = "queue"/directory = "queue"\nmin_backoff = "1h"/' "$d/mxgate.toml"
    printf '[routes]\n"down.test" = "%s:%s"\n' "$ADDR" "$DOWN_PORT" >>"$d/mxgate.toml"
    "$MXGATE" check --config "$d/mxgate.toml" >/dev/null
    "$MXGATE" serve --config "$d/mxgate.toml" 2>"$d/log" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$d/log" && break; sleep 0.1; done
    if (( backlog > 0 )); then
      smtp-source -s "$SESSIONS" -m "$backlog" -l 1024 -f sender@source.test -t rcpt@down.test "$ADDR:$MX_PORT"
      end=$(( $(date +%s) + 600 ))
      while (( $(deferred "$d") < backlog )); do
        (( $(date +%s) < end )) || { echo "backlog: only $(deferred "$d") of $backlog deferred" >&2; exit 1; }
        sleep 0.5
      done
    fi
    sleep 2
    before=$(sink_count)
    g0=$(proc_ticks "$pid")
    t0=$(date +%s%N)
    smtp-source -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -r 1 -f sender@source.test -t rcpt@dest.test \
      -M client.source.test "$ADDR:$MX_PORT"
    wait_sink "$before" "$MSGS" "backlog $backlog" 600
    t1=$(date +%s%N)
    g1=$(proc_ticks "$pid")
    read -r rate cpu < <(run_figures "$MSGS" "$t0" "$t1" $((g1 - g0)))
    queued=$(find "$d/queue" -path '*/active/*' -type f 2>/dev/null | wc -l)
    echo "run=$run backlog=$backlog spool_files=$queued msgs_per_sec=$rate cpu_us_per_msg=$cpu"
    RATE[$backlog]+="$rate "
    CPU[$backlog]+="$cpu "
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done

first=${BACKLOG%% *}
echo "# medians (ratio to backlog=$first)"
for backlog in $BACKLOG; do
  r=$(median "${RATE[$backlog]}"); c=$(median "${CPU[$backlog]}")
  r0=$(median "${RATE[$first]}"); c0=$(median "${CPU[$first]}")
  printf "backlog=%-7s msgs_per_sec=%-6s (%.2fx) cpu_us_per_msg=%-5s (%.2fx)\n" "$backlog" "$r" "$(awk -v a="$r" -v b="$r0" 'BEGIN{print a/b}')" \
    "$c" "$(awk -v a="$c" -v b="$c0" 'BEGIN{print a/b}')"
done
