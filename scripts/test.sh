#!/usr/bin/env bash
# Runs dsm's whole test suite on a fresh machine: installs what the tests need, then runs them.
# Needs only the Rust toolchain, Python 3 and pip; everything else is installed here (PostgreSQL
# server binaries with apt-get when missing, by scripts/pg-test-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python plugins and real Meltano for the compatibility and real-plugin tests.
bash scripts/setup-test-env.sh

# Debian's Chromium and chromedriver for the dashboard's browser tests (tests/dashboard), when
# missing; a browser download at install time is not an option.
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "test.sh: the dashboard tests need Chromium; as root: apt-get install -y chromium chromium-driver" >&2
        exit 2
    fi
    echo "test.sh: installing chromium and chromium-driver" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium chromium-driver >&2
fi

# Debian's PgBouncer for the test of team mode through a transaction-pooling pooler
# (tests/store/team.rs), when missing.
if [[ ! -x /usr/sbin/pgbouncer ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "test.sh: the pooler test needs PgBouncer; as root: apt-get install -y pgbouncer" >&2
        exit 2
    fi
    echo "test.sh: installing pgbouncer" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq pgbouncer >&2
fi

export DSM_TEST_VENV="$PWD/target/test-env/venv"

# One throwaway PostgreSQL cluster for the whole run (tests/postgres and any test that reads
# DSM_TEST_PG_URL make a database each in it); stopped and deleted however the run ends.
PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dsm-test-pg.XXXXXX")
trap 'bash scripts/pg-test-cluster.sh stop "$PG_DIR"' EXIT
DSM_TEST_PG_URL=$(bash scripts/pg-test-cluster.sh start "$PG_DIR")
export DSM_TEST_PG_URL

cargo test --all-targets --locked
