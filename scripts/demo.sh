#!/usr/bin/env bash
# Build, bring the veth lab up, run the gateway in namespace tg_gw on the best
# backend available, drive it from tg_cli with `tailgate load`, and print the
# latency report, then the gateway's own tail attribution of the same run
# (tailgate report on its sample log). The lab is torn down on exit, Ctrl-C
# or failure.
#
# Environment: DEMO_DURATION [10] seconds, DEMO_RATE [20000] msg/s,
# DEMO_CONNS [10], DEMO_PORT [7777].
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh

DURATION=${DEMO_DURATION:-10}
RATE=${DEMO_RATE:-20000}
CONNS=${DEMO_CONNS:-10}
PORT=${DEMO_PORT:-7777}
GW_IP=${TG_IP_GW:-198.18.0.1}
NS_GW=${TG_NS_GW:-tg_gw}
NS_CLI=${TG_NS_CLI:-tg_cli}

[[ $(id -u) == 0 ]] || { echo "demo.sh: must run as root (network namespaces)" >&2; exit 2; }
ensure_rust
ensure_packages "${TG_PACKAGES[@]}"

echo "== building (release)"
cargo build --release --quiet
BIN=$PWD/target/release/tailgate

SERVER_PID=
LOG=$(mktemp)
SAMPLES=$(mktemp -u /tmp/tailgate-demo-samples.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  scripts/lab.sh down >/dev/null || true
  rm -f "$LOG" "$SAMPLES"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pin the gateway to cpu1 and the load generator to cpu0 when there are two CPUs.
SERVE_PIN=() LOAD_PIN=()
if (($(nproc) >= 2)); then SERVE_PIN=(--core 1 --spin) LOAD_PIN=(--core 0); fi

start_gateway() { # backend args...
  : >"$LOG"
  ip netns exec "$NS_GW" "$BIN" serve --ip "$GW_IP" --port "$PORT" --app orders "${SERVE_PIN[@]}" \
    --sample-log "$SAMPLES" "$@" 2>"$LOG" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    grep -q "^tailgate: serving " "$LOG" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  return 1
}

# The best backend: xdp (AF_XDP + user-space TCP) on a lab whose gateway
# interface has no kernel address; if that cannot start here, the kernel.
echo "== lab (bypass: ${TG_IF_GW:-tg_gw0} has no kernel address, the stack owns $GW_IP)"
scripts/lab.sh up --bypass
echo "== gateway"
if ! start_gateway --backend xdp --iface "${TG_IF_GW:-tg_gw0}"; then
  echo "  xdp backend unavailable here: $(grep -m1 'error' "$LOG" || tail -1 "$LOG")"
  echo "== lab (kernel: $GW_IP on ${TG_IF_GW:-tg_gw0})"
  scripts/lab.sh up
  start_gateway --backend kernel || { cat "$LOG" >&2; echo "demo.sh: gateway failed to start" >&2; exit 1; }
fi
sed 's/^/  /' "$LOG"
BACKEND=$(grep -o 'backend=[a-z]*' "$LOG" | head -1 | cut -d= -f2)

echo "== load: $CONNS connections, $RATE orders/s, ${DURATION}s, from $NS_CLI"
set +e
ip netns exec "$NS_CLI" "$BIN" load --ip "$GW_IP" --port "$PORT" --app orders --conns "$CONNS" \
  --rate "$RATE" --duration "$DURATION" "${LOAD_PIN[@]}"
rc=$?
set -e
echo "== gateway backend: $BACKEND"
kill -TERM "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=
grep -E "stopped|orders:|sampler:|xdp:|xdp program:" "$LOG" | sed 's/^/  /' || true
echo "== tail attribution: the gateway's own records of every message (tailgate report --log)"
"$BIN" report --log "$SAMPLES" | sed 's/^/  /' || true
exit $rc
