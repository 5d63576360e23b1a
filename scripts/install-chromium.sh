#!/bin/sh
# Headless Chromium for the browser tests (tests/test_dashboard_browser.py). Idempotent: does
# nothing when `chromium` is on PATH; installs Debian's package when running as root (CI);
# otherwise says how to install it and exits 0 (the tests then skip locally, fail under CI=true).
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    exit 0
fi
echo "chromium is not installed and this is not root: browser tests will be skipped" >&2
echo "(install it with: sudo apt-get install chromium)" >&2
