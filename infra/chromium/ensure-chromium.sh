#!/bin/sh
# Installs Debian's Chromium when it is missing, for the console's browser tests (Playwright
# drives it through executable_path; no browser build is ever downloaded by Playwright).
# CI machines are fresh: the browser-test fixture and `make test` call this on first use.
# Prints the browser's path on success. Fails loudly, never skips.
set -eu
find_chromium() {
    for candidate in chromium chromium-browser; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
if path=$(find_chromium); then
    echo "$path"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "ensure-chromium: chromium is missing and this user cannot install packages" >&2
        echo "  install it yourself: apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi
echo "ensure-chromium: installing the Debian packages chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
if ! path=$(find_chromium); then
    echo "ensure-chromium: the chromium package installed no browser on PATH" >&2
    exit 1
fi
echo "$path"
