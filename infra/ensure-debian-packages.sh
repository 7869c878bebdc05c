#!/bin/sh
# Installs Debian packages that are missing, as root or through passwordless sudo.
#   sh infra/ensure-debian-packages.sh [--no-install-recommends] PACKAGE...
# Packages already installed are left alone (no apt-get at all when none is missing). CI
# machines are fresh Debian: the scripts that need a tool (infra/chromium/ensure-chromium.sh,
# infra/prometheus/ensure-prometheus.sh) call this on first use. Everything it prints goes to
# stderr, so a caller's stdout stays its own. Fails loudly, never skips.
set -eu
me="ensure-debian-packages"
options=""
if [ "${1:-}" = "--no-install-recommends" ]; then
    options="--no-install-recommends"
    shift
fi
if [ "$#" -eq 0 ]; then
    echo "usage: $0 [--no-install-recommends] PACKAGE..." >&2
    exit 2
fi
missing=""
for package in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="$missing $package"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "$me: missing$missing, and this user cannot install packages (not root, no sudo)" >&2
        echo "  install them yourself: apt-get install$missing" >&2
        exit 1
    fi
fi
echo "$me: installing the Debian packages$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086 # word splitting wanted: the option (if any) and the package names
$SUDO apt-get install -y -qq $options $missing >/dev/null
