#!/usr/bin/env bash
# Kill test (issue #20): `kill -9` of `dsm run` at random moments, many times, on one project.
# After every kill:
#   - the store passes SQLite's `PRAGMA integrity_check`;
#   - the committed bookmark is not ahead of what the loader confirmed: the fake target writes
#     what it received to its output file and flushes it before it confirms a STATE, so the
#     bookmark's id must be at most the highest record id in that file;
#   - the next run starts without manual cleanup (no "already running", exit 3).
# At the end one run without a kill must succeed and commit the last bookmark.
# Usage: benches/kill.sh [TRIALS]   (default 200; DSM_KILL_RECORDS records a run, default 200000)
# Debug binaries are enough: what is measured is correctness, not speed.
set -euo pipefail
cd "$(dirname "$0")/.."

TRIALS=${1:-200}
RECORDS=${DSM_KILL_RECORDS:-200000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsm-kill.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --bin dsm --bin dsm-fake-tap --bin dsm-fake-target
BIN=$PWD/target/debug
proj=$WORK/project
mkdir -p "$proj"
cat > "$proj/tap.sh" <<EOF
#!/bin/sh
exec "$BIN/dsm-fake-tap" --generate $RECORDS --state-every 2000 --stream users "\$@"
EOF
cat > "$proj/target.sh" <<EOF
#!/bin/sh
exec "$BIN/dsm-fake-target" --output "$proj/received.jsonl" "\$@"
EOF
chmod +x "$proj/tap.sh" "$proj/target.sh"
cat > "$proj/meltano.yml" <<'EOF'
version: 1
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-kill
    namespace: tap_kill
    executable: ./tap.sh
    capabilities: [state]
  loaders:
  - name: target-kill
    namespace: target_kill
    executable: ./target.sh
EOF

dsm() { (cd "$proj" && env -u DSM_DATABASE_URI -u DSM_PROJECT_ROOT "$BIN/dsm" "$@"); }

# Prints "ok" or the problem, then the committed bookmark id (0 when none).
check() {
    python3 - "$proj/.dsm/dsm.db" "$proj/received.jsonl" <<'EOF'
import json, sqlite3, sys
db, received = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db)
problem = "ok"
verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
if verdict != "ok":
    problem = "integrity_check: " + verdict
row = conn.execute("SELECT completed_state, partial_state FROM state").fetchone()
bookmark = 0
if row:
    for text in row:
        value = json.loads(text or "{}")
        value = value.get("singer_state", value)
        bookmark = max(bookmark, value.get("bookmarks", {}).get("users", {}).get("id", 0))
highest = 0
try:
    with open(received, "rb") as f:
        for line in f:
            if b'"RECORD"' in line:
                try:
                    highest = max(highest, json.loads(line)["record"]["id"])
                except ValueError:
                    pass  # the last line, torn by the kill
except FileNotFoundError:
    pass
if bookmark > highest:
    problem = f"bookmark {bookmark} ahead of the loader's {highest}"
print(problem, bookmark)
EOF
}

kills=0 busy=0 bad=0 committed=0 last=0
for ((i = 1; i <= TRIALS; i++)); do
    rm -f "$proj/received.jsonl"
    (cd "$proj" && exec "$BIN/dsm" run tap-kill target-kill >/dev/null 2>"$WORK/err") &
    pid=$!
    sleep "$(python3 -c 'import random; print(random.uniform(0.05, 1.5))')"
    if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    code=0
    wait "$pid" 2>/dev/null || code=$?
    if [ "$code" = 3 ]; then busy=$((busy + 1)); fi
    read -r verdict bookmark < <(check)
    if [ "$verdict" != ok ]; then
        bad=$((bad + 1))
        echo "trial $i: $verdict" >&2
    fi
    if [ "$bookmark" != "$last" ]; then committed=$((committed + 1)); last=$bookmark; fi
done

rm -f "$proj/received.jsonl"
final=0
dsm run tap-kill target-kill >/dev/null 2>"$WORK/err" || final=$?
read -r verdict bookmark < <(check)
echo "trials: $TRIALS, killed mid-run: $kills, runs refused as already running: $busy"
echo "store problems or bookmarks ahead of the loader: $bad; trials that moved the bookmark: $committed"
echo "final run without a kill: exit $final, $verdict, bookmark $bookmark of $RECORDS"
if [ "$bad" != 0 ] || [ "$busy" != 0 ] || [ "$final" != 0 ] || [ "$bookmark" != "$RECORDS" ]; then
    exit 1
fi
