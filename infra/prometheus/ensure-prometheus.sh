#!/bin/sh
# Installs the Debian package `prometheus` (promtool and the server) when either is missing.
# CI machines are fresh: the observability tests call this on first use. Fails loudly, never skips.
set -eu
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
# --no-install-recommends: the server and promtool only, no node exporter or web assets.
sh "$(dirname "$0")/../ensure-debian-packages.sh" --no-install-recommends prometheus
if ! command -v promtool >/dev/null 2>&1; then
    echo "ensure-prometheus: the prometheus package installed no promtool" >&2
    exit 1
fi
