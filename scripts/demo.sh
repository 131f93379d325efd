#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds, starts meshpilot on the embedded
# store (a temporary data dir, a free loopback port), and walks the voting-app tutorial with meshctl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
bash scripts/build.sh
BIN="$ROOT/${BUILD_DIR:-build}/controlplane"
MANIFESTS=${MESH_MANIFESTS_DIR:-"$ROOT/../shared/manifests/aks-voting-app"}
if [ -d "$MANIFESTS" ]; then MANIFESTS=$(cd "$MANIFESTS" && pwd); fi
if [ ! -d "$MANIFESTS/istio" ]; then
  echo "demo: voting-app manifests not found in $MANIFESTS (set MESH_MANIFESTS_DIR)" >&2
  exit 1
fi

WORK=$(mktemp -d)
# Port 0: meshpilot binds a free loopback port and logs it in its "ready" line.
"$BIN/meshpilot" --rest 127.0.0.1:0 --xds 127.0.0.1:0 --data-dir "$WORK/data" 2> "$WORK/meshpilot.log" &
PILOT=$!
cleanup() { kill "$PILOT" 2>/dev/null || true; wait "$PILOT" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*meshpilot: ready .* rest=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/meshpilot.log")
  [ -n "$PORT" ] && break
  kill -0 "$PILOT" 2>/dev/null || { cat "$WORK/meshpilot.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "demo: meshpilot did not start" >&2; cat "$WORK/meshpilot.log" >&2; exit 1; }
export MESHPILOT_ADDR="127.0.0.1:$PORT" MESHPILOT_DATA_DIR="$WORK/data"
ctl() { echo "\$ meshctl $*"; "$BIN/meshctl" "$@"; echo; }
step() { printf '\n=== %s\n\n' "$1"; }

step "meshpilot is up on 127.0.0.1:$PORT (data in a temporary dir)"
ctl version
step "Step 1: deploy the voting app and its gateway"
ctl apply -n voting -f "$MANIFESTS/kubernetes/step-1-create-voting-app.yaml"
ctl apply -n voting -f "$MANIFESTS/istio/step-1-create-voting-app-gateway.yaml"
ctl get vs -n voting
step "Re-applying an unchanged file changes nothing"
ctl apply -n voting -f "$MANIFESTS/istio/step-1-create-voting-app-gateway.yaml"
step "Step 2: analytics 1.1, mutual TLS (STRICT) and routing for every component"
ctl apply -n voting -f "$MANIFESTS/kubernetes/step-2-update-voting-analytics-to-1.1.yaml"
ctl apply -n voting -f "$MANIFESTS/istio/step-2-update-and-add-routing-for-all-components.yaml"
ctl get dr -n voting
ctl get policy -n voting
step "Step 3: the 2.0 components, routed by the featureflag cookie and by source labels"
ctl apply -n voting -f "$MANIFESTS/kubernetes/step-3-update-voting-app-with-new-storage.yaml"
ctl apply -n voting -f "$MANIFESTS/istio/step-3-add-routing-for-2.0-components.yaml"
ctl get vs voting-app -n voting -o yaml
step "A broken manifest is refused whole, naming the field"
printf 'apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: broken}\nspec:\n  hosts: [voting-app]\n  http:\n  - route:\n    - {destination: {host: voting-app, subset: v1-0}, weight: 80}\n    - {destination: {host: voting-app, subset: v2-0}, weight: 30}\n' > "$WORK/broken.yaml"
ctl apply -n voting -f "$WORK/broken.yaml" || true
step "Cross-reference check over the whole config"
ctl analyze
ctl get svc -A -o wide
echo "demo: done; meshpilot stops now."
