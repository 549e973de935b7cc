#!/usr/bin/env bash
# Webhook intake under load (issue 28): 50 concurrent keep-alive senders POST signed events of
# about 400 bytes to `/api/webhooks/tap-webhook` on a real `dsm serve` on loopback; every event
# is stored (durably: the store commits with fsync) before its 202. Requests/s, p50 and p99.
# The baseline in the same run is `GET /healthz` (no token, no store) at the same concurrency.
# DSM_BENCH_CLIENTS (50) and DSM_BENCH_REQUESTS (per client, 100) change the load.
set -euo pipefail
cd "$(dirname "$0")/.."

export DSM_BENCH_CLIENTS=${DSM_BENCH_CLIENTS:-50}
export DSM_BENCH_REQUESTS=${DSM_BENCH_REQUESTS:-100}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-webhooks-bench.XXXXXX")
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# DSM_BENCH_BIN runs another build of dsm (e.g. target/debug/dsm to try the script out, or the
# target/release/dsm that `cargo bench` built).
if [ -n "${DSM_BENCH_BIN:-}" ]; then
  BIN=$DSM_BENCH_BIN
else
  cargo build --quiet --release --bin dsm
  BIN=$PWD/target/release/dsm
fi
# The clients are built like dsm: release, or the dev profile for a debug build of dsm.
PROFILE=()
case "${DSM_BENCH_BIN:-}" in */debug/*) PROFILE=(--profile dev) ;; esac
cargo bench --quiet "${PROFILE[@]}" --bench webhooks_client --bench serve_client --no-run 2>/dev/null

cat > "$WORK/meltano.yml" <<'YML'
version: 1
plugins:
  extractors:
  - name: tap-webhook
    variant: dsm
    annotations: {dsm: {source: {type: webhook}, webhooks: {max_events: 10000000}}}
    settings:
    - {name: secret, kind: password}
YML
export DSM_DATABASE_URI=$WORK/dsm.db
SECRET=bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The secret reaches the server through the plugin's variable (kept out of argv).
export TAP_WEBHOOK_SECRET=$SECRET
(cd "$WORK" && exec "$BIN" serve --bind 127.0.0.1:0 2> "$WORK/serve.log") &
SERVER=$!
for _ in $(seq 600); do
  ADDR=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1 | sed 's|http://||') || true
  [ -n "${ADDR:-}" ] && break
  sleep 0.1
done
[ -n "${ADDR:-}" ] || { cat "$WORK/serve.log"; exit 1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $DSM_BENCH_CLIENTS senders x $DSM_BENCH_REQUESTS events"
export DSM_BENCH_ADDR=$ADDR DSM_BENCH_SOURCE=tap-webhook DSM_BENCH_SECRET=$SECRET
DSM_BENCH_PATH=/healthz cargo bench --quiet "${PROFILE[@]}" --bench serve_client 2>/dev/null
cargo bench --quiet "${PROFILE[@]}" --bench webhooks_client 2>/dev/null
STORED=$(cd "$WORK" && "$BIN" --format json webhooks list tap-webhook --limit 100000000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "events stored: $STORED (expected $((DSM_BENCH_CLIENTS * DSM_BENCH_REQUESTS)))"
