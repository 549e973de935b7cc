#!/usr/bin/env bash
# `dsm serve` under load (issue 24): a project with 10,000 registered sources, `GET /api/sources`
# pages of 100 at 50 concurrent keep-alive clients on loopback; p50 and p99. The baseline in the
# same run is `GET /healthz` (no token, no store) at the same concurrency.
# Goal: p99 under 20 ms for a page of 100.
# DSM_BENCH_SOURCES (10000), DSM_BENCH_CLIENTS (50) and DSM_BENCH_REQUESTS (per client, 100)
# change the load. DSM_BENCH_CLIENT=wrk drives the load with wrk (Debian's `wrk` package: 2
# threads, DSM_BENCH_CLIENTS connections, DSM_BENCH_SECONDS (10) per path) instead of the
# bench client, so no second build of dsm's library is needed for the client.
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
if [ "${DSM_BENCH_CLIENT:-}" = wrk ]; then
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 2; }
  client() {
    echo "GET $DSM_BENCH_PATH"
    # The token goes through the environment, never wrk's argv.
    echo 'wrk.headers["Authorization"] = "Bearer " .. os.getenv("DSM_BENCH_TOKEN")' > "$WORK/auth.lua"
    wrk -t2 -c"$DSM_BENCH_CLIENTS" -d"${DSM_BENCH_SECONDS:-10}s" --latency -s "$WORK/auth.lua" \
      "http://$DSM_BENCH_ADDR$DSM_BENCH_PATH" |
      grep -E 'Latency|50%|90%|99%|Requests/sec|Non-2xx'
  }
else
  client() { cargo bench --quiet "${PROFILE[@]}" --bench serve_client 2>/dev/null; }
  cargo bench --quiet "${PROFILE[@]}" --bench serve_client --no-run 2>/dev/null
fi

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
