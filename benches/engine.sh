#!/usr/bin/env bash
# Throughput of the pipeline engine, three ways on the same stream:
#   1. a direct shell pipe:  cat FILE | counting-target            (the floor)
#   2. dsm's pipeline:       cat FILE → dsm → counting-target       (examples/engine_bench.rs,
#                            the library's pipeline alone)
#   3. `dsm run tap-cat target-count` in a project: the whole command (project, store, lock,
#                            run history, every STATE committed)
#   4. meltano run, when $DSM_TEST_VENV/bin/meltano exists (same project)
# The stream: 1,000,000 ~250-byte RECORD lines, a STATE every 10,000.
# Targets (issue 3): dsm ≥ 50% of the direct pipe's throughput, dsm peak RSS ≤ 30 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${DSM_BENCH_RECORDS:-1000000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --release --example engine_bench --bin dsm --bin dsm-fake-tap --bin dsm-fake-target
BIN=$PWD/target/release
DATA=$WORK/stream.jsonl
"$BIN/dsm-fake-tap" --generate "$RECORDS" --state-every 10000 > "$DATA"
SIZE=$(stat -c %s "$DATA")
cat "$DATA" > /dev/null # warm the page cache

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

# The project `dsm run` and `meltano run` use: a tap that is `cat` of the stream, the counting
# target.
proj=$WORK/project
mkdir -p "$proj"
printf '#!/bin/sh\nexec cat %s\n' "$DATA" > "$WORK/tap-cat"
printf '#!/bin/sh\nexec %s --summary "$SUMMARY"\n' "$BIN/dsm-fake-target" > "$WORK/target-count"
chmod +x "$WORK/tap-cat" "$WORK/target-count"
cat > "$proj/meltano.yml" <<YAML
version: 1
default_environment: bench
environments:
- name: bench
project_id: dsm-engine-bench
plugins:
  extractors:
  - name: tap-cat
    namespace: tap_cat
    executable: $WORK/tap-cat
  loaders:
  - name: target-count
    namespace: target_count
    executable: $WORK/target-count
YAML

# Peak resident memory (KiB) of process $1 while it lives, sampled every 20 ms.
watch_rss() {
  local pid=$1 peak=0 v
  while v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$v" ]; do
    peak=$v
    sleep 0.02
  done
  echo "$peak"
}

# Best of $RUNS for each (the machine may be shared; the best run is the least disturbed).
RUNS=${DSM_BENCH_RUNS:-3}
best() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
direct=""
dsm=""
rss_kib=0
for _ in $(seq "$RUNS"); do
  # 1. Direct pipe.
  t0=$(now)
  /usr/bin/time -f "%U %S" -o "$WORK/direct.cpu" sh -c "cat '$DATA' | '$BIN/dsm-fake-target' --summary '$WORK/direct.json' > /dev/null"
  direct_cpu=$(best "${direct_cpu:-}" "$(awk '{print $1 + $2}' "$WORK/direct.cpu")")
  t1=$(now)
  direct=$(best "$direct" "$(secs "$t0" "$t1")")

  # 2. dsm pipeline (peak RSS of the dsm process itself, from /proc/self/status).
  t0=$(now)
  /usr/bin/time -f "%U %S" -o "$WORK/dsm.cpu" "$BIN/examples/engine_bench" "$DATA" "$BIN/dsm-fake-target" "$WORK/dsm.json" "$WORK/run" 2> "$WORK/dsm.log"
  dsm_cpu=$(best "${dsm_cpu:-}" "$(awk '{print $1 + $2}' "$WORK/dsm.cpu")")
  t1=$(now)
  dsm=$(best "$dsm" "$(secs "$t0" "$t1")")
  rss=$(grep -o 'peak_rss_kib=[0-9]*' "$WORK/dsm.log" | cut -d= -f2)
  [ "$rss" -gt "$rss_kib" ] && rss_kib=$rss

  # 3. dsm run, the whole command, timed on its own (no sampler running beside it).
  t0=$(now)
  ( cd "$proj" && SUMMARY=$WORK/run.json /usr/bin/time -f "%U %S" -o "$WORK/run.cpu" "$BIN/dsm" run tap-cat target-count > "$WORK/run.log" 2>&1 )
  t1=$(now)
  run=$(best "${run:-}" "$(secs "$t0" "$t1")")
  run_cpu=$(best "${run_cpu:-}" "$(awk '{print $1 + $2}' "$WORK/run.cpu")")
