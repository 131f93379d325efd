#!/usr/bin/env bash
# The seeds' canary on one machine: pong v1 and v2, each behind a meshproxy sidecar, an ingress
# gateway, and meshpilot; 80/20 by weight, then by header, then the rollout finalized. Everything
# runs on free loopback ports and stops on exit.   examples/pong-canary/run.sh
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
HERE="$ROOT/examples/pong-canary"

count() {  # count N [curl args]: which versions answered N requests
  for _ in $(seq "$1"); do curl -s "${@:2}" "http://127.0.0.1:$GATEWAY_PORT/"; done | sort | uniq -c
}
settle() {  # until the gateway answers the expected body
  for _ in $(seq 400); do  # up to ~20 s: a loaded machine is slow to converge
    [ "$(curl -s "${@:2}" "http://127.0.0.1:$GATEWAY_PORT/")" = "$1" ] && return 0
    sleep 0.05
  done
  return 1
}

start_meshpilot
start_gateway ingressgateway
meshctl apply -f "$HERE/pong.yaml"
start_workload pong-v1 default app=pong,version=v1 127.0.2.1 8080 --name pong --version v1
start_workload pong-v2 default app=pong,version=v2 127.0.2.2 8080 --name pong --version v2
meshctl apply -f "$HERE/canary-80-20.yaml"
wait_ready "$GATEWAY_ADMIN"
settle "pong v2" -H "end-user: jason"
echo; echo "=== 80/20 by weight: 1000 requests"
count 1000
echo; echo "=== end-user: jason, 20 requests"
count 20 -H "end-user: jason"
meshctl apply -f "$HERE/rollout-complete.yaml"
for _ in $(seq 100); do [ "$(count 20 | wc -l)" = 1 ] && break; sleep 0.05; done
echo; echo "=== rollout complete: 100 requests"
count 100
