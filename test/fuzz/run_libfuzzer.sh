#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time from the checked-in seeds; new inputs go to a
# temporary directory that is removed afterwards. A crash fails the test and leaves its input
# (crash-*) in the working directory, to replay with: FUZZER crash-...
# The random seed is fixed (FUZZ_SEED, default 1) so that a suite run is repeatable; vary it for
# longer runs by hand.
# Usage: run_libfuzzer.sh FUZZER SEED_DIR SECONDS
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3
if [ ! -x "$fuzzer" ]; then
  echo "run_libfuzzer: $fuzzer is not built (scripts/build.sh builds it with clang)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec "$fuzzer" -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 "$work" "$seeds"
