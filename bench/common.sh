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
