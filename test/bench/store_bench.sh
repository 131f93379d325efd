#!/usr/bin/env bash
# The embedded store against etcd (three members on this machine), same run, same binaries:
# apply throughput (apply_bench) and the time for 1,000 ADS streams to converge on a change
# (xds_load_bench), each reported as etcd / embedded.
#   test/bench/store_bench.sh   (REQUESTS=4000 STREAMS=1000 ETCD_MEMBERS=3 BUILD_DIR=build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/${BUILD_DIR:-build}/test"
REQUESTS=${REQUESTS:-4000}
STREAMS=${STREAMS:-1000}
MEMBERS=${ETCD_MEMBERS:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for store in embedded etcd; do
  flag=()
  [ "$store" = etcd ] && flag=(--etcd "$MEMBERS")
  # Batches of 100: etcd takes at most 128 operations per transaction by default.
  "$BIN/apply_bench" --requests "$REQUESTS" --batches 5 --batch-size 100 "${flag[@]}" \
    > "$OUT/apply-$store.txt" 2>&1
  "$BIN/xds_load_bench" --streams "$STREAMS" --rounds 3 "${flag[@]}" > "$OUT/xds-$store.txt" 2>&1
done

field() {  # field FILE SED_EXPR
  sed -n "$2" "$1" | head -1
}
apply_e=$(field "$OUT/apply-embedded.txt" 's/^single applies: .* \([0-9.]*\) applies\/s.*/\1/p')
apply_x=$(field "$OUT/apply-etcd.txt" 's/^single applies: .* \([0-9.]*\) applies\/s.*/\1/p')
raw_x=$(field "$OUT/apply-etcd.txt" 's/^  peer (etcd alone, same run): \([0-9.]*\) read.*/\1/p')
batch_e=$(field "$OUT/apply-embedded.txt" 's/^batches: .* p50 \([0-9.]*\) ms,.*/\1/p')
batch_x=$(field "$OUT/apply-etcd.txt" 's/^batches: .* p50 \([0-9.]*\) ms,.*/\1/p')
conv_e=$(field "$OUT/xds-embedded.txt" 's/^apply -> every stream .* max \([0-9.]*\) ms.*/\1/p')
conv_x=$(field "$OUT/xds-etcd.txt" 's/^apply -> every stream .* max \([0-9.]*\) ms.*/\1/p')
p50_e=$(field "$OUT/xds-embedded.txt" 's/^apply -> every stream .* p50 \([0-9.]*\) ms,.*/\1/p')
p50_x=$(field "$OUT/xds-etcd.txt" 's/^apply -> every stream .* p50 \([0-9.]*\) ms,.*/\1/p')
for v in apply_e apply_x raw_x batch_e batch_x conv_e conv_x p50_e p50_x; do
  if [ -z "${!v}" ]; then
    echo "store_bench: a run failed; its output:" >&2
    cat "$OUT"/*.txt >&2
    exit 1
  fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "etcd: $MEMBERS members on this machine; each figure etcd vs embedded, same run"
echo "single applies (8 clients, $REQUESTS): etcd $apply_x/s vs embedded $apply_e/s -> $(ratio "$apply_x" "$apply_e")x"
echo "  etcd alone doing the same read + compare-and-swap: $raw_x/s -> meshpilot on etcd at $(ratio "$apply_x" "$raw_x")x of it"
echo "100-document batches, p50: etcd $batch_x ms vs embedded $batch_e ms -> $(ratio "$batch_x" "$batch_e")x"
echo "$STREAMS streams converged on a change, max: etcd $conv_x ms vs embedded $conv_e ms -> $(ratio "$conv_x" "$conv_e")x (p50 $p50_x vs $p50_e ms -> $(ratio "$p50_x" "$p50_e")x)"
