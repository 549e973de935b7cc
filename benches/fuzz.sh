#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 60), one after the other, and stops
# at the first crash (cargo-fuzz keeps the input under fuzz/artifacts/TARGET/). Not part of CI:
# CI runs the bounded property tests instead (`cargo test --test properties`).
#
#   bash benches/fuzz.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On the stable toolchain the targets
# run without a sanitizer (`-s none`), which needs no nightly compiler; a nightly toolchain
# can run them with AddressSanitizer by setting DSM_FUZZ_SANITIZER=address.
#
# The fuzz build is large (a release build of dsm with coverage instrumentation): its target
# folder, fuzz/target, is removed at the end unless DSM_FUZZ_KEEP_TARGET=1. Found crashes go
# into a test as plain regression cases (see tests/properties/main.rs).
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

sanitizer="${DSM_FUZZ_SANITIZER:-none}"
cleanup() {
  if [ "${DSM_FUZZ_KEEP_TARGET:-0}" != 1 ]; then
    rm -rf target
  fi
}
trap cleanup EXIT

# A few seed inputs per target, so the first seconds start from real shapes.
seed() {
  local target="$1"; shift
  mkdir -p "corpus/$target"
  local i=0
  for s in "$@"; do
    printf '%s' "$s" > "corpus/$target/seed-$i"
    i=$((i + 1))
  done
}
seed envelope '{"type":"RECORD","stream":"users","record":{"id":1,"x":NaN}}' '{"type":"STATE","value":{"a":1}}'
seed record_line '{"type":"RECORD","stream":"users","record":{"id":1,"email":"a@b.c","name":"ada","status":"ok"}}'
seed expression "md5(email or '') + str(id)" "[x * 2 for x in range(10)] if id else None" "f'{id:05d}'"
seed meltano_yml "$(printf 'version: 1\nplugins:\n  extractors:\n  - name: tap-csv\n    variant: dsm\n')"
seed select_pattern "$(printf 'users.*\n!users.secret\n*.id\nusers.address.*')"
seed bundle '{"format":"dsm-bundle","version":2,"database":"","sha256":"","mac":""}'

status=0
for target in envelope record_line expression meltano_yml select_pattern bundle; do
  echo "== $target: ${seconds}s"
  # -rss_limit_mb bounds memory; -max_len keeps inputs to what a line or file plausibly is;
  # -timeout makes an input that runs for more than 10 s a finding (every parser and the
  # expression evaluator are bounded well below that), not a stall.
  if ! cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
      -print_final_stats=1; then
    echo "== $target: crashed or timed out (input under fuzz/artifacts/$target/)" >&2
    status=1
    break
  fi
done
exit "$status"
