#!/usr/bin/env bash
# state.sh - the cost of shared state (issue 19): the shipped policies with
# greylisting on (`at rcpt match all greylist`) and the per-client limits,
# SPF, DKIM, DMARC, the heuristics, a trained classifier and embedded ClamAV
# (the one-signature EICAR database: no network for the real one), in proxy mode to
# smtp-sink, once on the embedded backend and once on Redis (Debian's
# redis-server on loopback TCP), side by side in one run. "cpu" is mxgate's
# CPU per message; "cpu+redis" adds redis-server's, since an admin pays both.
# The goal: Redis at most 10 % more CPU per message than embedded.
#
# Every message is the same 4 KB DKIM-signed message (bench/make_mail.py)
# from one client, sender and recipient: after the first (greylisted, then
# retried once the 0 s delay of the benchmark has passed) every message
# looks its triplet up and records the pass, and every connection and MAIL
# is counted, as for mail from a known sender.
#
# Tunables: SESSIONS=20 RUNS=3 MSGS=10000 BASE=/tmp/mxgate-bench-state PORT0=20300 QUIET_WAIT=30 RUN_TIMEOUT=600
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
BASE=${BASE:-/tmp/mxgate-bench-state}
PORT0=${PORT0:-20300}
QUIET_WAIT=${QUIET_WAIT:-30}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
ADDR=127.0.0.1
SINK_PORT=$PORT0
EMB_PORT=$((PORT0 + 1))
RED_PORT=$((PORT0 + 2))
REDIS_PORT=$((PORT0 + 3))
TARGETS="mxgate-embedded mxgate-redis"

scripts/setup.sh >/dev/null
scripts/build-release.sh --product mxgate >/dev/null
MXGATE=$ROOT/.build/release/mxgate

trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$BASE"
chmod 755 "$BASE"
python3 bench/make_mail.py "$BASE/mail" >/dev/null
MESSAGE=$BASE/mail/message.eml

start_dns "$BASE/mail/zone.json"
start_sink

redis-server --bind "$ADDR" --port "$REDIS_PORT" --save "" --appendonly no --dir "$BASE" >"$BASE/redis.out" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do [[ $(redis-cli -h "$ADDR" -p "$REDIS_PORT" PING 2>/dev/null) == PONG ]] && break; sleep 0.1; done

gateway() {  # name port [state section]
  local d=$BASE/mx-$1
  mkdir -p "$d"
  cp -r policies rules "$d/"
  # One client sends everything: limits high enough never to refuse, but counted.
  sed -i -e 's|^limit connections-per-client .*|limit connections-per-client 1000|' \
         -e 's|^limit messages-per-client .*|limit messages-per-client 1000000/minute|' "$d/policies/inbound.policy"
  echo "at rcpt match all greylist" >"$d/policies/greylist.policy"
  cat >"$d/mxgate.toml" <<EOF
[server]
listen = ["$ADDR:$2"]
hostname = "mx-$1.bench.test"
max_connections = 2000
[relay]
downstream = "$ADDR:$SINK_PORT"
domains = ["dest.test"]
tls = "none"
pool_size = $SESSIONS
[auth]
spf = true
dkim = true
dmarc = true
[dns]
servers = ["$ADDR:$DNS_PORT"]
[classifier]
model = "classifier.model"
[clamav]
mode = "embedded"
database = "rules/clamav"
[audit]
path = "audit.log"
[policy]
rules = "rules"
policies = "policies"
[greylist]
delay = "0s"
$3
EOF
  "$MXGATE" check --config "$d/mxgate.toml" >/dev/null
  "$MXGATE" learn --config "$d/mxgate.toml" --spam "$BASE/mail/train/spam" --ham "$BASE/mail/train/ham" >/dev/null
  "$MXGATE" serve --config "$d/mxgate.toml" 2>"$d/log" &
  echo $! >"$d/pid"
  PIDS+=("$(cat "$d/pid")")
}
gateway embedded "$EMB_PORT" ""
gateway redis "$RED_PORT" "[state]
redis = \"redis://$ADDR:$REDIS_PORT/0\""
sleep 2

port_of() { [[ $1 == mxgate-embedded ]] && echo "$EMB_PORT" || echo "$RED_PORT"; }
pid_of() { [[ $1 == mxgate-embedded ]] && cat "$BASE/mx-embedded/pid" || cat "$BASE/mx-redis/pid"; }
send() {  # target count
  timeout "$RUN_TIMEOUT" smtp-source -s "$SESSIONS" -m "$2" -F "$MESSAGE" -f alice@example.org -t bob@dest.test \
    -M client.source.test "$ADDR:$(port_of "$1")" 2>"$BASE/src.err" || true
}

# smoke: the first message is greylisted, its retry passes and arrives
for t in $TARGETS; do
  b=$(sink_count)
  send "$t" 1
  sleep 0.2
  (( $(sink_count) == b )) || { echo "$t did not greylist the first message" >&2; exit 1; }
  send "$t" 1
  wait_sink "$b" 1 "$t smoke" 30
done
grep -q '"outcome":"retried"' "$BASE/mx-redis/audit.log" || sleep 1
grep -q '"outcome":"retried"' "$BASE/mx-redis/audit.log" || { echo "no greylist pass in the Redis gateway's audit log" >&2; exit 1; }
[[ $(redis-cli -h "$ADDR" -p "$REDIS_PORT" --scan --pattern 'mxgate:gl:t:*' | wc -l) -ge 1 ]] || { echo "no triplet in Redis" >&2; exit 1; }

echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(uname -r), $(redis-server --version | awk '{print $1, $3}'), sessions=$SESSIONS runs=$RUNS message=$(stat -c %s "$MESSAGE")B"
declare -A RATE CPU ALL
for run in $(seq 1 "$RUNS"); do
  for t in $TARGETS; do
    wait_quiet
    before=$(sink_count)
    g0=$(proc_ticks "$(pid_of "$t")"); r0=$(proc_ticks "$REDIS_PID")
    t0=$(date +%s%N)
    send "$t" "$MSGS"
    wait_sink "$before" "$MSGS" "$t"
    t1=$(date +%s%N)
    g1=$(proc_ticks "$(pid_of "$t")"); r1=$(proc_ticks "$REDIS_PID")
    read -r rate cpu < <(run_figures "$MSGS" "$t0" "$t1" $((g1 - g0)))
    extra=0
    [[ $t == mxgate-redis ]] && extra=$((r1 - r0))
    read -r _ all < <(run_figures "$MSGS" "$t0" "$t1" $((g1 - g0 + extra)))
    echo "run=$run target=$t msgs=$MSGS msgs_per_sec=$rate cpu_us_per_msg=$cpu cpu_with_redis_us_per_msg=$all"
    RATE[$t]+="$rate "; CPU[$t]+="$cpu "; ALL[$t]+="$all "
  done
done
echo "# medians"
for t in $TARGETS; do
  echo "target=$t msgs_per_sec=$(median "${RATE[$t]}") cpu_us_per_msg=$(median "${CPU[$t]}") cpu_with_redis_us_per_msg=$(median "${ALL[$t]}")"
done
awk -v e="$(median "${CPU[mxgate-embedded]}")" -v r="$(median "${CPU[mxgate-redis]}")" -v a="$(median "${ALL[mxgate-redis]}")" \
  'BEGIN{printf "redis vs embedded: mxgate cpu %+.1f%%, mxgate+redis-server cpu %+.1f%%\n", (r/e-1)*100, (a/e-1)*100}'
