#!/usr/bin/env bash
# Creates (once) the Python environment the test suite uses: real Meltano and real Singer
# plugins from the Python package index. Re-running is cheap: the requirements file's hash is
# stamped, and nothing is reinstalled while it is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="target/test-env/venv"
req="scripts/test-requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setting up the test environment in $venv (once)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
echo "$want" > "$stamp"
