#!/usr/bin/env bash
# A stream map, dsm against Meltano on the same project (issue 5): a cat-like tap, the mapper
# `meltano-map-transformer` with a mapping that renames the stream, drops two fields, adds an
# md5() field and filters out a tenth of the records, and a counting target.
#   1. `dsm run tap-cat hide target-count`: dsm recognises the mapper and runs the mapping
#      itself, in its pipeline;
#   2. `meltano run tap-cat hide target-count`: Meltano spawns the Python mapper
#      (meltano-map-transform, installed once into target/bench-env/map-transform).
# Meltano comes from $DSM_TEST_VENV (scripts/setup-test-env.sh); without it only dsm runs.
# Usage: benches/mapper.sh [RECORDS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=${1:-1000000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-mapper-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --release --bin dsm --bin dsm-fake-target
BIN=$PWD/target/release

MAPPER_VENV=$PWD/target/bench-env/map-transform
if [ ! -x "$MAPPER_VENV/bin/meltano-map-transform" ]; then
  echo "installing meltano-map-transform into $MAPPER_VENV (once)" >&2
  python3 -m venv "$MAPPER_VENV"
  "$MAPPER_VENV/bin/python" -m pip install --quiet meltano-map-transform==0.12.3
fi

DATA=$WORK/stream.jsonl
awk -v n="$RECORDS" 'BEGIN {
  print "{\"type\":\"SCHEMA\",\"stream\":\"users\",\"key_properties\":[\"id\"],\"schema\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"email\":{\"type\":\"string\"},\"first_name\":{\"type\":[\"string\",\"null\"]},\"last_name\":{\"type\":[\"string\",\"null\"]},\"country\":{\"type\":[\"string\",\"null\"]},\"amount\":{\"type\":[\"number\",\"null\"]},\"created_at\":{\"type\":[\"string\",\"null\"]},\"status\":{\"type\":[\"string\",\"null\"]},\"score\":{\"type\":[\"integer\",\"null\"]},\"note\":{\"type\":[\"string\",\"null\"]}}}}";
  split("US DE FR JP", c, " ");
  for (i = 0; i < n; i++) {
    printf "{\"type\":\"RECORD\",\"stream\":\"users\",\"record\":{\"id\":%d,\"email\":\"user%d@example.com\",\"first_name\":\"Alice\",\"last_name\":\"Smith\",\"country\":\"%s\",\"amount\":%d.%02d,\"created_at\":\"2024-01-01T12:34:56Z\",\"status\":\"%s\",\"score\":%d,\"note\":\"lorem ipsum dolor sit amet\"}}\n", i, i, c[1 + i % 4], i % 1000, i % 100, (i % 10 == 0) ? "inactive" : "active", i % 101;
    if ((i + 1) % 10000 == 0) printf "{\"type\":\"STATE\",\"value\":{\"bookmarks\":{\"users\":{\"id\":%d}}}}\n", i;
  }
}' > "$DATA"
cat "$DATA" > /dev/null # warm the page cache

printf '#!/bin/sh\nexec cat %s\n' "$DATA" > "$WORK/tap-cat"
printf '#!/bin/sh\nexec %s --summary "$SUMMARY"\n' "$BIN/dsm-fake-target" > "$WORK/target-count"
chmod +x "$WORK/tap-cat" "$WORK/target-count"
proj=$WORK/project
mkdir -p "$proj"
cat > "$proj/meltano.yml" <<YAML
version: 1
default_environment: bench
environments:
- name: bench
project_id: dsm-mapper-bench
plugins:
  extractors:
  - name: tap-cat
    namespace: tap_cat
    executable: $WORK/tap-cat
  mappers:
  - name: meltano-map-transformer
    namespace: meltano_map_transformer
    variant: meltano
    pip_url: meltano-map-transform==0.12.3
    executable: $MAPPER_VENV/bin/meltano-map-transform
    mappings:
    - name: hide
      config:
        stream_maps:
          users:
            __alias__: customers
            __filter__: status == 'active'
            contact: email
            email: null
            note: null
            email_hash: md5(email)
  loaders:
  - name: target-count
    namespace: target_count
    executable: $WORK/target-count
YAML

now() { date +%s.%N; }
run_one() { # tool, summary file
  local t0 t1
  t0=$(now)
  ( cd "$proj" && SUMMARY=$2 "$1" run --full-refresh tap-cat hide target-count > "$WORK/$(basename "$1").log" 2>&1 ) \
    || { cat "$WORK/$(basename "$1").log" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}

dsm_s=$(run_one "$BIN/dsm" "$WORK/dsm.json")
kept=$(jq .records "$WORK/dsm.json")
printf 'records: %d in, %d out; load average %s\n' "$RECORDS" "$kept" "$(cut -d" " -f1 /proc/loadavg)"
printf 'dsm run     : %7.2f s  %9.0f records/s\n' "$dsm_s" "$(echo "$RECORDS / $dsm_s" | bc -l)"

MELTANO=${DSM_TEST_VENV:-}/bin/meltano
if [ -n "${DSM_TEST_VENV:-}" ] && [ -x "$MELTANO" ]; then
  m_s=$(run_one "$MELTANO" "$WORK/meltano.json")
  cmp <(jq -c '{records,states}' "$WORK/dsm.json") <(jq -c '{records,states}' "$WORK/meltano.json") \
    || { echo "the target received different counts through dsm and Meltano" >&2; exit 1; }
  printf 'meltano run : %7.2f s  %9.0f records/s\n' "$m_s" "$(echo "$RECORDS / $m_s" | bc -l)"
  printf 'dsm / meltano throughput: %.1fx\n' "$(echo "$m_s / $dsm_s" | bc -l)"
else
  echo "meltano run : skipped (set DSM_TEST_VENV to a venv with Meltano)"
fi
