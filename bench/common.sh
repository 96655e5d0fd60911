# common.sh - what the benchmarks share (sourced): the rule set, written in
# Postfix's and in mxgate's spelling, an mxgate configuration using it, the
# count of messages the smtp-sink has taken, a process's CPU ticks, medians,
# and the clean-up on exit.

# write_rules DIR: a 1,000-entry client CIDR deny table no benchmark client
# matches, and 50 header regexps no benchmark message matches (Postfix
# syntax: DIR/client_access.cidr, DIR/header_checks).
write_rules() {
  {
    for i in $(seq 0 899); do echo "10.$((i / 256)).$((i % 256)).0/24	REJECT blocked network $i"; done
    for i in $(seq 0 99); do echo "198.51.100.$i	REJECT blocked host $i"; done
  } >"$1/client_access.cidr"
  {
    for i in $(seq 1 20); do echo "/^Subject:.*(v[i1]agra|c[i1]alis|casino|lottery)[ _-]?$i\\b/	REJECT spam subject rule $i"; done
    for i in $(seq 1 10); do echo "/^X-Mailer:.*(BulkMailer|MassSender|SpamTool)[ _]v?$i\\./	REJECT bulk mailer rule $i"; done
    for ext in exe scr pif bat vbs js jse cmd com cpl hta jar msi wsf lnk; do
      echo "/^Content-(Type|Disposition):.*name[[:space:]]*=[[:space:]]*\"?[^\"]*\\.$ext\"?[[:space:]]*(;|\$)/	REJECT attachment type .$ext"; done
    for i in $(seq 1 5); do echo "/^From:.*@(spam|junk|bulk)-domain-$i\\.example\$/	REJECT sender domain rule $i"; done
  } >"$1/header_checks"
}

# write_mxgate_config DIR RULES_DIR ADDR PORT MODE SINK_PORT POOL: the same
# rules as mxgate policy (DIR/policies, DIR/rules) and DIR/mxgate.toml
# listening on ADDR:PORT, relaying to ADDR:SINK_PORT in MODE (proxy|queue).
write_mxgate_config() {
  local d=$1 rules=$2 addr=$3 port=$4 mode=$5 sink=$6 pool=$7
  mkdir -p "$d/policies" "$d/rules"
  cp "$rules/client_access.cidr" "$d/rules/blocked.cidr"
  sed 's/\t/  /' "$rules/header_checks" >"$d/rules/header_checks"
  cat >"$d/policies/bench.policy" <<'EOF'
table blocked cidr:rules/blocked.cidr
table header-checks regexp:rules/header_checks
limit message-size 25M
at connect match client <blocked> reject "554 5.7.1 Access denied"
at data match header <header-checks>
EOF
  cat >"$d/mxgate.toml" <<EOF
[server]
listen = ["$addr:$port"]
hostname = "mx-$mode.bench.test"
max_connections = 2000
[relay]
mode = "$mode"
downstream = "$addr:$sink"
domains = ["dest.test"]
tls = "none"
pool_size = $pool
[queue]
directory = "queue"
[audit]
path = "audit.log"
EOF
}

