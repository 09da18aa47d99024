#!/usr/bin/env bash
# Install Debian's chromium and its chromedriver for the browser tests
# (tests/render/test_browser.py). Needs root and apt-get; does nothing when both
# are already installed.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: the browser tests need chromium and chromedriver; install them as root with" >&2
    echo "  apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
echo "installing chromium and chromium-driver (browser tests) ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
