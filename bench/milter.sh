#!/usr/bin/env bash
# milter.sh - mxgate as Postfix's milter (issue 20), side by side in one run with
#     postfix           the same Postfix without a milter (what the milter adds is the difference)
#     postfix-rspamd    Postfix with rspamd's milter proxy (self-scanning, as
#                       Debian ships its configuration) as smtpd_milters
#     postfix-mxgate    Postfix with mxgate's milter ([milter] listen): the
#                       shipped policies, SPF, DKIM and DMARC on every message,
#                       the trained classifier, embedded ClamAV
# Every Postfix is the same: an fsync'd queue relaying to smtp-sink. Every
# target gets the same real 4 KB message (bench/make_mail.py), sent by
# smtp-source, a new connection per message; names are answered by
# tests/dns_server.py on loopback for mxgate and rspamd alike. "cpu" counts
# every process of the target (Postfix's master and children, rspamd's
# processes, mxgate), and "milter_cpu" the milter's alone.
#
# Tunables: SESSIONS=20 RUNS=3 MSGS=2000 TARGETS="postfix postfix-rspamd postfix-mxgate"
#   BASE=/tmp/mxgate-bench-milter PORT0=20300 (ports PORT0..PORT0+9) QUIET_WAIT=30 RUN_TIMEOUT=600
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=common.sh
source bench/common.sh
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
PATH=$PATH:/usr/sbin:/usr/lib/postfix/sbin

SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-3}
MSGS=${MSGS:-2000}
TARGETS=${TARGETS:-"postfix postfix-rspamd postfix-mxgate"}
BASE=${BASE:-/tmp/mxgate-bench-milter}
PORT0=${PORT0:-20300}
QUIET_WAIT=${QUIET_WAIT:-30}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
ADDR=127.0.0.1
SINK_PORT=$PORT0
PF_PORT=$((PORT0 + 1))
PFR_PORT=$((PORT0 + 2))
PFM_PORT=$((PORT0 + 3))
RS_MILTER=$((PORT0 + 4))
RS_CONTROLLER=$((PORT0 + 5))
RS_NORMAL=$((PORT0 + 6))
MX_MILTER=$((PORT0 + 7))
MX_SMTP=$((PORT0 + 8))

command -v rspamd >/dev/null || scripts/setup.sh
scripts/build-release.sh --product mxgate >/dev/null
MXGATE=$ROOT/.build/release/mxgate

cleanup_more() { stop_postfixes; }
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$BASE"
chmod 755 "$BASE"
write_rules "$BASE"
python3 bench/make_mail.py "$BASE/mail" >/dev/null
MESSAGE=$BASE/mail/message.eml
start_dns "$BASE/mail/zone.json"
start_sink

start_mxgate() {
  local d=$BASE/mx
  mkdir -p "$d"
  cp -r policies rules "$d/"
  # The shipped policy but for the per-client limits: every message comes from 127.0.0.1.
  sed -i -e 's|^limit connections-per-client .*|limit connections-per-client 1000|' \
         -e 's|^limit messages-per-client .*|limit messages-per-client 1000000/minute|' "$d/policies/inbound.policy"
  cat >"$d/mxgate.toml" <<EOF
[server]
listen = ["$ADDR:$MX_SMTP"]
hostname = "mx.bench.test"
[milter]
listen = "inet:$ADDR:$MX_MILTER"
[relay]
downstream = "$ADDR:$SINK_PORT"
domains = ["dest.test"]
tls = "none"
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
EOF
  "$MXGATE" check --config "$d/mxgate.toml" >/dev/null
  "$MXGATE" learn --config "$d/mxgate.toml" --spam "$BASE/mail/train/spam" --ham "$BASE/mail/train/ham" >/dev/null
  setsid "$MXGATE" serve --config "$d/mxgate.toml" 2>"$d/log" &
  echo $! >"$d/pid"; PIDS+=("$(cat "$d/pid")")
  for _ in $(seq 100); do grep -q "milter listening" "$d/log" && break; sleep 0.1; done
  grep -q "milter listening" "$d/log" || { tail -5 "$d/log" >&2; exit 1; }
}

MILTER_OPTS="milter_protocol = 6
milter_default_action = tempfail
milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}"
[[ " $TARGETS " == *" postfix "* ]] && postfix_instance bare "$PF_PORT" 0
if [[ " $TARGETS " == *" postfix-rspamd "* ]]; then
  start_rspamd
  postfix_instance rspamd "$PFR_PORT" 0 "smtpd_milters = inet:$ADDR:$RS_MILTER
$MILTER_OPTS"
fi
if [[ " $TARGETS " == *" postfix-mxgate "* ]]; then
  start_mxgate
  postfix_instance mxgate "$PFM_PORT" 0 "smtpd_milters = inet:$ADDR:$MX_MILTER
$MILTER_OPTS"
fi
sleep 2

