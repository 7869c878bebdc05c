#!/bin/sh
# Installs the Debian package `prometheus` (promtool and the server) when promtool is missing.
# CI machines are fresh: the observability tests call this on first use. Fails loudly, never skips.
set -eu
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "ensure-prometheus: promtool is missing and this user cannot install packages" >&2
        echo "  install it yourself: apt-get install prometheus" >&2
        exit 1
    fi
fi
echo "ensure-prometheus: installing the Debian package prometheus (promtool + server)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the server and promtool only, no node exporter or web assets.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if ! command -v promtool >/dev/null 2>&1; then
    echo "ensure-prometheus: the prometheus package installed no promtool" >&2
    exit 1
fi
