# Shared by the examples' run scripts: start meshpilot, meshproxy gateways and sidecars, and
# mesh-demo-app workloads on loopback, each with a log in a temporary directory, and stop
# exactly those processes on exit. Source it; it needs ROOT (the repository) to be set.
set -euo pipefail

BUILD="$ROOT/${BUILD_DIR:-build}"
PATH="$PATH:/usr/sbin"  # mariadbd
MESHPILOT=${MESHPILOT:-"$BUILD/controlplane/meshpilot"}
MESHCTL=${MESHCTL:-"$BUILD/controlplane/meshctl"}
MESHPROXY=${MESHPROXY:-"$BUILD/dataplane/meshproxy"}
DEMO_APP=${DEMO_APP:-"$BUILD/examples/mesh-demo-app"}
WORK=$(mktemp -d)
PIDS=()

mesh_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap mesh_cleanup EXIT

# start NAME CMD...: runs CMD in the background, stderr and stdout to $WORK/NAME.log.
start() {
  local name=$1
  shift
  "$@" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}

# wait_for_log NAME SED_EXPR: prints the first match of SED_EXPR (a s/.../\1/p) in NAME's log.
wait_for_log() {
  local out=""
  for _ in $(seq 200); do
    out=$(sed -n "$2" "$WORK/$1.log" | head -1)
    [ -n "$out" ] && { echo "$out"; return 0; }
    sleep 0.05
  done
  echo "examples: $1 did not start; its log:" >&2
  cat "$WORK/$1.log" >&2
  return 1
}

# free_port: a loopback port nothing listens on (random, then probed).
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((10000 + RANDOM % 22000))  # below the ephemeral range, where clients take ports
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

# wait_ready ADMIN_PORT: until the proxy's /ready answers 200.
wait_ready() {
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$1/ready" > /dev/null && return 0
    sleep 0.05
  done
  echo "examples: the proxy with admin port $1 never became ready" >&2
  return 1
}

# start_meshpilot [NAME [FLAGS...]]: a meshpilot (data in $WORK/NAME-data) on free ports: sets
# REST_PORT, XDS_PORT, XDS_TLS_PORT, XDS_ROOT, and points meshctl at it.
start_meshpilot() {
  local name=${1:-meshpilot}
  shift || true
  start "$name" "$MESHPILOT" --rest 127.0.0.1:0 --xds 127.0.0.1:0 --xds-tls 127.0.0.1:0 \
    --monitoring 127.0.0.1:0 \
    --data-dir "$WORK/$name-data" --debounce 20ms "$@"
  REST_PORT=$(wait_for_log "$name" 's/.*meshpilot: ready .* rest=127\.0\.0\.1:\([0-9]*\).*/\1/p')
  XDS_PORT=$(wait_for_log "$name" 's/.*ADS listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p')
  XDS_TLS_PORT=$(wait_for_log "$name" 's/.*ADS over mTLS listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p')
  # What an operator hands each proxy to trust the control plane: the mesh root.
  XDS_ROOT="$WORK/$name-data/ca/root-cert.pem"
  export MESHPILOT_ADDR="127.0.0.1:$REST_PORT" MESHPILOT_DATA_DIR="$WORK/$name-data"
}

# start_etcd_cluster N: N etcd members (Debian's etcd-server) on free loopback ports, data in
# $WORK; sets ETCD_URL (etcd://...) and ETCD_PIDS (one per member, in order).
start_etcd_cluster() {
  local n=$1 i peers="" endpoints="" client peer
  local -a clients=() peer_ports=()
  for i in $(seq 0 $((n - 1))); do
    clients+=("$(free_port)")
    peer_ports+=("$(free_port)")
    peers+="${peers:+,}etcd$i=http://127.0.0.1:${peer_ports[$i]}"
    endpoints+="${endpoints:+,}127.0.0.1:${clients[$i]}"
  done
  ETCD_PIDS=()
  for i in $(seq 0 $((n - 1))); do
    client="http://127.0.0.1:${clients[$i]}"
    peer="http://127.0.0.1:${peer_ports[$i]}"
    start "etcd$i" etcd --name "etcd$i" --data-dir "$WORK/etcd$i" --listen-client-urls "$client" \
      --advertise-client-urls "$client" --listen-peer-urls "$peer" \
      --initial-advertise-peer-urls "$peer" --initial-cluster "$peers" \
      --initial-cluster-state new --initial-cluster-token meshpilot-example \
      --logger zap --log-level warn
    ETCD_PIDS+=("${PIDS[-1]}")
  done
  ETCD_URL="etcd://$endpoints"
}

