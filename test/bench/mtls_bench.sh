#!/usr/bin/env bash
# Two meshproxy sidecars, client and server, in front of an nginx backend: the same wrk load with
# mutual TLS between them (ISTIO_MUTUAL + STRICT) and in plaintext (DISABLE), alternated ROUNDS
# times on the same processes. Prints requests/s and p99 for each, and the ratios.
#   test/bench/mtls_bench.sh          (needs wrk and nginx: apt-get install wrk nginx)
#   ROUNDS=3 DURATION=5 CONNS=32 test/bench/mtls_bench.sh
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
command -v wrk > /dev/null && command -v nginx > /dev/null || {
  echo "mtls_bench: needs wrk and nginx" >&2
  exit 1
}

start_meshpilot
BACKEND_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events {}
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok\n"; } }
}
CONF
start backend nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
meshctl apply -f - > /dev/null <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: backend}
spec: {selector: {app: backend}, ports: [{name: http, port: 80}]}
YAML
start_sidecar server default app=backend 127.0.3.2 80 "$BACKEND_PORT"
CLIENT_PORT=$(free_port)
CLIENT_ADMIN=$(free_port)
start client "$MESHPROXY" --xds "127.0.0.1:$XDS_PORT" --role sidecar --id client \
  --namespace default --labels app=client --address 127.0.3.1 --outbound 127.0.3.1:15001 \
  --port-map "80=$CLIENT_PORT" --admin "127.0.0.1:$CLIENT_ADMIN" --concurrency 1 \
  --token-file "$(token_file client default)" --log-level warn
wait_ready "$CLIENT_ADMIN"

mode() {  # mode ISTIO_MUTUAL STRICT | mode DISABLE DISABLE
  meshctl apply -f - > /dev/null <<YAML
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: backend}
spec: {host: backend, trafficPolicy: {tls: {mode: $1}}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: $2}}
YAML
  sleep 1  # debounce, push, listener update
  curl -sf -H "Host: backend" "http://127.0.3.1:$CLIENT_PORT/" > /dev/null ||
    { echo "mtls_bench: the pair does not serve in mode $1" >&2; exit 1; }
}
run() {  # prints "req/s p99_us"
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: backend" \
    "http://127.0.3.1:$CLIENT_PORT/" | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; u = v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
               us = (u == "ms") ? v * 1000 : (u == "s") ? v * 1000000 : v; }
    END { printf "%d %d\n", rps, us }'
}
echo "round  plaintext req/s  p99(us)   mTLS req/s  p99(us)   ratio  added p99(us)"
for r in $(seq "$ROUNDS"); do
  mode DISABLE DISABLE
  read -r prps pp99 <<< "$(run)"
  mode ISTIO_MUTUAL STRICT
  read -r mrps mp99 <<< "$(run)"
  awk -v r="$r" -v a="$prps" -v b="$pp99" -v c="$mrps" -v d="$mp99" \
    'BEGIN { printf "%5d  %15d  %7d  %11d  %7d  %5.2f  %13d\n", r, a, b, c, d, c / a, d - b }'
done
