#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: Swift unit tests, then
# the integration tests against real peers (swaks, smtplib, smtp-sink, Postfix).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"

scripts/setup.sh
swift build --build-tests
swift test --disable-xctest --skip-build
MXGATE_BIN="$(swift build --show-bin-path)/mxgate" python3 -m pytest tests -q -p no:cacheprovider
# Each libFuzzer target briefly, with AddressSanitizer (scripts/fuzz.sh for longer runs).
FUZZ_SECONDS=${FUZZ_SECONDS:-15} scripts/fuzz.sh
