#!/usr/bin/env bash
# The web dashboard with 10,000 registered sources (issue 25): how soon the overview and the
# source list show their content in a real browser (headless Chromium through chromedriver, on
# loopback). Each page is loaded fresh DSM_BENCH_LOADS times (default 15); the figures are the
# median and the slowest of
#   - first contentful paint (the browser's paint timing), and
#   - content: the page's `dsm:content` mark, set when its data is on screen (the overview's
#     counts and runs; the first 50 rows of the list),
# in ms from the navigation's start. The baseline in the same run is the login page, which
# paints the shell without calling the API. Goal: content under 300 ms.
# DSM_BENCH_SOURCES (10000) changes the size; DSM_BENCH_BIN runs another build of dsm.
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCES=${DSM_BENCH_SOURCES:-10000}
LOADS=${DSM_BENCH_LOADS:-15}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-dashboard-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${DSM_BENCH_BIN:-}" ]; then
  BIN=$DSM_BENCH_BIN
else
  cargo build --quiet --release --bin dsm
  BIN=$PWD/target/release/dsm
fi
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "needs $tool: apt-get install -y chromium chromium-driver" >&2; exit 2; }
done

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
PIDS+=($!)
for _ in $(seq 600); do
  ADDR=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1) || true
  [ -n "${ADDR:-}" ] && break
  sleep 0.1
done
[ -n "${ADDR:-}" ] || { cat "$WORK/serve.log"; exit 1; }
DRIVER_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/bin/chromedriver --port="$DRIVER_PORT" --allowed-ips=127.0.0.1 > /dev/null 2>&1 &
PIDS+=($!)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $SOURCES sources; $LOADS loads per page"

DSM_TOKEN=$TOKEN python3 benches/dashboard_paint.py "$ADDR" "$DRIVER_PORT" "$LOADS" "$WORK/profile"
