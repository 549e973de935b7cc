#!/usr/bin/env bash
# Creates (once) the Python environments the test suite uses: real Meltano in target/test-env/venv,
# and real Singer plugins from the Python package index, each in target/test-env/plugins/<name>.
# Re-running is cheap: what was installed is stamped, and nothing is reinstalled while unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

# A venv with pip. `python3 -m venv` needs ensurepip, which some distributions ship separately
# (Debian's python3-venv); without it, virtualenv (which brings its own pip) is installed for
# the user with pip and used instead.
make_venv() {
  if python3 -m venv "$1" 2>/dev/null; then
    return
  fi
  rm -rf "$1"
  echo "python3 -m venv cannot make $1 (no ensurepip?); using virtualenv instead" >&2
  if ! python3 -m virtualenv --version >/dev/null 2>&1; then
    python3 -m pip install --quiet --user virtualenv 2>/dev/null ||
      python3 -m pip install --quiet --user --break-system-packages virtualenv
  fi
  python3 -m virtualenv --quiet "$1"
}

venv="target/test-env/venv"
req="scripts/test-requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up the test environment in $venv (once)" >&2
  rm -rf "$venv"
  make_venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$req"
  echo "$want" > "$stamp"
fi

# Each real Singer plugin gets a venv of its own (their pins clash with Meltano's and with each
# other's), stamped with its requirement so a re-run only reinstalls what changed. Meltano's
# venv ships `uv`, which makes these installs take seconds; pip is the fallback.
# The venvs are made at the physical path (symlinks resolved), because a venv records its own
# path in its scripts: one made through a symlinked target/test-env (as a git worktree may share
# the main checkout's) must keep working when that link is gone.
uv="$venv/bin/uv"
mkdir -p target/test-env/plugins
plugins="$(cd target/test-env/plugins && pwd -P)"
while read -r name spec || [ -n "$name" ]; do
  case "$name" in ''|'#'*) continue ;; esac
  dir="$plugins/$name"
  if [ -f "$dir/.requirement" ] && [ "$(cat "$dir/.requirement")" = "$spec" ]; then
    continue
  fi
  echo "installing $spec into $dir (once)" >&2
  rm -rf "$dir"
  if ! { [ -x "$uv" ] && "$uv" venv --quiet --python python3 "$dir" &&
         VIRTUAL_ENV="$dir" "$uv" pip install --quiet "$spec"; }; then
    rm -rf "$dir"
    make_venv "$dir"
    "$dir/bin/python" -m pip install --quiet "$spec"
  fi
  test -x "$dir/bin/$name" || { echo "error: $spec installed no \`$name\` executable in $dir" >&2; exit 1; }
  echo "$spec" > "$dir/.requirement"
done < scripts/test-plugins.txt

# schemathesis, pinned, in a venv of its own: the `serve` test suite runs it over the OpenAPI
# document of a throwaway `dsm serve` (tests/serve/main.rs finds it at target/schemathesis).
schemathesis_spec="schemathesis==4.32.5"
st_dir="$(mkdir -p target && cd target && pwd -P)/schemathesis"
if [ ! -f "$st_dir/.requirement" ] || [ "$(cat "$st_dir/.requirement")" != "$schemathesis_spec" ]; then
  echo "installing $schemathesis_spec into $st_dir (once)" >&2
  rm -rf "$st_dir"
  if ! { [ -x "$uv" ] && "$uv" venv --quiet --python python3 "$st_dir" &&
         VIRTUAL_ENV="$st_dir" "$uv" pip install --quiet "$schemathesis_spec"; }; then
    rm -rf "$st_dir"
    make_venv "$st_dir"
    "$st_dir/bin/python" -m pip install --quiet "$schemathesis_spec"
  fi
  test -x "$st_dir/bin/st" || { echo "error: $schemathesis_spec installed no \`st\` in $st_dir" >&2; exit 1; }
  echo "$schemathesis_spec" > "$st_dir/.requirement"
fi

# moto's S3 server, pinned, in a venv of its own: the state backend tests (tests/meltano_state/)
# start it on a free loopback port as the S3-compatible store both Meltano and dsm write to.
moto_spec="moto[server]==5.2.5"
moto_dir="$(mkdir -p target && cd target && pwd -P)/moto"
if [ ! -f "$moto_dir/.requirement" ] || [ "$(cat "$moto_dir/.requirement")" != "$moto_spec" ]; then
  echo "installing $moto_spec into $moto_dir (once)" >&2
  rm -rf "$moto_dir"
  if ! { [ -x "$uv" ] && "$uv" venv --quiet --python python3 "$moto_dir" &&
         VIRTUAL_ENV="$moto_dir" "$uv" pip install --quiet "$moto_spec"; }; then
    rm -rf "$moto_dir"
    make_venv "$moto_dir"
    "$moto_dir/bin/python" -m pip install --quiet "$moto_spec"
  fi
  test -x "$moto_dir/bin/moto_server" || { echo "error: $moto_spec installed no \`moto_server\` in $moto_dir" >&2; exit 1; }
  echo "$moto_spec" > "$moto_dir/.requirement"
fi
