#!/usr/bin/env bash
# Memory under churn: the gateway's resident set over a long run, to show it
# stays flat once warm. Not part of the suite (it takes minutes).
#
#   scripts/soak-memory.sh [SECONDS] [--backend xdp|kernel]
#
#   SECONDS   how long the churn runs (60-3600; default 600)
#
# On a private lab (two namespaces made and removed by this script): the
# gateway (`serve --app orders --metrics`, on the xdp backend with
# `--inject tx-loss:200` so it keeps retransmitting) takes 100 steady
# connections at 20,000 orders/s, and every 10 s a storm of 300 more
# connections that send bytes the orders app rejects (it closes them). Every
# 10 s the script prints the gateway's RSS (VmRSS), its sockets allocated,
# TIME-WAIT records and loss recovery's timer entries. Memory may grow only
# with the peak of concurrent connections (sockets and connection buffers
# are reused, never freed, so a new peak costs its buffers; every other
# table is sized at start-up). At the end the script prints the growth from
# the end of the first minute, and what new peaks since then account for
# (each new socket: the stack's and the server's receive and send buffers,
# 4 x 64 KiB), and exits 1 if the rest is more than 2 % of the RSS after the
# first minute.
#
# Bounded: the load runs SECONDS, each storm 20 s at most, and every process
# it starts is stopped by PID on exit. Needs root (namespaces, XDP).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2; }
SECS=600
BACKEND=xdp
while (($#)); do
  case $1 in
    --backend) BACKEND=${2:-}; shift 2 ;;
    -h|--help) usage ;;
    *) [[ $1 =~ ^[0-9]+$ ]] || usage; SECS=$1; shift ;;
  esac
done
[[ $SECS -ge 60 && $SECS -le 3600 ]] || usage
[[ $BACKEND == xdp || $BACKEND == kernel ]] || usage
[[ $(id -u) == 0 ]] || { echo "soak-memory: needs root (network namespaces, XDP)" >&2; exit 2; }

ensure_rust
ensure_packages "${TG_PACKAGES[@]}"
cargo build --release --quiet
BIN=$PWD/target/release/tailgate

TAG=tgm$$
export TG_NS_GW=${TAG}g TG_NS_CLI=${TAG}c TG_IF_GW=${TAG}g0 TG_IF_CLI=${TAG}c0
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  scripts/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [[ $BACKEND == xdp ]]; then
  scripts/lab.sh up --bypass >/dev/null
  SERVE=(--backend xdp --iface "$TG_IF_GW" --inject tx-loss:200)
else
  scripts/lab.sh up >/dev/null
  SERVE=(--backend kernel)
fi
LOG=$(mktemp /tmp/tailgate-soak-memory.XXXXXX)
ip netns exec "$TG_NS_GW" "$BIN" serve "${SERVE[@]}" --ip 198.18.0.1 --port 7777 --app orders \
  --max-conns 4096 --metrics 127.0.0.1:9464 >"$LOG" 2>&1 &
GW=$!
PIDS+=("$GW")
for _ in $(seq 1 100); do grep -q "serving" "$LOG" && break; sleep 0.1; done
grep -q "serving" "$LOG" || { cat "$LOG" >&2; exit 1; }
ip netns exec "$TG_NS_CLI" timeout $((SECS + 30)) "$BIN" load --ip 198.18.0.1 --port 7777 --app orders \
  --conns 100 --rate 20000 --duration "$SECS" >/dev/null 2>&1 &
PIDS+=("$!")

metric() { # pattern: the first matching series' value from /metrics (0 if absent)
  local text v
  text=$(ip netns exec "$TG_NS_GW" curl -s --max-time 2 http://127.0.0.1:9464/metrics 2>/dev/null || true)
  v=$(awk -v k="$1" '$1 ~ k && $1 !~ /_created/ {print $2; exit}' <<<"$text" | cut -d. -f1)
  echo "${v:-0}"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$GW/status"; }

echo "soak-memory: $SECS s of churn on the $BACKEND backend (gateway PID $GW)"
printf '%6s %10s %10s %10s %10s\n' t_s rss_kib sockets time_wait retx_heap
start=$(date +%s)
warm= warm_socks= last= last_socks=
t=0
while ((t < SECS)); do
  ip netns exec "$TG_NS_CLI" timeout 20 "$BIN" storm --ip 198.18.0.1 --port 7777 --conns 300 --timeout 15 \
    >/dev/null 2>&1 || true
  sleep $((10 - ($(date +%s) - start) % 10))
  t=$(($(date +%s) - start))
  kill -0 "$GW" 2>/dev/null || { echo "soak-memory: the gateway died" >&2; tail -5 "$LOG" >&2; exit 1; }
  r=$(rss_kb)
  socks=$(metric sockets_allocated)
  printf '%6d %10d %10s %10s %10s\n' "$t" "$r" "$socks" "$(metric 'tailgate_backend_gauge.*"time_wait"')" \
    "$(metric 'tailgate_backend_gauge.*"retx_heap"')"
  if ((t >= 60)) && [[ -z $warm ]]; then
    warm=$r warm_socks=$socks
  fi
  last=$r last_socks=$socks
done
peaks=$(((last_socks - warm_socks) * 256))
rest=$(awk -v a="$warm" -v b="$last" -v p="$peaks" 'BEGIN {printf "%.2f", (b - a - p) * 100 / a}')
echo "soak-memory: RSS $warm KiB after the first minute ($warm_socks sockets), $last KiB at the end" \
  "($last_socks sockets: new peaks account for $peaks KiB); the rest: $rest %"
awk -v g="$rest" 'BEGIN {exit !(g <= 2)}' || { echo "soak-memory: RSS grew more than 2 % beyond new peaks" >&2; exit 1; }
