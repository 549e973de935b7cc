#!/usr/bin/env bash
# `dsm serve` under load (issue 24): a project with 10,000 registered sources, `GET /api/sources`
# pages of 100 at 50 concurrent keep-alive clients on loopback; p50 and p99. The baseline in the
# same run is `GET /healthz` (no token, no store) at the same concurrency.
# Goal: p99 under 20 ms for a page of 100.
# DSM_BENCH_SOURCES (10000), DSM_BENCH_CLIENTS (50) and DSM_BENCH_REQUESTS (per client, 100)
# change the load.
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCES=${DSM_BENCH_SOURCES:-10000}
export DSM_BENCH_CLIENTS=${DSM_BENCH_CLIENTS:-50}
export DSM_BENCH_REQUESTS=${DSM_BENCH_REQUESTS:-100}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-serve-bench.XXXXXX")
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# DSM_BENCH_BIN runs another build of dsm (e.g. target/debug/dsm to try the script out; the
# figures in the README come from the release build).
if [ -n "${DSM_BENCH_BIN:-}" ]; then
  BIN=$DSM_BENCH_BIN
else
  cargo build --quiet --release --bin dsm
  BIN=$PWD/target/release/dsm
fi
# The client is built like dsm: release, or the dev profile when trying out another build.
PROFILE=()
[ -n "${DSM_BENCH_BIN:-}" ] && PROFILE=(--profile dev)
client() { cargo bench --quiet "${PROFILE[@]}" --bench serve_client 2>/dev/null; }
cargo bench --quiet "${PROFILE[@]}" --bench serve_client --no-run 2>/dev/null

python3 - "$WORK/meltano.yml" "$SOURCES" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("version: 1\nplugins:\n  extractors:\n")
    for i in range(n):
        f.write(f"  - name: tap-bench-{i:05d}\n    namespace: tap_bench\n    executable: tap-bench\n"
                f"    annotations: {{dsm: {{source: {{provider: P{i % 50}, category: c{i % 7}, labels: [l{i % 3}]}}}}}}\n")
PY
export DSM_DATABASE_URI=$WORK/dsm.db
TOKEN=$(cd "$WORK" && "$BIN" tokens create bench --role viewer)
(cd "$WORK" && exec "$BIN" serve --bind 127.0.0.1:0 2> "$WORK/serve.log") &
SERVER=$!
for _ in $(seq 600); do
  ADDR=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1 | sed 's|http://||') || true
  [ -n "${ADDR:-}" ] && break
  sleep 0.1
done
[ -n "${ADDR:-}" ] || { cat "$WORK/serve.log"; exit 1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $SOURCES sources; $DSM_BENCH_CLIENTS clients x $DSM_BENCH_REQUESTS requests"
export DSM_BENCH_ADDR=$ADDR DSM_BENCH_TOKEN=$TOKEN
DSM_BENCH_PATH=/healthz client
DSM_BENCH_PATH='/api/sources?limit=100' client
DSM_BENCH_PATH='/api/sources?limit=100&provider=P7' client
