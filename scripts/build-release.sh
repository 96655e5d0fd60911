#!/usr/bin/env bash
# build-release.sh - the release build mxgate runs and is benchmarked as.
# Arguments go on to `swift build` (e.g. --product mxgate, -q).
#
# Without Swift's run-time exclusivity checks (-enforce-exclusivity=unchecked,
# for SwiftNIO's code as well as ours): they cost about 8 % of the CPU per
# proxied message (callgrind: 1,040 checked accesses per message, most inside
# SwiftNIO; BENCHMARKS.md). The checks stay on in every other build: the debug
# build the whole test suite runs against, the fuzzers and the sanitizer builds
# trap on an overlapping access, and Swift 6's strict concurrency rules out
# cross-thread races at compile time.
#
# With cross-module optimization (-cross-module-optimization): the generic and
# small functions of one module (MailMessage's, Policy's, SwiftNIO's) can be
# specialized and inlined into the others, where each call was otherwise a
# call through the run time's generic metadata; about 3 % less CPU per message
# with every check on (BENCHMARKS.md, session 21).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"
exec swift build -c release -Xswiftc -enforce-exclusivity=unchecked -Xswiftc -cross-module-optimization "$@"