# postfix_instance NAME PORT PROXY(0|1) [MAIN_CF_LINES]: a private Postfix in
# $BASE/pf-NAME listening on $ADDR:PORT and relaying to $ADDR:$SINK_PORT, with
# write_rules' tables; PROXY=1 makes it a before-queue proxy
# (smtpd_proxy_filter to the sink), and MAIN_CF_LINES are appended to main.cf.
postfix_instance() {
  local d=$BASE/pf-$1 port=$2 proxy=$3 extra=${4:-}
  mkdir -p "$d/etc" "$d/spool" "$d/data"
  chown postfix "$d/data"
  cat >"$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf-$1.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
relay_domains = dest.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [$ADDR]:$SINK_PORT
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
message_size_limit = 26214400
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_client_access cidr:$BASE/client_access.cidr, permit_mynetworks, reject_unauth_destination
header_checks = regexp:$BASE/header_checks
maillog_file = $d/maillog
maillog_file_prefixes = /var, /dev/stdout, $BASE
$extra
EOF
  local proxy_opts=""
  [[ $proxy == 1 ]] && proxy_opts="  -o smtpd_proxy_filter=$ADDR:$SINK_PORT"
  cat >"$d/etc/master.cf" <<EOF
$ADDR:$port inet n - n - - smtpd
$proxy_opts
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  postfix -c "$d/etc" check
  postfix -c "$d/etc" start >/dev/null 2>&1
}
# pf_master NAME: the pid of that instance's master process.
pf_master() { tr -dc 0-9 <"$BASE/pf-$1/spool/pid/master.pid"; }

# busy_pct: the whole machine's busy percentage over one second.
busy_pct() {
  local u n s i w x y z t0 i0 t1 i1
  read -r _ u n s i w x y z _ </proc/stat; t0=$((u+n+s+i+w+x+y+z)); i0=$((i+w))
  sleep 1
  read -r _ u n s i w x y z _ </proc/stat; t1=$((u+n+s+i+w+x+y+z)); i1=$((i+w))
  echo $(( 100 * ((t1-t0) - (i1-i0)) / (t1-t0 > 0 ? t1-t0 : 1) ))
}
# wait_quiet: wait (at most $QUIET_WAIT s) for two quiet seconds in a row.
wait_quiet() {
  local end=$(( $(date +%s) + QUIET_WAIT )) ok=0
  while (( $(date +%s) < end )); do
    if (( $(busy_pct) <= 10 )); then ok=$((ok+1)); (( ok >= 2 )) && return 0; else ok=0; fi
  done
  return 0  # never quiet: run anyway (the host is shared)
}

# start_sink: the benchmark's smtp-sink on $ADDR:$SINK_PORT, counting into
# $BASE/sink.count (read by sink_count); sets SINK_PID.
start_sink() {
  smtp-sink -u nobody -c -m 1024 "$ADDR:$SINK_PORT" 1024 >"$BASE/sink.count" 2>"$BASE/sink.err" &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
}

# start_dns ZONE_JSON: tests/dns_server.py answering the zone on loopback
# (the port it chose in DNS_PORT), as in the integration tests.
start_dns() {
  python3 tests/dns_server.py "$1" >"$BASE/dns.out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q '^port ' "$BASE/dns.out" && break; sleep 0.1; done
  DNS_PORT=$(awk '/^port /{print $2}' "$BASE/dns.out")
  [[ -n $DNS_PORT ]] || { echo "the DNS server did not start: $(cat "$BASE/dns.out")" >&2; exit 1; }
}

# start_rspamd: Debian's rspamd in $BASE/rspamd, its milter proxy
# (self-scanning) on $ADDR:$RS_MILTER, controller on $RS_CONTROLLER, normal
# worker on $RS_NORMAL, names asked of the benchmark's DNS server
# ($DNS_PORT); returns once it answers /ping.
start_rspamd() {
  local r=$BASE/rspamd
  mkdir -p "$r/etc/override.d" "$r/etc/local.d" "$r/db" "$r/run" "$r/log"
  printf 'bind_socket = "%s:%s";\nmilter = yes;\ntimeout = 120s;\ncount = 2;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n' \
    "$ADDR" "$RS_MILTER" >"$r/etc/override.d/worker-proxy.inc"
  printf 'bind_socket = "%s:%s";\n' "$ADDR" "$RS_CONTROLLER" >"$r/etc/override.d/worker-controller.inc"
  printf 'bind_socket = "%s:%s";\ncount = 1;\n' "$ADDR" "$RS_NORMAL" >"$r/etc/override.d/worker-normal.inc"
  # local_addrs empty: rspamd skips SPF and DKIM for its local networks, and the client is on loopback.
  printf 'dns {\n  nameserver = ["%s:%s"];\n  timeout = 1s;\n}\nlocal_addrs = [];\n' "$ADDR" "$DNS_PORT" >"$r/etc/local.d/options.inc"
  chown -R _rspamd:_rspamd "$r/db" "$r/run" "$r/log"
  setsid rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf --var LOCAL_CONFDIR="$r/etc" --var DBDIR="$r/db" \
    --var RUNDIR="$r/run" --var LOGDIR="$r/log" >"$r/rspamd.out" 2>&1 &
  echo $! >"$r/pid"; PIDS+=("$(cat "$r/pid")")
  for _ in $(seq 600); do
    python3 -c "import urllib.request,sys;sys.exit(0 if urllib.request.urlopen('http://$ADDR:$RS_NORMAL/ping',timeout=1).read().startswith(b'pong') else 1)" 2>/dev/null && break
    kill -0 "$(cat "$r/pid")" 2>/dev/null || { tail "$r/rspamd.out" >&2; exit 1; }
    sleep 0.1
  done
}

