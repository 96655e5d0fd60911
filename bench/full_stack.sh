#!/usr/bin/env bash
# full_stack.sh - every check on (issue 17, part 5): mxgate with the shipped
# policies, embedded ClamAV, SPF, DKIM and DMARC for every message and a
# trained classifier, side by side in one run with
#     postfix-proxy    Postfix's bare before-queue proxy (no checks but
#                      write_rules' tables): the goal is at least 1.0x its rate
#     postfix-milters  the stack an admin would build instead: Postfix (fsync'd
#                      queue) with rspamd's milter proxy (self-scanning, two
#                      processes) and clamav-milter on clamd as smtpd_milters;
#                      the goal is at least 10x its rate
#     mxgate-full      proxy mode;  mxgate-full-queue  queue mode (fsync'd)
# and smtp-source straight into smtp-sink (sink) as the loopback limit.
#
# Every target gets the same real 4 KB message (bench/make_mail.py: text and
# HTML, two links, DKIM-signed by example.org, whose SPF passes for the
# client), sent by smtp-source -F, a new connection per message. Names are
# answered by tests/dns_server.py on loopback, for mxgate and rspamd alike
# (SPF, the DKIM key, DMARC, the client's PTR; everything else NXDOMAIN, so
# the network lists of rspamd answer at once). clamd and the embedded engine
# load the same one-signature database (EICAR), as there is no network for
# the real one. "cpu" counts every process of the target: Postfix's master
# and children, rspamd's, clamd's and clamav-milter's.
#
# Tunables: SESSIONS=20 RUNS=3 MSGS=10000 WARMUP=2000 (untimed, first) MILTER_MSGS=2000 (messages per run
#   for postfix-milters) TARGETS="sink postfix-proxy postfix-milters mxgate-full mxgate-full-queue"
#   BASE=/tmp/mxgate-bench-full PORT0=20200 (ports PORT0..PORT0+9) QUIET_WAIT=30 RUN_TIMEOUT=600
#   PERF=FILE: perf record mxgate-full's first run into FILE (cpu-clock, DWARF call graphs;
#   the rate of that run is lower for it), for `perf report -i FILE`
#   MXGATE=BINARY: run that build instead of this tree's (an A/B of two builds, in turns)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=common.sh
source bench/common.sh
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
PATH=$PATH:/usr/sbin:/usr/lib/postfix/sbin

SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-3}
MSGS=${MSGS:-10000}
MILTER_MSGS=${MILTER_MSGS:-2000}
WARMUP=${WARMUP:-2000}
TARGETS=${TARGETS:-"sink postfix-proxy postfix-milters mxgate-full mxgate-full-queue"}
BASE=${BASE:-/tmp/mxgate-bench-full}
PORT0=${PORT0:-20200}
QUIET_WAIT=${QUIET_WAIT:-30}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
ADDR=127.0.0.1
SINK_PORT=$PORT0
PFP_PORT=$((PORT0 + 1))
PFM_PORT=$((PORT0 + 2))
MXF_PORT=$((PORT0 + 3))
MXQ_PORT=$((PORT0 + 4))
RS_MILTER=$((PORT0 + 5))
RS_CONTROLLER=$((PORT0 + 6))
RS_NORMAL=$((PORT0 + 7))
CM_PORT=$((PORT0 + 8))

if ! command -v clamav-milter >/dev/null || ! command -v rspamd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clamav-milter clamav-daemon rspamd >/dev/null \
    || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clamav-milter clamav-daemon rspamd >/dev/null; }
fi
# MXGATE=BINARY: another build (an A/B of two builds in turns); otherwise this tree's release build.
if [[ -z ${MXGATE:-} ]]; then
  scripts/build-release.sh --product mxgate >/dev/null
  MXGATE=$ROOT/.build/release/mxgate
fi

cleanup_more() { stop_postfixes; }
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$BASE"
chmod 755 "$BASE"
write_rules "$BASE"
python3 bench/make_mail.py "$BASE/mail" >/dev/null
MESSAGE=$BASE/mail/message.eml

# ---------------------------------------------------------------- DNS and the sink
start_dns "$BASE/mail/zone.json"
start_sink

