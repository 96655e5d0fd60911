#!/usr/bin/env bash
# compare.sh - mxgate side by side with Postfix on this machine, in one run.
#
#   smtp-source -> [target] -> smtp-sink, for each target, interleaved:
#     sink           smtp-source straight into smtp-sink (the loopback limit)
#     postfix-queue  Postfix as relay, fsync'd queue
#     postfix-proxy  Postfix with smtpd_proxy_filter (before-queue)
#     mxgate-proxy   mxgate, [relay] mode = "proxy"
#     mxgate-queue   mxgate, [relay] mode = "queue" (fsync'd spool)
#
# Same load for all (Postfix's smtp-source), same rules on both sides: a
# 1,000-entry CIDR client deny table none of the clients match, 50 header
# regexps none of the messages match, a 25 MB size limit. A run's time is
# from the start of smtp-source until smtp-sink has counted every message.
# Prints messages per second and CPU microseconds per message of the gateway
# (all its processes), per run and as medians, and each mxgate figure as a
# ratio to the matching Postfix figure (proxy to proxy, queue to queue).
#
# Tunables: SESSIONS=20 RUNS=3 SIZES="4096:20000 102400:5000" (body bytes:messages)
#   TARGETS="sink postfix-queue postfix-proxy mxgate-proxy mxgate-queue"
#   BASE=/tmp/mxgate-bench PORT0=20100 (ports PORT0..PORT0+5) QUIET_WAIT=30 RUN_TIMEOUT=600
# Release build of mxgate; Postfix from Debian (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=common.sh
source bench/common.sh
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
PATH=$PATH:/usr/sbin:/usr/lib/postfix/sbin

SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-3}
SIZES=${SIZES:-"4096:20000 102400:5000"}
TARGETS=${TARGETS:-"sink postfix-queue postfix-proxy mxgate-proxy mxgate-queue"}
BASE=${BASE:-/tmp/mxgate-bench}
PORT0=${PORT0:-20100}
QUIET_WAIT=${QUIET_WAIT:-30}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
ADDR=127.0.0.1
SINK_PORT=$PORT0
PFQ_PORT=$((PORT0 + 1))
PFP_PORT=$((PORT0 + 2))
MXP_PORT=$((PORT0 + 3))
MXQ_PORT=$((PORT0 + 4))

scripts/build-release.sh --product mxgate >/dev/null
MXGATE=$ROOT/.build/release/mxgate

cleanup_more() { stop_postfixes; }
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$BASE"
chmod 755 "$BASE"

# ---------------------------------------------------------------- rules, both spellings
write_rules "$BASE"

# ---------------------------------------------------------------- smtp-sink
start_sink

# ---------------------------------------------------------------- Postfix (relay and proxy)

# ---------------------------------------------------------------- mxgate (proxy and queue)
mxgate_instance() {  # name port mode
  local d=$BASE/mx-$1
  write_mxgate_config "$d" "$BASE" "$ADDR" "$2" "$3" "$SINK_PORT" "$SESSIONS"
  "$MXGATE" check --config "$d/mxgate.toml" >/dev/null
  "$MXGATE" serve --config "$d/mxgate.toml" 2>"$d/log" &
  echo $! >"$d/pid"
  PIDS+=("$(cat "$d/pid")")
}

[[ " $TARGETS " == *" postfix-queue "* ]] && postfix_instance queue "$PFQ_PORT" 0
[[ " $TARGETS " == *" postfix-proxy "* ]] && postfix_instance proxy "$PFP_PORT" 1
[[ " $TARGETS " == *" mxgate-proxy "* ]] && mxgate_instance proxy "$MXP_PORT" proxy
[[ " $TARGETS " == *" mxgate-queue "* ]] && mxgate_instance queue "$MXQ_PORT" queue
sleep 2

port_of() {
  case $1 in
    sink) echo "$SINK_PORT" ;; postfix-queue) echo "$PFQ_PORT" ;; postfix-proxy) echo "$PFP_PORT" ;;
    mxgate-proxy) echo "$MXP_PORT" ;; mxgate-queue) echo "$MXQ_PORT" ;;
  esac
}
# CPU ticks of the gateway under test (all its processes, reaped children included).
gw_ticks() {
  local sid
  case $1 in
    sink) sid=$SINK_PID ;;
    postfix-queue) sid=$(pf_master queue) ;;
    postfix-proxy) sid=$(pf_master proxy) ;;
    mxgate-proxy) sid=$(cat "$BASE/mx-proxy/pid") ;;
    mxgate-queue) sid=$(cat "$BASE/mx-queue/pid") ;;
  esac
  if [[ $1 == postfix-* ]]; then
    session_ticks "$sid"
  else
    proc_ticks "$sid"
  fi
}

# smoke: one message through every target
for t in $TARGETS; do
  b=$(sink_count)
  smtp-source -m 1 -f sender@source.test -t rcpt@dest.test "$ADDR:$(port_of "$t")" || { echo "smoke test failed for $t" >&2; exit 1; }
  for _ in $(seq 300); do (( $(sink_count) > b )) && break; sleep 0.05; done
  (( $(sink_count) > b )) || { echo "smoke message through $t did not reach the sink" >&2; exit 1; }
done

echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(uname -r), postfix $(postconf -d -h mail_version 2>/dev/null || echo "?"), sessions=$SESSIONS runs=$RUNS"
declare -A RATE CPU
for run in $(seq 1 "$RUNS"); do
  for sz in $SIZES; do
    size=${sz%%:*}; msgs=${sz##*:}
    for t in $TARGETS; do
      wait_quiet
      before=$(sink_count)
      g0=$(gw_ticks "$t")
      t0=$(date +%s%N)
      timeout "$RUN_TIMEOUT" smtp-source -s "$SESSIONS" -m "$msgs" -l "$size" -r 1 -f sender@source.test -t rcpt@dest.test \
        -M client.source.test "$ADDR:$(port_of "$t")" 2>"$BASE/src.err" || { echo "smtp-source failed on $t: $(tail -2 "$BASE/src.err")" >&2; exit 1; }
      wait_sink "$before" "$msgs" "$t"
      t1=$(date +%s%N)
      g1=$(gw_ticks "$t")
      read -r rate cpu < <(run_figures "$msgs" "$t0" "$t1" $((g1 - g0)))
      echo "run=$run size=$size target=$t msgs=$msgs msgs_per_sec=$rate cpu_us_per_msg=$cpu"
      RATE[$t:$size]+="$rate "
      CPU[$t:$size]+="$cpu "
    done
  done
done

echo "# medians"
for sz in $SIZES; do
  size=${sz%%:*}
  for t in $TARGETS; do
    r=$(median "${RATE[$t:$size]}"); c=$(median "${CPU[$t:$size]}")
    line="size=$size target=$t msgs_per_sec=$r cpu_us_per_msg=$c"
    peer=""
    [[ $t == mxgate-proxy ]] && peer=postfix-proxy
    [[ $t == mxgate-queue ]] && peer=postfix-queue
    if [[ -n $peer && -n ${RATE[$peer:$size]:-} ]]; then
      pr=$(median "${RATE[$peer:$size]}"); pc=$(median "${CPU[$peer:$size]}")
      line+=" vs_$peer: rate=$(awk -v a="$r" -v b="$pr" 'BEGIN{printf "%.2f", a/b}')x cpu=$(awk -v a="$c" -v b="$pc" 'BEGIN{printf "%.2f", b/(a>0?a:1)}')x"
    fi
    echo "$line"
  done
done
