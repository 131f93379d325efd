#!/usr/bin/env bash
# meshpilot on etcd: three etcd members and two meshpilot replicas on loopback, started and
# stopped by this script. pong v1 and v2 have sidecars on replica A; the ingress gateway talks
# to replica B first (then A). A change applied on A reaches B's gateway; B is then killed and
# the gateway moves to A without a failed request; one etcd member is killed and writes go on.
#   examples/ha/run.sh
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
PONG="$ROOT/examples/pong-canary"

settle() {  # until the gateway answers the expected body
  for _ in $(seq 200); do
    [ "$(curl -s "http://127.0.0.1:$GATEWAY_PORT/")" = "$1" ] && return 0
    sleep 0.05
  done
  echo "ha: the gateway never answered \"$1\"" >&2
  return 1
}
route_to() {  # the pong VirtualService sending everything to subset $1
  cat <<YAML
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: pong}
spec:
  hosts: ["*"]
  gateways: [pong-gateway]
  http:
  - route: [{destination: {host: pong, subset: $1}}]
YAML
}

start_etcd_cluster 3
echo "=== etcd: 3 members ($ETCD_URL)"
# The secret that seals the CA key in etcd; every replica gets the same.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/ca-key"
replica_flags=(--store "$ETCD_URL" --ca-key-file "$WORK/ca-key" --workload-grace 3s)
start_meshpilot replica-b "${replica_flags[@]}" --replica-id b
B_TLS=$XDS_TLS_PORT B_REST=$REST_PORT
B_PID=${PIDS[-1]}
start_meshpilot replica-a "${replica_flags[@]}" --replica-id a   # meshctl now talks to A
A_TLS=$XDS_TLS_PORT
echo "=== replicas: A (rest $REST_PORT) and B (rest $B_REST), one store"

meshctl apply -f "$PONG/pong.yaml"
route_to v1 | meshctl apply -f -
XDS_ADDRS="127.0.0.1:$A_TLS"
start_workload pong-v1 default app=pong,version=v1 127.0.3.1 8080 --name pong --version v1
start_workload pong-v2 default app=pong,version=v2 127.0.3.2 8080 --name pong --version v2
XDS_ADDRS="127.0.0.1:$B_TLS,127.0.0.1:$A_TLS"
start_gateway ingressgateway
wait_ready "$GATEWAY_ADMIN"
settle "pong v1"
echo "=== B's gateway serves pong v1 from sidecars registered on A:"
curl -s "http://127.0.0.1:$GATEWAY_PORT/"
echo "\$ MESHPILOT_ADDR=127.0.0.1:$B_REST meshctl proxy-status   (B's proxies)"
MESHPILOT_ADDR="127.0.0.1:$B_REST" MESHPILOT_DATA_DIR="$WORK/replica-b-data" meshctl proxy-status

echo; echo "=== an apply on A: everything to v2"
start_ms=$(date +%s%3N)
route_to v2 | meshctl apply -f -
settle "pong v2"
echo "B's gateway serves it $(( $(date +%s%3N) - start_ms )) ms after the apply on A:"
curl -s "http://127.0.0.1:$GATEWAY_PORT/"

echo; echo "=== replica B killed (SIGKILL) under load"
load_out="$WORK/load.txt"
( for _ in $(seq 400); do curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$GATEWAY_PORT/"; done > "$load_out" ) &
LOAD=$!
sleep 0.2
{ kill -9 "$B_PID"; wait "$B_PID"; } 2>/dev/null || true
wait "$LOAD"
echo "requests during the failover: $(grep -c '^200$' "$load_out") answered 200, $(grep -vc '^200$' "$load_out") failed"
route_to v1 | meshctl apply -f -
settle "pong v1"
echo "the gateway now follows A: $(curl -s "http://127.0.0.1:$GATEWAY_PORT/")"

echo; echo "=== etcd member 0 killed; applies go on"
{ kill -9 "${ETCD_PIDS[0]}"; wait "${ETCD_PIDS[0]}"; } 2>/dev/null || true
for subset in v2 v1 v2; do route_to "$subset" | meshctl apply -f - > /dev/null; done
settle "pong v2"
echo "after 3 more applies: $(curl -s "http://127.0.0.1:$GATEWAY_PORT/")"
