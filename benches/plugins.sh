#!/usr/bin/env bash
# Throughput of the built-in plugins, each measured alone (release build):
#   target-sqlite fed by `cat` of an N-record Singer stream of a 10-column table
#     (key `id`, a STATE message every 10,000 records);
#   tap-csv reading an N-row, 10-column CSV file to /dev/null.
# Usage: benches/plugins.sh [N]   (default N = 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"

cargo build --release --quiet --bin tap-csv --bin target-sqlite
bin="$(pwd)/target/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One generator for both inputs, so the two benchmarks see the same table.
awk -v n="$n" -v dir="$work" 'BEGIN {
  srand(42);
  split("DE FR US GB NL SE IT ES PL JP", countries, " ");
  stream = dir "/stream.jsonl"; csv = dir "/customers.csv";
  print "{\"type\":\"SCHEMA\",\"stream\":\"customers\",\"key_properties\":[\"id\"],\"schema\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":{\"type\":[\"string\",\"null\"]},\"email\":{\"type\":[\"string\",\"null\"]},\"age\":{\"type\":[\"integer\",\"null\"]},\"balance\":{\"type\":[\"number\",\"null\"]},\"active\":{\"type\":[\"boolean\",\"null\"]},\"created_at\":{\"type\":[\"string\",\"null\"],\"format\":\"date-time\"},\"country\":{\"type\":[\"string\",\"null\"]},\"score\":{\"type\":[\"number\",\"null\"]},\"notes\":{\"type\":[\"string\",\"null\"]}}}}" > stream;
  print "id,name,email,age,balance,active,created_at,country,score,notes" > csv;
  for (i = 1; i <= n; i++) {
    name = "Customer " i; email = "customer" i "@example.com"; age = 18 + int(rand() * 70);
    balance = sprintf("%.2f", rand() * 10000); active = (rand() < 0.5) ? "true" : "false";
    created = sprintf("2024-%02d-%02dT%02d:%02d:%02dZ", 1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60);
    country = countries[1 + i % 10]; score = sprintf("%.4f", rand()); notes = "note number " (i % 1000);
    printf "{\"type\":\"RECORD\",\"stream\":\"customers\",\"record\":{\"id\":%d,\"name\":\"%s\",\"email\":\"%s\",\"age\":%d,\"balance\":%s,\"active\":%s,\"created_at\":\"%s\",\"country\":\"%s\",\"score\":%s,\"notes\":\"%s\"}}\n", i, name, email, age, balance, active, created, country, score, notes > stream;
    if (i % 10000 == 0) printf "{\"type\":\"STATE\",\"value\":{\"bookmarks\":{\"customers\":{\"replication_key\":\"id\",\"replication_key_value\":%d}}}}\n", i > stream;
    printf "%d,%s,%s,%d,%s,%s,%s,%s,%s,%s\n", i, name, email, age, balance, active, created, country, score, notes > csv;
  }
}'

# Runs a command, printing records/s by wall-clock time and by CPU time (user + system): on a
# shared machine the wall clock also counts time spent waiting for a core.
measure() {
  local label="$1"; shift
  local TIMEFORMAT='%R %U %S' t
  t=$( { time "$@" > /dev/null; } 2>&1 )
  awk -v n="$n" -v label="$label" -v t="$t" 'BEGIN {
    split(t, a, " "); cpu = a[2] + a[3];
    printf "%s: %d records in %.2f s wall = %.0f records/s; %.2f s CPU = %.0f records/s\n",
      label, n, a[1], n / a[1], cpu, n / cpu }'
}

printf '{"database": "%s/bench.db"}\n' "$work" > "$work/target.json"
measure target-sqlite sh -c "cat '$work/stream.jsonl' | '$bin/target-sqlite' --config '$work/target.json'"

printf '{"files": [{"entity": "customers", "path": "%s/customers.csv", "keys": ["id"]}]}\n' "$work" > "$work/tap.json"
measure tap-csv "$bin/tap-csv" --config "$work/tap.json"
