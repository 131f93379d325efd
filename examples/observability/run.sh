#!/usr/bin/env bash
# The voting app (step 1 of the AKS tutorial: the app, analytics and Redis storage, each behind
# its sidecar) watched by a real Prometheus server (Debian's), which finds every proxy and
# meshpilot through meshpilot's service discovery. Casts votes, then prints what a few of the
# shipped dashboards' queries answer. Stops everything on exit.
#   examples/observability/run.sh          (after scripts/build.sh)
# The Grafana dashboards in dashboards/ use the same queries; point Grafana at this Prometheus.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
MANIFESTS=${MESH_MANIFESTS_DIR:-"$ROOT/../shared/manifests/aks-voting-app"}
HERE="$ROOT/examples/observability"
command -v prometheus > /dev/null || { echo "observability: prometheus is not installed (scripts/setup.sh)" >&2; exit 1; }

start_meshpilot
start_gateway ingressgateway
meshctl apply -n voting -f "$MANIFESTS/kubernetes/step-1-create-voting-app.yaml" > /dev/null
meshctl apply -n voting -f "$MANIFESTS/istio/step-1-create-voting-app-gateway.yaml" > /dev/null
start_redis redis
start_sidecar voting-storage-1-0 voting app=voting-storage,version=1.0 127.0.4.3 6379 "$LAST_PORT"
start_workload voting-app-1-0 voting app=voting-app,version=1.0 127.0.4.1 8080 \
  --mode voting-app --name voting-app --version 1.0 --analytics voting-analytics:8080 \
  --storage redis
start_workload voting-analytics-1-0 voting app=voting-analytics,version=1.0 127.0.4.2 8080 \
  --mode voting-analytics --name voting-analytics --version 1.0 --storage redis
wait_ready "$GATEWAY_ADMIN"
for _ in $(seq 400); do
  curl -s "http://127.0.0.1:$GATEWAY_PORT/" | grep -q "Cats: 0 | Dogs: 0" && break
  sleep 0.05
done

PROM_PORT=$(free_port)
sed -e "s|MESHPILOT_REST|127.0.0.1:$REST_PORT|" -e "s|TOKEN_FILE|$WORK/meshpilot-data/admin.token|" \
  -e "s|scrape_interval: 5s|scrape_interval: 1s|" -e "s|refresh_interval: 5s|refresh_interval: 1s|" \
  "$HERE/prometheus.yml" > "$WORK/prometheus.yml"
start prometheus prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT"
query() {
  curl -s --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" || true
}
for _ in $(seq 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$PROM_PORT/-/ready" && break
  sleep 0.1
done
for _ in $(seq 300); do
  up=$(query 'count(up == 1)' | sed -n 's/.*"value":\[[0-9.]*,"\([0-9]*\)"\].*/\1/p')
  [ "${up:-0}" -ge 5 ] && break  # the gateway, three sidecars and meshpilot
  sleep 0.1
done
echo "Prometheus at http://127.0.0.1:$PROM_PORT scrapes ${up:-0} targets found through meshpilot:"
curl -s "http://127.0.0.1:$PROM_PORT/api/v1/targets?state=active" |
  grep -o '"proxy":"[^"]*"' | sort -u | sed 's/"proxy":/  /'

echo "(votes and page views through the gateway for 5 s)"
end=$((SECONDS + 5))
while [ $SECONDS -lt $end ]; do
  curl -sf -o /dev/null -d vote=Cats "http://127.0.0.1:$GATEWAY_PORT/"
  curl -sf -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/"
done
sleep 2  # a last scrape

show() {
  echo
  echo "\$ $1"
  query "$1" | grep -o '"metric":{[^}]*},"value":\[[^]]*\]' |
    sed -e 's/"metric"://' -e 's/,"value":\[[0-9.]*,/ => /' -e 's/\]$//'
}
show 'sum(rate(istio_requests_total{reporter="destination"}[30s])) by (destination_workload, response_code)'
show 'sum(rate(istio_requests_total{reporter="source",source_workload="voting-app"}[30s])) by (destination_service)'
show 'sum(rate(istio_tcp_sent_bytes_total{reporter="source"}[30s])) by (source_workload, destination_service)'
show 'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="source"}[30s])) by (le, destination_workload))'
show 'sum(pilot_xds{app="istiod"})'

# Traces: meshpilot is the mesh's collector. One request, sampled by its caller (the flag in
# traceparent) whatever the mesh's 1 % says.
curl -sf -o /dev/null -H "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" \
  "http://127.0.0.1:$GATEWAY_PORT/"
sleep 2  # the proxies' next flush
echo
echo "\$ GET /api/traces/0af7651916cd43dd8448eb211c80319c   (Jaeger's query API on meshpilot)"
trace=$(curl -s -H "Authorization: Bearer $(cat "$WORK/meshpilot-data/admin.token")" \
  "http://127.0.0.1:$REST_PORT/api/traces/0af7651916cd43dd8448eb211c80319c")
echo "  services: $(echo "$trace" | grep -o '"serviceName":"[^"]*"' | cut -d'"' -f4 | sort | tr '\n' ' ')"
echo "  spans:"
echo "$trace" | grep -o '"operationName":"[^"]*"' | cut -d'"' -f4 | sed 's/^/    /'
echo "$trace" | grep -q '"serviceName":"voting-analytics.voting"' ||
  { echo "observability: the trace does not reach voting-analytics" >&2; exit 1; }
