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
sh "$(dirname "$0")/../ensure-debian-packages.sh" chromium chromium-driver
if ! path=$(find_chromium); then
    echo "ensure-chromium: the chromium package installed no browser on PATH" >&2
    exit 1
fi
echo "$path"
