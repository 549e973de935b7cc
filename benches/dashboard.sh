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

DSM_TOKEN=$TOKEN python3 - "$ADDR" "$DRIVER_PORT" "$LOADS" "$WORK/profile" <<'PY'
import json, os, statistics, sys, time, urllib.request

base, port, loads, profile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
wd = f"http://127.0.0.1:{port}"

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(wd + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)["value"]

for _ in range(100):
    try:
        if call("GET", "/status")["ready"]:
            break
    except OSError:
        time.sleep(0.1)
args = ["--headless=new", f"--user-data-dir={profile}", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,800"]
sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {
    "browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}})["sessionId"]
s = f"/session/{sid}"
run = lambda script, *a: call("POST", s + "/execute/sync", {"script": script, "args": list(a)})

def measure(hash_, wait_mark):
    fcp, content = [], []
    for _ in range(loads):
        call("POST", s + "/url", {"url": "about:blank"})
        call("POST", s + "/url", {"url": f"{base}/{hash_}"})
        deadline = time.time() + 30
        while True:
            got = run("""const p = performance.getEntriesByName('first-contentful-paint')[0];
                         const c = performance.getEntriesByName('dsm:content')[0];
                         return [p ? p.startTime : null, c ? c.startTime : null];""")
            if got[0] is not None and (got[1] is not None or not wait_mark):
                break
            if time.time() > deadline:
                raise SystemExit(f"{hash_}: no paint within 30 s: {got}")
            time.sleep(0.02)
        fcp.append(got[0])
        if wait_mark:
            content.append(got[1])
    return fcp, content

# The baseline: the login page (the shell, no API call).
call("POST", s + "/url", {"url": f"{base}/"})
run("localStorage.clear();")
base_fcp, _ = measure("#/login", False)
# Sign in as the dashboard does.
call("POST", s + "/execute/async", {"script": """const done = arguments[arguments.length - 1];
    fetch('/api/session', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({token: arguments[0]})}).then((r) => r.json()).then((i) => {
      localStorage.setItem('dsm.who', JSON.stringify({name: i.name, role: i.role})); done(i.name); });""",
    "args": [os.environ["DSM_TOKEN"]]})
rows = [("login page (baseline)", base_fcp, None)]
for name, hash_ in [("overview", "#/"), ("source list", "#/sources")]:
    fcp, content = measure(hash_, True)
    rows.append((name, fcp, content))
call("DELETE", s)

med = lambda xs: statistics.median(xs)
print(f"{'page':<24} {'FCP median':>11} {'FCP max':>8} {'content median':>15} {'content max':>12} {'vs baseline':>12}")
for name, fcp, content in rows:
    c_med = f"{med(content):.0f} ms" if content else "-"
    c_max = f"{max(content):.0f} ms" if content else "-"
    ratio = f"{med(content) / med(base_fcp):.2f}x" if content else "1.00x"
    print(f"{name:<24} {med(fcp):>8.0f} ms {max(fcp):>5.0f} ms {c_med:>15} {c_max:>12} {ratio:>12}")
PY
