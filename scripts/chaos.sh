#!/usr/bin/env bash
# Team mode's chaos test for longer than CI runs it: four worker copies of a project race
# `dsm run`, `dsm sync` and `dsm schedule run-due` on one PostgreSQL store (a cluster of its
# own, restarted half way) while random workers are killed with SIGKILL; it prints the counts.
#
#   scripts/chaos.sh [SECONDS]     default 600
set -euo pipefail
cd "$(dirname "$0")/.."
export DSM_CHAOS_SECONDS="${1:-600}"
exec cargo test --locked --test store chaos -- --nocapture
