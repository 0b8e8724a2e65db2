#!/usr/bin/env bash
# Refresh requirements.lock: resolve pyproject.toml (with the dev extra) afresh in a throwaway virtual
# environment and freeze every installed package, pip and torch's CUDA wheels included.
#   make lock      (then re-execute the notebooks: `make execute`, and commit both)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade "pip==${PIP_VERSION:-23.2.1}"
"$work/venv/bin/python" -m pip install --quiet -e '.[dev]'
{
  echo "# Exact versions of everything \`make setup\` installs (pip install -c requirements.lock -e '.[dev]')."
  echo "# Resolved with $("$work/venv/bin/python" -V) on $(uname -sm); refresh: \`make lock\`, then \`make execute\`."
  "$work/venv/bin/python" -m pip freeze --all --exclude-editable
} > "$work/requirements.lock"
mv "$work/requirements.lock" requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
