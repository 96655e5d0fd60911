#!/usr/bin/env bash
# The Swift test suite under AddressSanitizer and ThreadSanitizer, each in
# its own build folder (a sanitizer build cannot share objects with a plain
# one); with address, also the whole integration suite (tests/) against an
# AddressSanitizer build of mxgate. The libFuzzer runs (scripts/fuzz.sh,
# which CI runs) are AddressSanitizer builds too.
#
#   scripts/sanitizers.sh              address, then thread
#   scripts/sanitizers.sh thread
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
for s in ${1:-address thread}; do
  echo "== $s"
  # Foundation keeps buffers LeakSanitizer reports; memory errors still fail.
  ASAN_OPTIONS=detect_leaks=0 TSAN_OPTIONS=halt_on_error=1 \
    swift test --disable-xctest --scratch-path ".build/sanitize-$s" --sanitize="$s" 2>&1 \
    | grep -vE "ld.gold: warning: Cannot export local symbol" | tail -15
  if [[ $s == address ]]; then
    swift build --scratch-path ".build/sanitize-$s" --sanitize="$s" 2>&1 | grep -vE "ld.gold: warning" | tail -1
    ASAN_OPTIONS=detect_leaks=0 MXGATE_BIN="$(pwd)/.build/sanitize-$s/debug/mxgate" \
      python3 -m pytest tests -q -p no:cacheprovider
  fi
done
