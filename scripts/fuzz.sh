#!/usr/bin/env bash
# Runs the libFuzzer targets in Sources/mxgate-fuzz, each for a bounded time,
# with AddressSanitizer, starting from the committed seeds in fuzz/corpus/.
#
#   scripts/fuzz.sh                  every target, 60 s each
#   scripts/fuzz.sh mime 600         one target, ten minutes
#   FUZZ_SECONDS=10 scripts/fuzz.sh  what CI does
#
# New inputs that reach new code go to .build/fuzz-corpus/TARGET (not
# committed). A crash is written to fuzz/crashes/TARGET-…, the script fails,
# and the file belongs in fuzz/corpus/TARGET/ once fixed: the test suite
# replays every file there (mxgate-fuzz TARGET DIR) on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
TARGETS=${1:-"command session mime policy address auth milter"}
SECONDS_EACH=${2:-${FUZZ_SECONDS:-60}}
MXGATE_FUZZ=1 swift build --scratch-path .build/fuzz --sanitize=fuzzer --sanitize=address --product mxgate-fuzz 2>&1 \
  | grep -vE "ld.gold: warning: Cannot export local symbol" | tail -3
BIN=.build/fuzz/debug/mxgate-fuzz
mkdir -p fuzz/crashes
status=0
for t in $TARGETS; do
  work=.build/fuzz-corpus/$t
  mkdir -p "$work"
  echo "== $t: ${SECONDS_EACH}s"
  # Leak checking is off: Foundation's file reading keeps a buffer that
  # LeakSanitizer reports on every run; memory errors still stop the run.
  if ! ASAN_OPTIONS=detect_leaks=0 MXGATE_FUZZ_TARGET=$t "$BIN" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="fuzz/crashes/$t-" -print_final_stats=1 "$work" "fuzz/corpus/$t" >".build/fuzz-$t.log" 2>&1; then
    echo "$t: crash, see .build/fuzz-$t.log and fuzz/crashes/"
    tail -30 ".build/fuzz-$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" ".build/fuzz-$t.log" | tr '\n' ' '
    echo
  fi
done
exit $status
