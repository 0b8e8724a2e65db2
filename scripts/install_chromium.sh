#!/usr/bin/env bash
# Install headless Chromium and its driver from Debian's packages, for the browser tests
# (tests/test_browser.py, tests/test_jupyterlab.py) and kaleido's static image export.
# Idempotent and quick when both are already there. Where they cannot be installed (no apt-get, not root
# and no sudo, apt failing) it says why and exits 0: `make test` goes on and pytest reports the browser
# tests as skipped, with the reason.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
give_up() { echo "install_chromium.sh: $1; the browser tests will be skipped." >&2; exit 0; }

if have chromium && have chromedriver; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || echo '?')"
    exit 0
fi

have apt-get || give_up "apt-get not found (not a Debian-like system): install Chromium yourself"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    have sudo || give_up "need root or sudo to run apt-get"
    SUDO="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || give_up "apt-get update failed"
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null \
    || give_up "apt-get install chromium failed"
echo "chromium installed: $(chromium --version)"
