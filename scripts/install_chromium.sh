#!/usr/bin/env bash
# Install headless Chromium and its driver from Debian's packages, for the browser tests
# (tests/test_browser.py, tests/test_jupyterlab.py) and kaleido's static image export.
# Idempotent: returns at once when both are already installed.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have chromium && have chromedriver; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || echo '?')"
    exit 0
fi

if ! have apt-get; then
    echo "install_chromium.sh: apt-get not found; install Chromium yourself (the browser tests will be skipped)." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then SUDO="sudo"; else
        echo "install_chromium.sh: need root (or sudo) to run apt-get." >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "chromium installed: $(chromium --version)"
