#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's packages when they are missing.
#
# Used by CI (.ci/run) and by tests/ops (session fixture, when running as root). Idempotent:
# does nothing when both binaries are already on PATH. Never starts the Debian service
# (policy-rc.d denies it, and a container has no init anyway); the tests run their own server.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus: prometheus and promtool already installed: $(command -v prometheus)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-prometheus: need root to apt-get install prometheus (run with sudo)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Do not let the package's maintainer scripts start a system-wide Prometheus.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

# apt's lock may be held by a concurrent install: wait for it instead of failing.
apt_opts=(-o DPkg::Lock::Timeout=300)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends prometheus >/dev/null

command -v prometheus >/dev/null && command -v promtool >/dev/null
echo "install-prometheus: installed $(prometheus --version 2>&1 | head -n1)"