meshctl() { "$MESHCTL" "$@"; }

# token_file NAME NAMESPACE: a join token for a proxy of that namespace (service account
# "default"), in a file; the proxy gets its mesh identity (mTLS certificate) with it.
token_file() {
  "$MESHCTL" token create -n "$2" --service-account default > "$WORK/$1.token"
  echo "$WORK/$1.token"
}

# start_gateway NAME: an ingress gateway labelled istio=ingressgateway; its port 80 is served on
# 127.0.0.1:$GATEWAY_PORT.
start_gateway() {
  GATEWAY_PORT=$(free_port)
  local admin
  admin=$(free_port)
  start "$1" "$MESHPROXY" --xds "${XDS_ADDRS:-127.0.0.1:$XDS_TLS_PORT}" --xds-root-cert "$XDS_ROOT" \
    --role gateway --id "$1" \
    --namespace istio-system --labels istio=ingressgateway --port-map "80=$GATEWAY_PORT" \
    --admin "127.0.0.1:$admin" --concurrency 1 --token-file "$(token_file "$1" istio-system)"
  GATEWAY_ADMIN=$admin
}

# start_sidecar NAME NAMESPACE LABELS IP SERVICE_PORT APP_PORT: a meshproxy sidecar labelled LABELS
# (k=v,k=v) whose address is IP (its "pod IP"), accepting mesh traffic for SERVICE_PORT and
# passing it to 127.0.0.1:APP_PORT; its outbound listener is IP:15001.
start_sidecar() {
  local name=$1 ns=$2 labels=$3 ip=$4 service_port=$5 app_port=$6
  local inbound admin
  inbound=$(free_port)
  admin=$(free_port)
  start "$name" "$MESHPROXY" --xds "${XDS_ADDRS:-127.0.0.1:$XDS_TLS_PORT}" --xds-root-cert "$XDS_ROOT" \
    --role sidecar --id "$name" \
    --namespace "$ns" --labels "$labels" --address "$ip" --outbound "$ip:15001" \
    --inbound "$service_port=$inbound:$app_port" --admin "127.0.0.1:$admin" --concurrency 1 \
    --token-file "$(token_file "$name" "$ns")"
  LAST_ADMIN=$admin
  wait_ready "$admin"
}

# start_workload NAME NAMESPACE LABELS IP SERVICE_PORT APP_ARGS...: mesh-demo-app on a free port
# behind its sidecar (start_sidecar); the app reaches other services through IP:15001.
start_workload() {
  local name=$1 ns=$2 labels=$3 ip=$4 service_port=$5
  shift 5
  local app
  app=$(free_port)
  start "$name-app" "$DEMO_APP" --listen "127.0.0.1:$app" --proxy "$ip:15001" "$@"
  start_sidecar "$name" "$ns" "$labels" "$ip" "$service_port" "$app"
}

# start_redis NAME: a redis-server of its own on a free loopback port ($LAST_PORT), no persistence.
start_redis() {
  LAST_PORT=$(free_port)
  mkdir -p "$WORK/$1"
  start "$1" redis-server --port "$LAST_PORT" --bind 127.0.0.1 --dir "$WORK/$1" --save "" \
    --appendonly no
  wait_for_log "$1" 's/.*\(Ready to accept connections\).*/\1/p' > /dev/null
}

# start_mariadb NAME: a MariaDB server of its own (data in $WORK/NAME) on a free loopback port
# ($LAST_PORT); root without a password, as a throwaway demo database.
start_mariadb() {
  LAST_PORT=$(free_port)
  local dir="$WORK/$1"
  mkdir -p "$dir"
  mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
    --auth-root-authentication-method=normal --skip-test-db > "$dir/install.log" 2>&1 ||
    { cat "$dir/install.log" >&2; return 1; }
  # A free port can be taken between the probe and mariadbd's bind (tests run in parallel): then
  # try another one.
  for _ in 1 2 3; do
    start "$1" mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" --port="$LAST_PORT" \
      --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
      --skip-log-bin --innodb-buffer-pool-size=16M
    for _ in $(seq 200); do
      grep -q "ready for connections" "$WORK/$1.log" && return 0
      grep -q "Address already in use" "$WORK/$1.log" && break
      sleep 0.05
    done
    grep -q "Address already in use" "$WORK/$1.log" || break
    sleep 0.2  # mariadbd aborts on its own
    LAST_PORT=$(free_port)
  done
  echo "examples: $1 did not start; its log:" >&2
  cat "$WORK/$1.log" >&2
  return 1
}
