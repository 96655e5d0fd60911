#!/usr/bin/env bash
# Sets everything up and runs mxgate in the foreground on the shipped
# default configuration (mxgate.toml: 127.0.0.1:2525, Maildir under ./var/mail).
# Extra arguments go to `mxgate serve` (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d /opt/swift/usr/bin ]] && export PATH="/opt/swift/usr/bin:$PATH"

scripts/setup.sh
scripts/build-release.sh -q
if [[ ! -s var/web-users ]]; then
  echo "run: the review console is on http://127.0.0.1:8025/; add a login with" >&2
  echo "     .build/release/mxgate web user add admin --role admin --config mxgate.toml" >&2
fi
exec .build/release/mxgate serve --config mxgate.toml "$@"