done
# Peak memory of `dsm run`, from one more run sampled every 20 ms (not timed: the sampler's own
# processes would slow the run it measures).
( cd "$proj" && SUMMARY=$WORK/rss.json exec "$BIN/dsm" run tap-cat target-count > "$WORK/rss.log" 2>&1 ) &
runner=$!
sleep 0.05
dsm_pid=$(pgrep -n -f "$BIN/dsm run tap-cat" || true)
run_rss_kib=0
[ -n "$dsm_pid" ] && run_rss_kib=$(watch_rss "$dsm_pid")
wait "$runner"
cat "$WORK/dsm.log"

for got in dsm run; do
  cmp <(jq -c '{lines,records,states,bytes}' "$WORK/direct.json") <(jq -c '{lines,records,states,bytes}' "$WORK/$got.json") \
    || { echo "the target received different data through dsm ($got)" >&2; exit 1; }
done

mb=$(echo "$SIZE / 1048576" | bc -l)
printf 'stream: %d records, %.0f MiB; best of %d runs; load average %s\n' "$RECORDS" "$mb" "$RUNS" "$(cut -d" " -f1 /proc/loadavg)"
printf 'direct pipe : %6.3f s  %7.1f MiB/s\n' "$direct" "$(echo "$mb / $direct" | bc -l)"
printf 'dsm pipeline: %6.3f s  %7.1f MiB/s  (%.0f%% of direct)  peak RSS %.1f MiB (max of runs)\n' \
  "$dsm" "$(echo "$mb / $dsm" | bc -l)" "$(echo "100 * $direct / $dsm" | bc -l)" "$(echo "$rss_kib / 1024" | bc -l)"

printf 'dsm run     : %6.3f s  %7.1f MiB/s  (%.0f%% of direct)  peak RSS %.1f MiB (sampled)\n' \
  "$run" "$(echo "$mb / $run" | bc -l)" "$(echo "100 * $direct / $run" | bc -l)" "$(echo "${run_rss_kib:-0} / 1024" | bc -l)"

# CPU seconds of all processes (tap, dsm, target): a figure a busy machine disturbs less.
printf 'cpu seconds : direct %.2f, through dsm %.2f (direct/dsm = %.0f%%), dsm run %.2f (%.0f%%)\n' \
  "$direct_cpu" "$dsm_cpu" "$(echo "100 * $direct_cpu / $dsm_cpu" | bc -l)" "$run_cpu" "$(echo "100 * $direct_cpu / $run_cpu" | bc -l)"

# 4. meltano run, when installed.
# An absolute path: meltano runs from inside the project directory.
MELTANO=$(cd "${DSM_TEST_VENV:-/nonexistent}" 2>/dev/null && pwd)/bin/meltano
if [ -n "${DSM_TEST_VENV:-}" ] && [ -x "$MELTANO" ]; then
  t0=$(now)
  (cd "$proj" && SUMMARY=$WORK/meltano.json "$MELTANO" run tap-cat target-count > "$WORK/meltano.log" 2>&1)
  t1=$(now)
  mel=$(secs "$t0" "$t1")
  printf 'meltano run : %6.3f s  %7.1f MiB/s  (%.0f%% of direct; dsm run is %.1fx faster)\n' \
    "$mel" "$(echo "$mb / $mel" | bc -l)" "$(echo "100 * $direct / $mel" | bc -l)" "$(echo "$mel / $run" | bc -l)"
else
  echo "meltano run : skipped (set DSM_TEST_VENV to a venv with meltano installed)"
fi
