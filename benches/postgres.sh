#!/usr/bin/env bash
# dsm's built-in tap-postgres and target-postgres against MeltanoLabs' plugins and against
# PostgreSQL's own COPY, all in one run on one throwaway cluster (scripts/pg-test-cluster.sh):
#
#   target: the same N Singer records (a 10-column table, key `id`, a STATE every 10,000) loaded
#           by dsm's target-postgres, by meltanolabs-target-postgres, and the same rows as CSV
#           by `psql \copy`;
#   tap:    an N-row table read by dsm's tap-postgres, by meltanolabs-tap-postgres (both to
#           /dev/null), and by `COPY ... TO STDOUT` to /dev/null;
#   end to end: `dsm run tap-postgres target-postgres` (built-ins) against `meltano run` of the
#           MeltanoLabs pair, same table, into an empty database each.
#
# MeltanoLabs' plugins are installed (versions pinned as in dsm's catalog) into venvs under
# target/bench-postgres/; Meltano from target/test-env/venv (scripts/setup-test-env.sh).
# Usage: benches/postgres.sh [N]   (default N = 1000000). Prints the load average with each figure.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
n="${1:-1000000}"
tap_pin="meltanolabs-tap-postgres==0.10.0"
target_pin="meltanolabs-target-postgres==0.8.1"

# DSM_BENCH_BIN: a folder with already built binaries (to try the script on a debug build).
if [[ -n "${DSM_BENCH_BIN:-}" ]]; then
    bin="$DSM_BENCH_BIN"
else
    cargo build --release --quiet --bin dsm --bin tap-postgres --bin target-postgres
    bin="${CARGO_TARGET_DIR:-$root/target}/release"
fi
venvs="$root/target/bench-postgres"
mkdir -p "$venvs"
for p in "tap:$tap_pin" "target:$target_pin"; do
    name="${p%%:*}" pin="${p#*:}"
    if [[ ! -x "$venvs/$name-venv/bin/$name-postgres" ]]; then
        python3 -m venv "$venvs/$name-venv"
        "$venvs/$name-venv/bin/pip" install -q "$pin"
    fi
done
meltano="${DSM_TEST_VENV:-$root/target/test-env/venv}/bin/meltano"

work="$(mktemp -d)"
chmod 755 "$work"
cluster="$work/cluster"
mkdir "$cluster"
trap 'bash scripts/pg-test-cluster.sh stop "$cluster"; rm -rf "$work"' EXIT
url=$(bash scripts/pg-test-cluster.sh start "$cluster")
port=${url##*:}; port=${port%%/*}
base="${url%/postgres}"
for db in src dst_dsm dst_ml dst_copy e2e_dsm e2e_ml; do
    psql -q "$url" -c "CREATE DATABASE $db"
done

echo "N = $n; PostgreSQL $(psql -Atc 'SHOW server_version' "$url"); $(nproc) cores"
psql -q "$base/src" <<SQL
CREATE TABLE public.customers (
    id bigint PRIMARY KEY, name text, email text, age integer, balance numeric(12,2),
    active boolean, created_at timestamptz, country text, score double precision, notes text);
INSERT INTO public.customers
SELECT i, 'Customer ' || i, 'customer' || i || '@example.com', 18 + (i * 7919) % 70,
       ((i * 104729) % 1000000) / 100.0, i % 2 = 0,
       timestamptz '2024-01-01 00:00+00' + (i || ' seconds')::interval,
       (ARRAY['DE','FR','US','GB','NL','SE','IT','ES','PL','JP'])[1 + i % 10],
       ((i * 31) % 10000) / 10000.0, 'note number ' || (i % 1000)
FROM generate_series(1::bigint, $n) i;
VACUUM ANALYZE public.customers;
SQL

config() { # database [extra JSON members]
    printf '{"host": "127.0.0.1", "port": %s, "user": "postgres", "password": "dsm-test", "database": "%s", "ssl_mode": "disable"%s}\n' \
        "$port" "$1" "${2:+, $2}"
}
config src > "$work/tap.json"
config src '"filter_schemas": ["public"], "sqlalchemy_url": "postgresql://postgres:dsm-test@127.0.0.1:'"$port"'/src"' > "$work/ml-tap.json"
# MeltanoLabs' tap syncs only what a catalog selects.
"$venvs/tap-venv/bin/tap-postgres" --config "$work/ml-tap.json" --discover 2>/dev/null | python3 -c '
import json, sys
catalog = json.load(sys.stdin)
for stream in catalog["streams"]:
    for m in stream["metadata"]:
        if m["breadcrumb"] == []:
            m["metadata"]["selected"] = stream["tap_stream_id"] == "public-customers"
json.dump(catalog, sys.stdout)' > "$work/ml-catalog.json"

# records/s by wall clock and by CPU time of the measured process tree (user + system).
measure() {
    local label="$1"; shift
    local TIMEFORMAT='%R %U %S' t
    t=$( { time "$@" > /dev/null 2>> "$work/stderr.log"; } 2>&1 )
    awk -v n="$n" -v label="$label" -v t="$t" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        split(t, a, " "); cpu = a[2] + a[3];
        printf "%-34s %8.2f s wall %10.0f rows/s   client CPU %7.2f s   load %s\n",
            label, a[1], n / a[1], cpu, load }'
}

