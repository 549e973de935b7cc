#!/usr/bin/env bash
# Runs dsm's whole test suite on a fresh machine: installs what the tests need, then runs them.
# Needs only the Rust toolchain, Python 3 and pip; everything else is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python plugins and real Meltano for the compatibility and real-plugin tests.
bash scripts/setup-test-env.sh

export DSM_TEST_VENV="$PWD/target/test-env/venv"
cargo test --all-targets --locked