port_of() { case $1 in postfix) echo "$PF_PORT" ;; postfix-rspamd) echo "$PFR_PORT" ;; postfix-mxgate) echo "$PFM_PORT" ;; esac; }
milter_ticks() {
  case $1 in
    postfix) echo 0 ;;
    postfix-rspamd) session_ticks "$(cat "$BASE/rspamd/pid")" ;;
    postfix-mxgate) proc_ticks "$(cat "$BASE/mx/pid")" ;;
  esac
}
pf_ticks() { case $1 in postfix) session_ticks "$(pf_master bare)" ;; postfix-rspamd) session_ticks "$(pf_master rspamd)" ;; postfix-mxgate) session_ticks "$(pf_master mxgate)" ;; esac; }
send() {  # target count
  timeout "$RUN_TIMEOUT" smtp-source -s "$SESSIONS" -m "$2" -F "$MESSAGE" -f alice@example.org -t bob@dest.test \
    -M client.source.test "$ADDR:$(port_of "$1")" 2>"$BASE/src.err" \
    || { echo "smtp-source failed on $1: $(tail -2 "$BASE/src.err")" >&2; exit 1; }
}

# smoke: one message through every target arrives; the milters saw it and refuse EICAR
for t in $TARGETS; do
  b=$(sink_count)
  send "$t" 1
  for _ in $(seq 300); do (( $(sink_count) > b )) && break; sleep 0.05; done
  (( $(sink_count) > b )) || { echo "the smoke message through $t did not reach the sink" >&2; tail -5 "$BASE"/pf-*/maillog >&2; exit 1; }
done
if [[ " $TARGETS " == *" postfix-mxgate "* ]]; then
  python3 - "$BASE/mx/audit.log" "$(port_of postfix-mxgate)" "$BASE/mail/eicar.eml" <<'PY'
import json, smtplib, sys, time
for _ in range(50):
    recs = [json.loads(line) for line in open(sys.argv[1])]
    if recs:
        break
    time.sleep(0.1)
r = next((r for r in recs if r.get("milter")), {})
a = r.get("auth", {})
if not (r.get("verdict") == "accepted" and a.get("spf", {}).get("result") == "pass"
        and [d.get("result") for d in a.get("dkim", [])] == ["pass"] and a.get("dmarc", {}).get("result") == "pass"):
    sys.exit(f"mxgate's milter did not run every check on the smoke message: {recs[-1] if recs else None}")
s = smtplib.SMTP("127.0.0.1", int(sys.argv[2]), timeout=30)
try:
    s.sendmail("alice@example.org", ["bob@dest.test"], open(sys.argv[3], "rb").read())
    sys.exit("mxgate's milter let EICAR through")
except smtplib.SMTPDataError as e:
    sys.exit(0 if 500 <= e.smtp_code < 600 else f"EICAR: {e}")
PY
fi
for t in postfix-rspamd postfix-mxgate; do
  [[ " $TARGETS " == *" $t "* ]] || continue
  log=$BASE/pf-${t#postfix-}/maillog
  grep -q 'warning:.*milter' "$log" && { echo "$t: a milter complained: $(grep 'warning:.*milter' "$log" | tail -2)" >&2; exit 1; }
done

echo "# $(date -u +%FT%TZ) $(nproc) cpus, $(uname -r), postfix $(postconf -d -h mail_version 2>/dev/null || echo "?"), rspamd $(rspamd -v | awk '{print $NF}'), sessions=$SESSIONS runs=$RUNS msgs=$MSGS message=$(stat -c %s "$MESSAGE")B"
declare -A RATE CPU MCPU
for run in $(seq 1 "$RUNS"); do
  for t in $TARGETS; do
    wait_quiet
    before=$(sink_count)
    p0=$(pf_ticks "$t"); m0=$(milter_ticks "$t")
    t0=$(date +%s%N)
    send "$t" "$MSGS"
    wait_sink "$before" "$MSGS" "$t"
    t1=$(date +%s%N)
    p1=$(pf_ticks "$t"); m1=$(milter_ticks "$t")
    read -r rate cpu < <(run_figures "$MSGS" "$t0" "$t1" $(( (p1 - p0) + (m1 - m0) )))
    read -r _ mcpu < <(run_figures "$MSGS" "$t0" "$t1" $((m1 - m0)))
    echo "run=$run target=$t msgs=$MSGS msgs_per_sec=$rate cpu_us_per_msg=$cpu milter_cpu_us_per_msg=$mcpu"
    RATE[$t]+="$rate "; CPU[$t]+="$cpu "; MCPU[$t]+="$mcpu "
  done
done

echo "# medians"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/(b>0?b:1)}'; }
for t in $TARGETS; do
  r=$(median "${RATE[$t]}"); c=$(median "${CPU[$t]}"); m=$(median "${MCPU[$t]}")
  line="target=$t msgs_per_sec=$r cpu_us_per_msg=$c milter_cpu_us_per_msg=$m"
  if [[ $t == postfix-mxgate && -n ${RATE[postfix-rspamd]:-} ]]; then
    line+=" vs_postfix-rspamd: rate=$(ratio "$r" "$(median "${RATE[postfix-rspamd]}")")x cpu=$(ratio "$(median "${CPU[postfix-rspamd]}")" "$c")x milter_cpu=$(ratio "$(median "${MCPU[postfix-rspamd]}")" "$m")x"
  fi
  echo "$line"
done