echo "--- tap: read the table to /dev/null"
measure "COPY TO STDOUT (psql)" psql -q "$base/src" -c "COPY public.customers TO STDOUT"
measure "dsm tap-postgres" "$bin/tap-postgres" --config "$work/tap.json"
"$bin/tap-postgres" --config "$work/tap.json" --discover > "$work/catalog.json"
measure "meltanolabs-tap-postgres" "$venvs/tap-venv/bin/tap-postgres" --config "$work/ml-tap.json" --catalog "$work/ml-catalog.json"

echo "--- target: load the same records into an empty database"
"$bin/tap-postgres" --config "$work/tap.json" > "$work/records.singer"
psql -q "$base/src" -c "\\copy public.customers TO '$work/customers.csv' (FORMAT csv)"
pg_dump -s -t public.customers "$base/src" | psql -q "$base/dst_copy" > /dev/null
measure "psql \\copy FROM (CSV)" psql -q "$base/dst_copy" -c "\\copy public.customers FROM '$work/customers.csv' (FORMAT csv)"
config dst_dsm '"default_target_schema": "public"' > "$work/target.json"
measure "dsm target-postgres" sh -c "'$bin/target-postgres' --config '$work/target.json' < '$work/records.singer'"
config dst_ml '"default_target_schema": "public", "sqlalchemy_url": "postgresql://postgres:dsm-test@127.0.0.1:'"$port"'/dst_ml"' > "$work/ml-target.json"
measure "meltanolabs-target-postgres" sh -c "'$venvs/target-venv/bin/target-postgres' --config '$work/ml-target.json' < '$work/records.singer'"
for db in dst_copy dst_dsm dst_ml; do
    echo "  $db: $(psql -Atc 'SELECT count(*) FROM public.customers' "$base/$db") rows"
done

echo "--- end to end: dsm run (built-ins) against meltano run (MeltanoLabs' plugins)"
mkdir -p "$work/dsm-project" "$work/ml-project"
cat > "$work/dsm-project/meltano.yml" <<YML
version: 1
default_environment: dev
environments: [{name: dev}]
plugins:
  extractors: [{name: tap-postgres, variant: dsm, config: {host: 127.0.0.1, port: $port, user: postgres, database: src, filter_schemas: [public], ssl_mode: disable}}]
  loaders: [{name: target-postgres, variant: dsm, config: {host: 127.0.0.1, port: $port, user: postgres, database: e2e_dsm, default_target_schema: public, ssl_mode: disable}}]
YML
cat > "$work/ml-project/meltano.yml" <<YML
version: 1
default_environment: dev
project_id: dsm-bench-postgres
environments: [{name: dev}]
plugins:
  extractors: [{name: tap-postgres, namespace: tap_postgres, executable: $venvs/tap-venv/bin/tap-postgres, capabilities: [catalog, discover, state, about], select: [public-customers.*], config: {filter_schemas: [public], sqlalchemy_url: "postgresql://postgres:dsm-test@127.0.0.1:$port/src"}}]
  loaders: [{name: target-postgres, namespace: target_postgres, executable: $venvs/target-venv/bin/target-postgres, config: {default_target_schema: public, sqlalchemy_url: "postgresql://postgres:dsm-test@127.0.0.1:$port/e2e_ml"}}]
YML
export TAP_POSTGRES_PASSWORD=dsm-test TARGET_POSTGRES_PASSWORD=dsm-test
measure "dsm run (built-ins)" "$bin/dsm" --cwd "$work/dsm-project" run tap-postgres target-postgres
if [[ -x "$meltano" ]]; then
    measure "meltano run (MeltanoLabs)" sh -c "cd '$work/ml-project' && '$meltano' run tap-postgres target-postgres"
else
    echo "meltano run: skipped, no Meltano at $meltano (run scripts/setup-test-env.sh)"
fi
for db in e2e_dsm e2e_ml; do
    echo "  $db: $(psql -Atc 'SELECT count(*) FROM public.customers' "$base/$db" 2>/dev/null || echo none) rows"
done
