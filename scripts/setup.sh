#!/usr/bin/env bash
# Installs everything mxgate needs to build, run and test on Debian 12,
# idempotently: run it as often as you like. Needs root (or sudo) for apt.
set -euo pipefail

APT_PACKAGES=(
  postfix          # smtp-sink/smtp-source and a real Postfix for the integration tests
  swaks            # the SMTP client the README and tests use
  libnet-ssleay-perl     # swaks --tls: only a Recommends of swaks, and
  libio-socket-ssl-perl  # --no-install-recommends leaves it out
  openssl          # test certificates
  ca-certificates
  iproute2         # ss, used by the tests to find listeners
  procps
  libunbound-dev   # DNS lookups (rDNS, FCrDNS) through libunbound
  libmaxminddb-dev # GeoIP country and ASN through libmaxminddb
  clamav-daemon    # clamd for virus scanning (tests run a private one)
  libclamav-dev    # libclamav for in-process scanning
  opendkim         # a second real DKIM signer (the milter, run privately by the tests)
  opendkim-tools   # opendkim-genkey and opendkim-testkey
  miltertest       # Lua scripts that drive mxgate's milter stage by stage
  clamav-milter    # a real milter mxgate calls (EICAR refused)
  spamassassin     # spamd: an external scorer (tests) and a peer in bench/accuracy.sh
  spamc
  spamd            # (Debian 12 ships spamd in its own package)
  rspamd           # an external scorer (tests) and a peer in bench/accuracy.sh
  libsqlite3-dev   # the review console's audit index
  libhiredis-dev   # the Redis client behind [state] redis (shared greylist, limits, model)
  redis-server     # the tests' Redis (started privately on loopback)
  chromium         # the review console's browser tests (headless, through Selenium)
  chromium-driver
  fonts-dejavu-core  # so the console's screenshots have text (chromium has no font of its own)
)
# dnslib: the tests' DNS server; mmdb-writer, netaddr: GeoIP fixtures;
# maxminddb-geolite2: a real (2018) GeoLite2 database; maxminddb: to cross-check it.
# dkimpy, pynacl: a real DKIM signer (rsa and ed25519) for the DKIM tests;
# authres: what dkimpy's ARC sealer needs (an optional dependency of dkimpy).
# selenium: drives chromium for the console's tests.
PIP_PACKAGES=(pytest aiosmtpd dnslib mmdb-writer netaddr maxminddb maxminddb-geolite2 dkimpy pynacl authres selenium)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  # Postfix asks how to configure the system instance; mxgate's tests run
  # private instances, so the system one gets "No configuration".
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  was_running=0
  pgrep -x master >/dev/null 2>&1 && was_running=1
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # Never leave the package's own Postfix owning port 25 on a test machine.
  if [[ $was_running == 0 ]] && pgrep -x master >/dev/null 2>&1; then
    $SUDO /usr/sbin/postfix stop >/dev/null 2>&1 || true
  fi
  # The packaged clamd and freshclam services are not used: mxgate talks to
  # the clamd you configure, and the tests start their own.
  $SUDO systemctl stop clamav-daemon clamav-freshclam clamav-milter opendkim spamd spamassassin rspamd redis-server >/dev/null 2>&1 || true
fi

PY=${PYTHON:-python3}
pip_missing=()
for p in "${PIP_PACKAGES[@]}"; do
  $PY -m pip show -q "$p" >/dev/null 2>&1 || pip_missing+=("$p")
done
if ((${#pip_missing[@]})); then
  echo "setup: pip installing ${pip_missing[*]}" >&2
  $PY -m pip install -q "${pip_missing[@]}"
fi

if ! command -v swift >/dev/null 2>&1; then
  if [[ -x /opt/swift/usr/bin/swift ]]; then
    echo "setup: add /opt/swift/usr/bin to PATH" >&2
  else
    echo "setup: Swift 6 is required (https://www.swift.org/install/linux/)" >&2
    exit 1
  fi
fi
# Packages come without their Recommends, so check that what the tests and
# the README call can do what they ask of it (swaks --tls once failed on a
# fresh machine for want of Net::SSLeay, a Recommends of swaks).
check() {
  local what=$1; shift
  "$@" >/dev/null 2>&1 || { echo "setup: $what does not work: $*" >&2; exit 1; }
}
check "swaks with STARTTLS" perl -MNet::SSLeay -MIO::Socket::SSL -e1
check "dkimpy's ARC sealer" $PY -c "import dkim, authres, nacl.signing"
check "OpenDKIM" /usr/sbin/opendkim -V
check "miltertest" test -x /usr/bin/miltertest
check "clamav-milter" /usr/sbin/clamav-milter --version
check "swaks" swaks --version
check "Postfix" /usr/sbin/postconf -d mail_version
check "smtp-sink" test -x /usr/sbin/smtp-sink
check "clamd" /usr/sbin/clamd --version
check "openssl" openssl version
check "ss" ss -V
check "chromium and its driver" chromedriver --version
check "selenium" "$PY" -c "import selenium.webdriver"
check "the Python test packages" "$PY" -c "import pytest, aiosmtpd, dnslib, mmdb_writer, netaddr, maxminddb, geolite2, dkim, nacl"
echo "setup: ok" >&2
