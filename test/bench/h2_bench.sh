#!/usr/bin/env bash
# HTTP/2 through a proxy, against its peers in the same run: h2load (-c32 -m10, one thread) sends
# to an h2c nginx backend directly, through haproxy (h2 on both sides), through nginx (h2 to the
# client, HTTP/1.1 upstream: nginx proxies nothing else), and through a meshproxy gateway (h2 both
# sides: the backend's port is named http2). Each proxy has one worker, pinned with the backend to
# CPU 1 and h2load on CPU 0. Reports requests/s, mean and max latency, and the proxy's CPU per
# request from /proc (user + system time over the run). Needs nginx, haproxy and h2load
# (apt-get install nginx haproxy nghttp2-client).
#   test/bench/h2_bench.sh                    REQUESTS=200000 ROUNDS=3 by default
#   CONNS=1 STREAMS=1 REQUESTS=20000 test/bench/h2_bench.sh    one request at a time: latency
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
REQUESTS=${REQUESTS:-200000}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
ROUNDS=${ROUNDS:-3}
for tool in nginx haproxy h2load taskset; do
  command -v "$tool" > /dev/null || { echo "h2_bench: $tool is missing" >&2; exit 1; }
done
BACKEND=$(free_port) BACKEND_H1=$(free_port) HAPROXY=$(free_port) NGINX=$(free_port) GW=$(free_port)

# The backend: nginx answering 200 with a small body over h2c (prior knowledge), and over
# HTTP/1.1 on a second port for the nginx proxy case (nginx proxies HTTP/1.1 only).
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/backend.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/nginx/backend.pid; error_log $WORK/nginx/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; http2_max_requests 1000000;
  server { listen 127.0.0.1:$BACKEND http2; location / { return 200 "hello from backend\n"; } }
  server { listen 127.0.0.1:$BACKEND_H1; location / { return 200 "hello from backend\n"; } } }
CONF
cat > "$WORK/nginx/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/nginx/proxy.pid; error_log $WORK/nginx/proxy.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; http2_max_requests 1000000;
  upstream backend { server 127.0.0.1:$BACKEND_H1; keepalive 64; }
  server { listen 127.0.0.1:$NGINX http2;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend in
  bind 127.0.0.1:$HAPROXY proto h2
  default_backend out
backend out
  server b 127.0.0.1:$BACKEND proto h2
CONF
start backend taskset -c 1 nginx -c "$WORK/nginx/backend.conf"
start haproxy taskset -c 1 haproxy -f "$WORK/haproxy.cfg"
start nginx-proxy taskset -c 1 nginx -c "$WORK/nginx/proxy.conf"
start_meshpilot
cat > "$WORK/bench.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: backend}
spec: {selector: {app: backend}, ports: [{name: http2, port: 80, targetPort: $BACKEND}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: backend-1}
spec: {address: 127.0.0.1, labels: {app: backend}, ports: {http2: $BACKEND}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: bench}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: ["*"]
  gateways: [bench]
  http: [{route: [{destination: {host: backend, port: {number: 80}}}]}]
YAML
meshctl apply -f "$WORK/bench.yaml" >&2
ADMIN=$(free_port)
start meshproxy taskset -c 1 "$MESHPROXY" --xds "127.0.0.1:$XDS_PORT" --role gateway \
  --id bench-gateway --labels istio=ingressgateway --port-map "80=$GW" --admin "127.0.0.1:$ADMIN" \
  --concurrency 1 --log-level warn
wait_ready "$ADMIN"
sleep 1

# cpu_ticks PID: user + system clock ticks of a process and its threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
proxy_pid() {
  case $1 in
    haproxy) pgrep -f "haproxy -f $WORK/haproxy.cfg" | head -1 ;;
    nginx) pgrep -f "nginx: worker" -P "$(cat "$WORK/nginx/proxy.pid")" | head -1 ;;
    meshproxy) pgrep -f -- "--id bench-gateway" | head -1 ;;
    *) echo "" ;;
  esac
}
port_of() { case $1 in direct) echo "$BACKEND" ;; haproxy) echo "$HAPROXY" ;; nginx) echo "$NGINX" ;; meshproxy) echo "$GW" ;; esac; }

HZ=$(getconf CLK_TCK)
printf "%-10s %10s %12s %12s %16s\n" case "req/s" "mean" "max" "proxy-us/req"
for round in $(seq "$ROUNDS"); do
  for c in direct haproxy nginx meshproxy; do
    pid=$(proxy_pid "$c")
    before=0; [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    out=$(taskset -c 0 h2load -n "$REQUESTS" -c "$CONNS" -m "$STREAMS" -t 1 "http://127.0.0.1:$(port_of "$c")/" 2>&1)
    after=0; [ -n "$pid" ] && after=$(cpu_ticks "$pid")
    if ! grep -q "0 failed, 0 errored" <<< "$out"; then
      echo "h2_bench: $c had failures:" >&2
      grep -E "^requests:|^status codes:" <<< "$out" >&2
    fi
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<< "$out")
    mean=$(awk '/^time for request:/ {print $6}' <<< "$out")
    max=$(awk '/^time for request:/ {print $5}' <<< "$out")
    cpu="-"
    [ -n "$pid" ] && cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$REQUESTS" \
      'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    printf "%-10s %10s %12s %12s %16s   (round %d)\n" "$c" "$rps" "$mean" "$max" "$cpu" "$round"
  done
done
