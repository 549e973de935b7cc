#!/usr/bin/env bash
# Start-up latency: `dsm --version`, and a whole `dsm run` of a 10-record stream from a trivial
# tap to a trivial target (both dsm's fake plugins, started through a one-line shell wrapper as
# a Meltano project would start them). When $DSM_TEST_VENV/bin/meltano exists, the same two
# things through Meltano, in the same run, for the ratio.
# Targets (issue 3): `dsm --version` <= 10 ms, the 10-record run <= 50 ms.
# Each figure is the median of $RUNS runs (default 21 for dsm, 5 for Meltano).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${DSM_BENCH_RUNS:-21}
MELTANO_RUNS=${DSM_BENCH_MELTANO_RUNS:-5}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-latency.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --release --bin dsm --bin dsm-fake-tap --bin dsm-fake-target
BIN=$PWD/target/release

# Milliseconds of wall clock for one run of "$@" (output discarded).
ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" > /dev/null 2>&1
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000))
}

# Median (in ms, 1 decimal) of $1 runs of the rest.
median() {
  local n=$1
  shift
  for _ in $(seq "$n"); do ms "$@"; done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

printf '#!/bin/sh\nexec %s --generate 10 --state-every 5 "$@"\n' "$BIN/dsm-fake-tap" > "$WORK/tap-ten"
printf '#!/bin/sh\nexec %s --summary %s "$@"\n' "$BIN/dsm-fake-target" "$WORK/summary.json" > "$WORK/target-count"
chmod +x "$WORK/tap-ten" "$WORK/target-count"
proj=$WORK/project
mkdir -p "$proj"
cat > "$proj/meltano.yml" <<YAML
version: 1
default_environment: bench
environments:
- name: bench
project_id: dsm-latency-bench
plugins:
  extractors:
  - name: tap-ten
    namespace: tap_ten
    executable: $WORK/tap-ten
  loaders:
  - name: target-count
    namespace: target_count
    executable: $WORK/target-count
YAML

# One run first, to create the store and check the stream arrives whole.
(cd "$proj" && "$BIN/dsm" run tap-ten target-count > /dev/null 2>&1)
records=$(jq .records "$WORK/summary.json")
[ "$records" = 10 ] || { echo "the target received $records records, not 10" >&2; exit 1; }

version=$(median "$RUNS" "$BIN/dsm" --version)
run=$(median "$RUNS" "$BIN/dsm" --cwd "$proj" run tap-ten target-count)
baseline=$(median "$RUNS" sh -c "'$WORK/tap-ten' | '$WORK/target-count'")

printf 'load average %s; median of %d runs\n' "$(cut -d" " -f1 /proc/loadavg)" "$RUNS"
printf 'direct pipe, 10 records : %6.1f ms\n' "$baseline"
printf 'dsm --version           : %6.1f ms\n' "$version"
printf 'dsm run, 10 records     : %6.1f ms  (%.1f ms over the direct pipe)\n' "$run" "$(echo "$run - $baseline" | bc -l)"

# An absolute path: the runs below start in the project's folder.
MELTANO=$(realpath -m "${DSM_TEST_VENV:-.}/bin/meltano")
if [ -n "${DSM_TEST_VENV:-}" ] && [ -x "$MELTANO" ]; then
  # One run first (Meltano installs nothing for executables, but writes its system database),
  # checked like dsm's: a run that fails at once would pass for a fast one.
  rm -f "$WORK/summary.json"
  (cd "$proj" && "$MELTANO" run tap-ten target-count > "$WORK/meltano.log" 2>&1) || true
  records=$(jq .records "$WORK/summary.json" 2>/dev/null || echo none)
  if [ "$records" != 10 ]; then
    echo "meltano run delivered $records records, not 10; the end of its output:" >&2
    tail -5 "$WORK/meltano.log" >&2
    exit 1
  fi
  mversion=$(median "$MELTANO_RUNS" "$MELTANO" --version)
  mrun=$(cd "$proj" && median "$MELTANO_RUNS" "$MELTANO" run tap-ten target-count)
  printf 'meltano --version       : %6.1f ms  (dsm is %.0fx faster)\n' "$mversion" "$(echo "$mversion / $version" | bc -l)"
  printf 'meltano run, 10 records : %6.1f ms  (dsm is %.0fx faster)\n' "$mrun" "$(echo "$mrun / $run" | bc -l)"
else
  echo "meltano                 : skipped (set DSM_TEST_VENV to a venv with meltano installed)"
fi
