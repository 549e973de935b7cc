#!/usr/bin/env bash
# Team mode against the default SQLite store, side by side in one run on one machine: the same
# project runs with its store in `.dsm/dsm.db` and in a PostgreSQL database of a throwaway
# cluster (scripts/pg-test-cluster.sh, fsync off as for the tests: it measures dsm, not disks).
#
#   small: a 10-record `dsm run` (the built-in fake tap into target-jsonl), REPEAT times each,
#          median wall time (issue 23's goal: PostgreSQL at most 2x SQLite);
#   relay: an N-record run with a STATE every 10,000 records, RELAY_RUNS times each (default 5),
#          taking turns, median records/s (goal: within 10%);
#   merged: the merge benchmark (`cargo bench --bench merge`: 1,000,000 records from three
#          sources with 30% overlapping keys) on both stores in one process, taking turns for
#          DSM_BENCH_MERGE_RUNS rounds (default 3), median records/s (goal: PostgreSQL at least
#          half of SQLite's).
# Usage: benches/team-store.sh [N] [REPEAT]   (defaults 1000000 and 20). Prints the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
n="${1:-1000000}"
repeat="${2:-20}"

# DSM_BENCH_BIN: a folder with already built binaries (to try the script on a debug build).
if [[ -n "${DSM_BENCH_BIN:-}" ]]; then
    bin="$DSM_BENCH_BIN"
else
    cargo build --release --locked --quiet --bin dsm --bin dsm-fake-tap --bin target-jsonl
    bin="${CARGO_TARGET_DIR:-$root/target}/release"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dsm-bench-team.XXXXXX")
pg=$(mktemp -d "${TMPDIR:-/tmp}/dsm-bench-team-pg.XXXXXX")
trap 'bash scripts/pg-test-cluster.sh stop "$pg"; rm -rf "$work"' EXIT
url=$(bash scripts/pg-test-cluster.sh start "$pg")
server="${url%/*}"
export PATH="$bin:$PATH"

project() { # DIR RECORDS
    mkdir -p "$1"
    cat >"$1/tap" <<SH
#!/bin/sh
exec "$bin/dsm-fake-tap" --generate $2 --state-every 10000 "\$@"
SH
    chmod +x "$1/tap"
    cat >"$1/meltano.yml" <<YML
version: 1
project_id: bench-$(basename "$1")
send_anonymous_usage_stats: false
plugins:
  extractors:
  - name: tap-bench
    namespace: tap_bench
    executable: $1/tap
    capabilities: [state]
  loaders:
  - name: target-jsonl
    variant: dsm
    executable: target-jsonl
    config:
      destination_path: out
YML
}

# Seconds one `dsm run` takes in DIR with the store URI (empty: SQLite).
timed_run() { # DIR URI
    local start end
    # target-jsonl appends: without this, each run wrote behind the previous runs' gigabytes
    # and the kernel's writeback of them slowed the later runs.
    rm -rf "$1/out"
    start=$(date +%s.%N)
    (cd "$1" && DSM_DATABASE_URI="$2" dsm run tap-bench target-jsonl >/dev/null 2>"$1/last.err") ||
        { cat "$1/last.err" >&2; echo "team-store: the run in $1 failed" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.4f}')"
}

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.4f}")' "$@"; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
small_uri="$server/postgres?sslmode=disable&schema=bench_small"
for store in sqlite postgresql; do
    project "$work/small-$store" 10
done
timed_run "$work/small-sqlite" "" >/dev/null # first use: the store is created
timed_run "$work/small-postgresql" "$small_uri" >/dev/null
# The two stores take turns, so a change in the machine's load falls on both.
lite=()
pg_times=()
for _ in $(seq "$repeat"); do
    lite+=("$(timed_run "$work/small-sqlite" "")")
    pg_times+=("$(timed_run "$work/small-postgresql" "$small_uri")")
done
small=("$(median "${lite[@]}")" "$(median "${pg_times[@]}")")
echo "small (sqlite): median ${small[0]} s over $repeat runs of 10 records"
echo "small (postgresql): median ${small[1]} s over $repeat runs of 10 records, alternating"
echo "small: PostgreSQL / SQLite = $(python3 -c "print(f'{${small[1]} / ${small[0]}:.2f}')")x (goal: at most 2x)"

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
relay_uri="$server/postgres?sslmode=disable&schema=bench_relay"
for store in sqlite postgresql; do
    project "$work/relay-$store" "$n"
done
(cd "$work/relay-sqlite" && dsm state list >/dev/null)
(cd "$work/relay-postgresql" && DSM_DATABASE_URI="$relay_uri" dsm state list >/dev/null)
# RELAY_RUNS runs each (default 5), taking turns; the median of each.
lite=()
pg_times=()
for _ in $(seq "${RELAY_RUNS:-5}"); do
    lite+=("$(timed_run "$work/relay-sqlite" "")")
    pg_times+=("$(timed_run "$work/relay-postgresql" "$relay_uri")")
done
for i in 0 1; do
    if [[ $i == 0 ]]; then store=sqlite; s=$(median "${lite[@]}"); else store=postgresql; s=$(median "${pg_times[@]}"); fi
    relay[i]=$(python3 -c "print(int($n / $s))")
    echo "relay ($store): $n records in $s s (median of ${RELAY_RUNS:-5}), ${relay[i]} records/s"
done
echo "relay: PostgreSQL / SQLite = $(python3 -c "print(f'{${relay[1]} / ${relay[0]}:.1%}')") of the records/s (goal: at least 90%)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# The merged stream: SQLite and PostgreSQL taking turns, in the same process.
DSM_BENCH_PG_URI="$server/postgres?sslmode=disable&schema=bench_merge" \
    cargo bench --locked --quiet --bench merge 2>&1 |
    grep -E '^(sqlite|postgresql)( [0-9]+/[0-9]+)?: resolved|^(sqlite|postgresql): median|^merged stream:'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