# ---------------------------------------------------------------- clamd, clamav-milter, rspamd
start_milters() {
  local c=$BASE/clamd
  mkdir -p "$c/db"
  cp rules/clamav/* "$c/db/"
  cat >"$c/clamd.conf" <<EOF
LocalSocket $c/clamd.sock
DatabaseDirectory $c/db
Foreground yes
LogFile $c/clamd.log
TemporaryDirectory $c
StreamMaxLength 26M
MaxThreads 4
User root
EOF
  cat >"$c/clamav-milter.conf" <<EOF
MilterSocket inet:$CM_PORT@$ADDR
ClamdSocket unix:$c/clamd.sock
Foreground yes
LogFile $c/clamav-milter.log
OnInfected Reject
OnFail Defer
MaxFileSize 25M
EOF
  setsid /usr/sbin/clamd --config-file="$c/clamd.conf" >"$c/clamd.out" 2>&1 &
  echo $! >"$c/clamd.pid"; PIDS+=("$(cat "$c/clamd.pid")")
  for _ in $(seq 600); do [[ -S $c/clamd.sock ]] && break; sleep 0.05; done
  [[ -S $c/clamd.sock ]] || { echo "clamd did not start: $(tail -3 "$c/clamd.out")" >&2; exit 1; }
  setsid /usr/sbin/clamav-milter --config-file="$c/clamav-milter.conf" >"$c/milter.out" 2>&1 &
  echo $! >"$c/milter.pid"; PIDS+=("$(cat "$c/milter.pid")")

  start_rspamd
  for _ in $(seq 100); do ss -Hlnt "sport = :$CM_PORT" | grep -q . && break; sleep 0.1; done
  ss -Hlnt "sport = :$CM_PORT" | grep -q . || { echo "clamav-milter did not start: $(tail -3 "$c/milter.out")" >&2; exit 1; }
}

# ---------------------------------------------------------------- mxgate with everything on
mxgate_full() {  # name port mode
  local d=$BASE/mx-$1
  mkdir -p "$d"
  cp -r policies rules "$d/"
  # The shipped policy as it is but for the per-client limits: every message
  # of the benchmark comes from one client, 127.0.0.1.
  sed -i -e 's|^limit connections-per-client .*|limit connections-per-client 1000|' \
         -e 's|^limit messages-per-client .*|limit messages-per-client 1000000/minute|' "$d/policies/inbound.policy"
  cat >"$d/mxgate.toml" <<EOF
[server]
listen = ["$ADDR:$2"]
hostname = "mx-$1.bench.test"
max_connections = 2000
[relay]
mode = "$3"
downstream = "$ADDR:$SINK_PORT"
domains = ["dest.test"]
tls = "none"
pool_size = $SESSIONS
[clamav]
mode = "embedded"
database = "rules/clamav"
[auth]
spf = true
dkim = true
dmarc = true
[dns]
servers = ["$ADDR:$DNS_PORT"]
[classifier]
model = "classifier.model"
[audit]
path = "audit.log"
[policy]
rules = "rules"
policies = "policies"
[queue]
directory = "queue"
EOF
  "$MXGATE" check --config "$d/mxgate.toml" >/dev/null
  "$MXGATE" learn --config "$d/mxgate.toml" --spam "$BASE/mail/train/spam" --ham "$BASE/mail/train/ham" >/dev/null
  "$MXGATE" serve --config "$d/mxgate.toml" 2>"$d/log" &
  echo $! >"$d/pid"
  PIDS+=("$(cat "$d/pid")")
}

[[ " $TARGETS " == *" postfix-proxy "* ]] && postfix_instance proxy "$PFP_PORT" 1
if [[ " $TARGETS " == *" postfix-milters "* ]]; then
  start_milters
  postfix_instance milters "$PFM_PORT" 0 "smtpd_milters = inet:$ADDR:$RS_MILTER, inet:$ADDR:$CM_PORT
milter_protocol = 6
milter_default_action = tempfail
milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}"
fi
[[ " $TARGETS " == *" mxgate-full "* ]] && mxgate_full full "$MXF_PORT" proxy
[[ " $TARGETS " == *" mxgate-full-queue "* ]] && mxgate_full queue "$MXQ_PORT" queue
sleep 2

port_of() {
  case $1 in
    sink) echo "$SINK_PORT" ;; postfix-proxy) echo "$PFP_PORT" ;; postfix-milters) echo "$PFM_PORT" ;;
    mxgate-full) echo "$MXF_PORT" ;; mxgate-full-queue) echo "$MXQ_PORT" ;;
  esac
}
gw_ticks() {
  case $1 in
    sink) proc_ticks "$SINK_PID" ;;
    postfix-proxy) session_ticks "$(pf_master proxy)" ;;
    postfix-milters) session_ticks "$(pf_master milters)" "$(cat "$BASE/clamd/clamd.pid")" \
                       "$(cat "$BASE/clamd/milter.pid")" "$(cat "$BASE/rspamd/pid")" ;;
    mxgate-full) proc_ticks "$(cat "$BASE/mx-full/pid")" ;;
    mxgate-full-queue) proc_ticks "$(cat "$BASE/mx-queue/pid")" ;;
  esac
}
msgs_for() { [[ $1 == postfix-milters ]] && echo "$MILTER_MSGS" || echo "$MSGS"; }
send() {  # target count
  timeout "$RUN_TIMEOUT" smtp-source -s "$SESSIONS" -m "$2" -F "$MESSAGE" -f alice@example.org -t bob@dest.test \
    -M client.source.test "$ADDR:$(port_of "$1")" 2>"$BASE/src.err" \
    || { echo "smtp-source failed on $1: $(tail -2 "$BASE/src.err")" >&2; exit 1; }
}

# smoke: one message through every target arrives, and each checker saw it
for t in $TARGETS; do
  b=$(sink_count)
  send "$t" 1
  for _ in $(seq 300); do (( $(sink_count) > b )) && break; sleep 0.05; done
  (( $(sink_count) > b )) || { echo "the smoke message through $t did not reach the sink" >&2; tail -5 "$BASE"/pf-*/maillog "$BASE"/mx-*/log >&2; exit 1; }