# stop_postfixes: stops every private Postfix instance under $BASE (a
# benchmark's cleanup_more).
stop_postfixes() {
  for d in "$BASE"/pf-*; do [[ -f $d/etc/main.cf ]] && postfix -c "$d/etc" stop >/dev/null 2>&1 || true; done
}

# wait_sink BEFORE N WHAT [TIMEOUT]: waits until the sink has counted N
# messages more than BEFORE; exits with a message naming WHAT past TIMEOUT
# seconds (default $RUN_TIMEOUT, else 600).
wait_sink() {
  local before=$1 n=$2 what=$3 deadline=$(( $(date +%s) + ${4:-${RUN_TIMEOUT:-600}} ))
  while (( $(sink_count) - before < n )); do
    (( $(date +%s) < deadline )) || { echo "$what: timeout, sink got $(( $(sink_count) - before ))/$n" >&2; exit 1; }
    sleep 0.02
  done
}

# run_figures N T0_NS T1_NS TICKS: "RATE CPU", messages per second and CPU
# microseconds per message of one timed run.
run_figures() {
  awk -v n="$1" -v a="$2" -v b="$3" -v t="$4" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.0f %.0f\n", n/((b-a)/1e9), t/hz*1e6/n}'
}

# sink_count: messages the benchmark's smtp-sink has counted so far (its
# -c output in $BASE/sink.count, whose last "mesg=N" is the total).
sink_count() {
  local t; t=$(tail -c 64 "$BASE/sink.count" 2>/dev/null || true)
  t=${t##*mesg=}; t=${t%%[!0-9]*}; echo "${t:-0}"
}

# proc_ticks PID: CPU ticks (user and system, reaped children included) of
# one process, from /proc/PID/stat (fields counted after the command name,
# which may hold spaces).
proc_ticks() {
  awk '{ l=$0; c=match(l, /\)[^)]*$/); split(substr(l,c+2),f," "); print f[12]+f[13]+f[14]+f[15] }' "/proc/$1/stat"
}

# session_ticks SID...: CPU ticks of every process in those sessions (a
# Postfix master and its children, a daemon started with setsid), reaped
# children included.
session_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v sids=" $* " '{ l=$0; c=match(l, /\)[^)]*$/); split(substr(l,c+2),f," ");
     if (index(sids, " " f[4] " ")) s+=f[12]+f[13]+f[14]+f[15] } END{print s+0}'
}

# median "N N N": the middle value (the lower middle of an even count).
median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# Every process a benchmark starts goes into PIDS; `trap cleanup EXIT` kills
# them and removes $BASE (kept with KEEP=1). A script with more to stop
# first defines cleanup_more.
PIDS=()
cleanup() {
  if declare -F cleanup_more >/dev/null; then cleanup_more; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$BASE"
}
