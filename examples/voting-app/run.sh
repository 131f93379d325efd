#!/usr/bin/env bash
# The AKS voting-app tutorial on one machine: meshpilot, an ingress gateway, and each component
# as mesh-demo-app behind its own meshproxy sidecar (its own loopback IP, as a pod has its own
# IP), all on free loopback ports. Applies the tutorial's manifests as they are, step by step,
# and after each step prints what the tutorial's curl loop prints. Stops everything on exit.
#   examples/voting-app/run.sh            (after scripts/build.sh)
# Storage is real, as in the tutorial: voting-storage 1.0 is a Redis server and 2.0 a MariaDB
# server (reached as MySQL on 3306), each behind its own sidecar; the apps reach them through
# their sidecars' TCP routes, chosen by sourceLabels.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
MANIFESTS=${MESH_MANIFESTS_DIR:-"$ROOT/../shared/manifests/aks-voting-app"}
HERE="$ROOT/examples/voting-app"

say() { printf '\n=== %s\n\n' "$*"; }
apply() {
  local shown=${1#"$MANIFESTS"/}
  echo "\$ meshctl apply -f ${shown#"$ROOT"/} --namespace voting"
  meshctl apply -n voting -f "$1"
}
# The tutorial's loop: for i in {1..5}; do curl -si $INGRESS_IP | grep results; done
results_loop() {
  echo "\$ for i in {1..5}; do curl -si \$INGRESS_IP $* | grep results; done"
  for _ in 1 2 3 4 5; do curl -si "$@" "http://127.0.0.1:$GATEWAY_PORT/" | grep results || true; done
}
vote() { curl -sf -o /dev/null "${@:2}" -d "vote=$1" "http://127.0.0.1:$GATEWAY_PORT/"; }
# Waits until the gateway answers with the given results form (config is eventually consistent).
await() {
  for _ in $(seq 400); do  # up to ~20 s: a loaded machine is slow to converge
    curl -s "${@:2}" "http://127.0.0.1:$GATEWAY_PORT/" | grep -q "$1" && return 0
    sleep 0.05
  done
  echo "voting-app: the mesh never served '$1'" >&2
  return 1
}

# Waits until ten answers in a row have the given results form.
await_all() {
  local streak=0
  for _ in $(seq 200); do
    if curl -s "${@:2}" "http://127.0.0.1:$GATEWAY_PORT/" | grep -q "$1"; then
      streak=$((streak + 1))
      [ $streak -ge 10 ] && return 0
    else
      streak=0
      sleep 0.05
    fi
  done
  echo "voting-app: the mesh never settled on '$1'" >&2
  return 1
}

start_meshpilot
start_gateway ingressgateway
say "Step 1: deploy the voting app (1.0) and its gateway"
apply "$MANIFESTS/kubernetes/step-1-create-voting-app.yaml"
apply "$MANIFESTS/istio/step-1-create-voting-app-gateway.yaml"
start_redis redis
REDIS_PORT=$LAST_PORT
start_sidecar voting-storage-1-0 voting app=voting-storage,version=1.0 127.0.1.6 6379 "$LAST_PORT"
start_workload voting-app-1-0 voting app=voting-app,version=1.0 127.0.1.1 8080 \
  --mode voting-app --name voting-app --version 1.0 --analytics voting-analytics:8080 \
  --storage redis
start_workload voting-analytics-1-0 voting app=voting-analytics,version=1.0 127.0.1.2 8080 \
  --mode voting-analytics --name voting-analytics --version 1.0 --storage redis
wait_ready "$GATEWAY_ADMIN"
await "Cats: 0 | Dogs: 0"
for v in Cats Cats Dogs Dogs Dogs Dogs; do vote $v; done
echo "(cast 2 votes for Cats and 4 for Dogs through the gateway)"
results_loop

say "Step 2: analytics 1.1 joins; the Service alone balances between 1.0 and 1.1"
apply "$MANIFESTS/kubernetes/step-2-update-voting-analytics-to-1.1.yaml"
start_workload voting-analytics-1-1 voting app=voting-analytics,version=1.1 127.0.1.3 8080 \
  --mode voting-analytics --name voting-analytics --version 1.1 --storage redis
ANALYTICS_ADMIN=$LAST_ADMIN
await "Cats: 2/6 (33%)"
results_loop
say "Step 2: routing for every component pins analytics to 1.1, and mutual TLS (STRICT)"
apply "$MANIFESTS/istio/step-2-update-and-add-routing-for-all-components.yaml"
await_all "Cats: 2/6 (33%)"
results_loop
echo "\$ meshctl tls-check voting-analytics"
meshctl tls-check voting-analytics
echo "(every proxy reaches meshpilot itself over mutual TLS too, known by its certificate:)"
echo "\$ meshctl proxy-status"
meshctl proxy-status
echo "(the sidecars now talk mutual TLS with certificates from meshpilot's CA; a plaintext client"
echo " that skips its sidecar is refused by voting-analytics' sidecar:)"
ANALYTICS_INBOUND=$(curl -s "http://127.0.0.1:$ANALYTICS_ADMIN/config_dump" |
  sed -n 's/.*"name":"inbound|\([0-9]*\)".*/\1/p' | head -1)
echo "\$ curl http://127.0.1.3:$ANALYTICS_INBOUND/results"
curl -s -m 2 "http://127.0.1.3:$ANALYTICS_INBOUND/results" || echo "curl: the connection was closed (exit $?)"

say "Step 3: the 2.0 components, with their own storage; the featureflag cookie picks 2.0"
apply "$MANIFESTS/kubernetes/step-3-update-voting-app-with-new-storage.yaml"
start_mariadb mariadb
MARIADB_PORT=$LAST_PORT
start_sidecar voting-storage-2-0 voting app=voting-storage,version=2.0 127.0.1.7 3306 "$LAST_PORT"
start_workload voting-app-2-0 voting app=voting-app,version=2.0 127.0.1.4 8080 \
  --mode voting-app --name voting-app --version 2.0 --analytics voting-analytics:8080 \
  --storage mysql
start_workload voting-analytics-2-0 voting app=voting-analytics,version=2.0 127.0.1.5 8080 \
  --mode voting-analytics --name voting-analytics --version 2.0 --storage mysql
apply "$MANIFESTS/istio/step-3-add-routing-for-2.0-components.yaml"
await "Cats: 0/0" -b featureflag=on
for v in Cats Cats Cats Dogs; do vote $v -b featureflag=on; done
echo "(cast 3 votes for Cats and 1 for Dogs with the feature flag on: they land in 2.0's storage)"
results_loop
results_loop -b featureflag=on

say "The two storage backends, asked directly"
echo "\$ redis-cli mget votes:Cats votes:Dogs      # voting-storage 1.0"
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" mget votes:Cats votes:Dogs
echo "\$ mariadb -e 'select * from azurevote.votes'   # voting-storage 2.0"
mariadb --no-defaults -h 127.0.0.1 -P "$MARIADB_PORT" -u root -e 'select * from azurevote.votes'

say "Finalize: everyone gets 2.0"
apply "$HERE/finalize.yaml"
await_all "Cats: 3/4"
results_loop
results_loop -b featureflag=on
say "A broken manifest is refused whole, naming the field; traffic is not disturbed"
printf 'apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: voting-app}\nspec:\n  hosts: ["*"]\n  gateways: [voting-app-gateway]\n  http:\n  - route:\n    - {destination: {host: voting-app, subset: v2-0}, weight: 80}\n    - {destination: {host: voting-app, subset: v1-0}, weight: 30}\n' > "$WORK/broken.yaml"
echo "\$ meshctl apply -f broken.yaml --namespace voting"
meshctl apply -n voting -f "$WORK/broken.yaml" || true
results_loop

say "What the gateway saw"
curl -s "http://127.0.0.1:$GATEWAY_ADMIN/stats/prometheus" | grep '^meshproxy_requests_total' | sed 's/^/  /'
echo
echo "voting-app: done; stopping every process it started."
