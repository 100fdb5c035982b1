#!/usr/bin/env bash
# Make sure Debian's Chromium and its matching driver are installed for the browser tests.
#
# Installs the `chromium` and `chromium-driver` packages with apt-get when /usr/bin/chromium or
# /usr/bin/chromedriver is missing (as root, or through sudo when available). Never downloads a
# browser or a driver from anywhere else, and nothing is fetched at test run time.
#
#   scripts/browser_deps.sh
set -euo pipefail

CHROMIUM=${CHROMIUM_BIN:-/usr/bin/chromium}
DRIVER=${CHROMEDRIVER_BIN:-/usr/bin/chromedriver}

log() { printf '[browser_deps] %s\n' "$*" >&2; }

if [[ -x $CHROMIUM && -x $DRIVER ]]; then
  log "found $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") and $DRIVER"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "chromium or chromedriver missing and apt-get is not available: install Debian's chromium and chromium-driver"
  exit 1
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    log "need root (or sudo) to run: apt-get install -y chromium chromium-driver"
    exit 1
  fi
fi

log "installing chromium and chromium-driver with apt-get"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-dejavu-core >/dev/null

if [[ ! -x $CHROMIUM || ! -x $DRIVER ]]; then
  log "apt-get finished but $CHROMIUM or $DRIVER is still missing"
  exit 1
fi
log "installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
