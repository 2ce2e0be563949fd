#!/usr/bin/env bash
# Debian's Chromium for the studio's browser test (tests/tasks/test_studio_browser.py), driven by the playwright
# package with executable_path set to it (Playwright's own browser download needs the internet).
#
#   scripts/install_chromium.sh          # print the browser's path; install it with apt-get when missing
#
# Exit codes: 0 ready (path on stdout), 2 not root, 3 no apt-get or the install failed.
set -euo pipefail

find_browser() {
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null; then command -v "$name"; return 0; fi
    done
    return 1
}

if path=$(find_browser); then echo "$path"; exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "install_chromium: chromium is missing and installing it needs root" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "install_chromium: chromium is missing and there is no apt-get" >&2; exit 3; }
echo "install_chromium: apt-get install chromium (about a minute)" >&2
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2; then
    echo "install_chromium: apt-get install chromium failed" >&2
    exit 3
fi
path=$(find_browser) || { echo "install_chromium: chromium installed but not on PATH" >&2; exit 3; }
echo "$path"
