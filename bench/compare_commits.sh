#!/usr/bin/env bash
# compare_commits.sh OLD_REF - this tree's mxgate against an earlier commit's,
# side by side on this machine in one run (issue 15: "no slower").
#
#   bench/compare_commits.sh 4444198
#
# Builds OLD_REF's release binary in a worktree (/tmp/mxgate-old by default),
# then runs bench/compare.sh from each tree in turn, ROUNDS times (old, new,
# then new, old, ...), mxgate targets only, and prints every run and the medians
# of messages per second and CPU microseconds per message, with new/old.
#
# Tunables: ROUNDS=3 SIZES="4096:20000" TARGETS="mxgate-proxy mxgate-queue"
#   OLD_TREE=/tmp/mxgate-old QUIET_WAIT=5 (passed on to compare.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
NEW_TREE=$(pwd)
# shellcheck source=common.sh
source bench/common.sh
OLD_REF=${1:?usage: bench/compare_commits.sh OLD_REF}
OLD_TREE=${OLD_TREE:-/tmp/mxgate-old}
ROUNDS=${ROUNDS:-3}
export SIZES=${SIZES:-"4096:20000"} TARGETS=${TARGETS:-"mxgate-proxy mxgate-queue"} QUIET_WAIT=${QUIET_WAIT:-5} RUNS=1

if [[ ! -d $OLD_TREE ]]; then git worktree add --detach -q "$OLD_TREE" "$OLD_REF"; fi
git -C "$OLD_TREE" checkout -q --detach "$OLD_REF"
(cd "$OLD_TREE" && scripts/build-release.sh --product mxgate -q >/dev/null)
scripts/build-release.sh --product mxgate -q >/dev/null

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "# $(date -u +%FT%TZ) old=$(git -C "$OLD_TREE" rev-parse --short HEAD) new=$(git rev-parse --short HEAD)$(git diff --quiet || echo +changes) rounds=$ROUNDS"
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which goes first, so a machine that slows down (or speeds up) during the run favours neither.
  order="old new"; (( r % 2 == 0 )) && order="new old"
  for which in $order; do
    tree=$OLD_TREE; [[ $which == new ]] && tree=$NEW_TREE
    "$tree/bench/compare.sh" | grep '^run=' | sed "s/^run=1 /round=$r tree=$which /" | tee -a "$OUT"
  done
done
echo "# medians"
for size in $(for s in $SIZES; do echo "${s%%:*}"; done); do
  for t in $TARGETS; do
    line="size=$size target=$t"
    for which in old new; do
      rates=$(grep " tree=$which size=$size target=$t " "$OUT" | sed 's/.*msgs_per_sec=\([0-9]*\).*/\1/')
      cpus=$(grep " tree=$which size=$size target=$t " "$OUT" | sed 's/.*cpu_us_per_msg=\([0-9]*\).*/\1/')
      eval "${which}_rate=$(median "$rates") ${which}_cpu=$(median "$cpus")"
      line+=" $which: msgs_per_sec=$(eval echo \$${which}_rate) cpu_us_per_msg=$(eval echo \$${which}_cpu)"
    done
    echo "$line new/old: cpu=$(awk "BEGIN{printf \"%.3f\", $new_cpu/$old_cpu}") rate=$(awk "BEGIN{printf \"%.3f\", $new_rate/$old_rate}")"
  done
done
