#!/usr/bin/env bash
# Install Debian's chromium (headless) for the operator-page test (tests/line/test_line_operator_page.py).
#
# Used by CI (.ci/run). Idempotent: does nothing when chromium is already on PATH. The test drives it
# over the DevTools protocol (--remote-debugging-port + websocket-client); no chromium-driver needed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "install-browser: chromium already installed: $(command -v chromium)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: need root to apt-get install chromium (run with sudo)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

command -v chromium >/dev/null
echo "install-browser: installed $(chromium --version 2>/dev/null | head -n1)"
