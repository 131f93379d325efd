#!/usr/bin/env bash
# meshproxy in the shared dataplane harness (../shared/bench/dataplane): the same wrk runs
# through a meshproxy gateway as through nginx and haproxy, and straight to the backend.
# meshpilot runs outside the measured process tree; meshproxy gets one worker, as the nginx
# and haproxy cases do.
#   test/bench/dataplane_bench.sh                 plain routing
#   POLICIES=1 test/bench/dataplane_bench.sh      with a retry policy and outlier detection
#   AUTHZ=1 test/bench/dataplane_bench.sh         with 20 ALLOW AuthorizationPolicies and 1 DENY on
#                                                 the gateway (the request matches the last ALLOW)
#   ACCESS_LOG=1 test/bench/dataplane_bench.sh    with Istio's text access log (to a file)
#   TRACE_SAMPLING=100 test/bench/dataplane_bench.sh   every request traced (default: Istio's 1 %)
#   TRACING=off PROXY_FLAGS=--istio-metrics=false ...  telemetry off: no tracer, no Istio metrics
#   PROXY_FLAGS=...                               extra meshproxy flags
# Extra settings (ROUNDS, DURATION, RESULTS_CSV, ...) pass through to bench.sh.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/examples/lib.sh"
HARNESS=${HARNESS:-"$ROOT/../shared/bench/dataplane/bench.sh"}
[ -x "$HARNESS" ] || [ -f "$HARNESS" ] || { echo "no harness at $HARNESS" >&2; exit 1; }
# The harness's awk programs use names gawk reserves (e.g. `load`); when gawk is the default awk
# (mariadb-server pulls it in), give the harness mawk.
if awk --version 2>/dev/null | grep -q "GNU Awk" && command -v mawk > /dev/null; then
  mkdir -p "$WORK/bin"
  ln -s "$(command -v mawk)" "$WORK/bin/awk"
  export PATH="$WORK/bin:$PATH"
fi
export BACKEND_PORT=${BACKEND_PORT:-$(free_port)} PROXY_PORT=${PROXY_PORT:-$(free_port)}
export NGINX_PORT=${NGINX_PORT:-$(free_port)} HAPROXY_PORT=${HAPROXY_PORT:-$(free_port)}

pilot_flags=()
[ -n "${ACCESS_LOG:-}" ] && pilot_flags+=(--access-log-file "$WORK/access.log")
# Tracing: Istio's default (1 %, to meshpilot's own collector) unless TRACE_SAMPLING sets the
# percentage, or TRACING=off leaves the proxies without a tracer.
[ -n "${TRACE_SAMPLING:-}" ] && pilot_flags+=(--trace-sampling "$TRACE_SAMPLING")
[ "${TRACING:-}" = off ] && pilot_flags+=(--trace-collector none)
start_meshpilot meshpilot "${pilot_flags[@]}"
cat > "$WORK/bench.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: $BACKEND_PORT}]
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: backend-1}
spec: {address: 127.0.0.1, labels: {app: backend}, ports: {http: $BACKEND_PORT}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: bench}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
YAML
if [ -n "${POLICIES:-}" ]; then
  cat >> "$WORK/bench.yaml" <<'YAML'
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route: [{destination: {host: backend, port: {number: 80}}}]
    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "5xx,connect-failure,reset"}
YAML
else
  cat >> "$WORK/bench.yaml" <<'YAML'
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route: [{destination: {host: backend, port: {number: 80}}}]
YAML
fi
if [ -n "${AUTHZ:-}" ]; then
  # Policies are tried in name order: allow-00..allow-18 each check a path, a method and a
  # header that this load does not send, and allow-19 lets it through; the DENY is checked first.
  for i in $(seq -w 0 19); do
    if [ "$i" = 19 ]; then
      rule='{to: [{operation: {paths: ["/*"], methods: ["GET"]}}]}'
    else
      rule="{to: [{operation: {paths: [\"/svc-$i/*\"], methods: [\"GET\", \"POST\"]}}], when: [{key: \"request.headers[x-tenant]\", values: [\"t$i\"]}]}"
    fi
    cat >> "$WORK/bench.yaml" <<YAML
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-$i}
spec: {selector: {matchLabels: {istio: ingressgateway}}, rules: [$rule]}
YAML
  done
  cat >> "$WORK/bench.yaml" <<'YAML'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
YAML
fi
meshctl apply -f "$WORK/bench.yaml" >&2
export PROXY_NAME=${PROXY_NAME:-meshproxy}
export PROXY_CMD="exec $MESHPROXY --xds 127.0.0.1:$XDS_PORT --role gateway --id bench-gateway \
--labels istio=ingressgateway --port-map 80=\$PROXY_PORT --admin 127.0.0.1:$(free_port) \
--concurrency 1 --log-level warn ${PROXY_FLAGS:-}"
bash "$HARNESS"