done
# every checker refuses the EICAR test file
for t in $TARGETS; do
  [[ $t == sink || $t == postfix-proxy ]] && continue
  python3 - "$(port_of "$t")" "$BASE/mail/eicar.eml" <<'PY' || { echo "$t let the EICAR test file through" >&2; exit 1; }
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("client.source.test")
try:
    s.sendmail("alice@example.org", ["bob@dest.test"], open(sys.argv[2], "rb").read())
    sys.exit(1)
except smtplib.SMTPDataError as e:
    sys.exit(0 if 500 <= e.smtp_code < 600 else 1)
PY
done
if [[ " $TARGETS " == *" mxgate-full "* ]]; then
  python3 - "$BASE/mx-full/audit.log" <<'PY'
import json, sys, time
for _ in range(50):  # the record is written just after the downstream's answer
    recs = [json.loads(line) for line in open(sys.argv[1])]
    if recs:
        break
    time.sleep(0.1)
r = next((r for r in recs if "classifier" in r), {})
a = r.get("auth", {})
if not (a.get("spf", {}).get("result") == "pass" and [d.get("result") for d in a.get("dkim", [])] == ["pass"]
        and a.get("dmarc", {}).get("result") == "pass"):
    sys.exit(f"mxgate-full did not run every check on the smoke message: {recs[-1] if recs else None}")
PY
fi
if [[ " $TARGETS " == *" postfix-milters "* ]]; then
  grep -q 'warning:.*milter' "$BASE/pf-milters/maillog" && { echo "a milter complained: $(grep 'warning:.*milter' "$BASE/pf-milters/maillog" | tail -2)" >&2; exit 1; }
fi

echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(uname -r), postfix $(postconf -d -h mail_version 2>/dev/null || echo "?"), rspamd $(rspamd -v | awk '{print $NF}'), $(clamav-milter --version | head -1), sessions=$SESSIONS runs=$RUNS message=$(stat -c %s "$MESSAGE")B"
# Warm-up, untimed, for every target alike: the first thousands of messages after a start
# (allocator arenas, caches, Postfix's process pool) ran up to a quarter slower than the rest.
for t in $TARGETS; do
  (( WARMUP > 0 )) || break
  before=$(sink_count)
  send "$t" "$(( $(msgs_for "$t") < WARMUP ? $(msgs_for "$t") : WARMUP ))"
  wait_sink "$before" "$(( $(msgs_for "$t") < WARMUP ? $(msgs_for "$t") : WARMUP ))" "$t"
done
declare -A RATE CPU
for run in $(seq 1 "$RUNS"); do
  for t in $TARGETS; do
    msgs=$(msgs_for "$t")
    wait_quiet
    before=$(sink_count)
    g0=$(gw_ticks "$t")
    t0=$(date +%s%N)
    prof=
    if [[ $t == mxgate-full && -n ${PERF:-} && $run == 1 ]]; then
      perf record -q -e cpu-clock -F 2000 --call-graph dwarf,16384 -o "$PERF" -p "$(cat "$BASE/mx-full/pid")" 2>/dev/null &
      prof=$!
    fi
    send "$t" "$msgs"
    wait_sink "$before" "$msgs" "$t"
    if [[ -n $prof ]]; then kill -INT "$prof"; wait "$prof" || true; fi
    t1=$(date +%s%N)
    g1=$(gw_ticks "$t")
    read -r rate cpu < <(run_figures "$msgs" "$t0" "$t1" $((g1 - g0)))
    echo "run=$run target=$t msgs=$msgs msgs_per_sec=$rate cpu_us_per_msg=$cpu"
    RATE[$t]+="$rate "
    CPU[$t]+="$cpu "
  done
done

echo "# medians"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/(b>0?b:1)}'; }
for t in $TARGETS; do
  r=$(median "${RATE[$t]}"); c=$(median "${CPU[$t]}")
  line="target=$t msgs_per_sec=$r cpu_us_per_msg=$c"
  if [[ $t == mxgate-* ]]; then
    for peer in postfix-proxy postfix-milters; do
      [[ -n ${RATE[$peer]:-} ]] || continue
      line+=" vs_$peer: rate=$(ratio "$r" "$(median "${RATE[$peer]}")")x cpu=$(ratio "$(median "${CPU[$peer]}")" "$c")x"
    done
  fi
  echo "$line"
done
