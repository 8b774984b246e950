#!/usr/bin/env bash
# Writes requirements/constraints.txt: every distribution of a working venv, pinned. The images
# (deploy/Dockerfile) and `make setup` install under it, so they run the versions tested here.
#   scripts/constraints.sh            # from .venv
#   VENV=/path/to/venv scripts/constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
out=requirements/constraints.txt
{
  echo "# Pinned versions of a working development venv (written by scripts/constraints.sh)."
  echo "# Used as a pip constraints file by scripts/setup.sh and deploy/Dockerfile."
  # editable and direct-URL installs (the project itself) are no version pins
  "$VENV/bin/python" -m pip freeze --exclude-editable --exclude azr-services \
    | grep -v -e ' @ ' -e '^-e ' | LC_ALL=C sort -f
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "constraints: $(grep -vc '^#' "$out") pins in $out"
