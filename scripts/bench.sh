#!/usr/bin/env bash
# Latency benchmarks on the veth lab, every configuration side by side in one run.
#
#   scripts/bench.sh sockperf   sockperf ping-pong, 64-byte messages, client pinned to cpu0 and
#                               spinning, against each server in SERVERS, all on cpu1 spinning:
#                                 sockperf-server   sockperf's own server, kernel TCP
#                                 kernel            tailgate serve --backend kernel --app sockperf --spin
#                                 xdp               tailgate serve --backend xdp --app sockperf --spin
#                                 udp-floor         tailgate serve --backend xdp --app udp-echo --spin
#                                                   (sockperf over UDP: AF_XDP with no TCP at all)
#                                 tcp-floor         tailgate serve --backend xdp --app tcp-floor --spin
#                                                   (sockperf over TCP to a stateless echo on AF_XDP:
#                                                   the lab's TCP without our stack; xdp - tcp-floor
#                                                   is our stack's own cost)
#                                 xdp-sampled       xdp with every message sampled (--sample all=100),
#                                 kernel-sampled    kernel likewise: the sampler's cost against xdp/kernel
#                                 xdp-sampled-noack  the same with --sample-acks off: the ACK stage's
#                                 kernel-sampled-noack  cost against xdp-sampled/kernel-sampled
#                                 xdp-sampled-nooffcpu  the same with --offcpu off: the off-CPU
#                                 kernel-sampled-nooffcpu  trace's cost against xdp/kernel-sampled
#                                 xdp-pcap          xdp with --pcap (every frame captured to a file in the
#                                                   run's temporary directory, removed at the end)
#                                 xdp-baseline      xdp, from the binary BASELINE_BIN (another commit's
#                                 kernel-baseline   build), to compare a change side by side; likewise kernel
#   scripts/bench.sh load       tailgate load --app orders (client on cpu0) against
#                               tailgate serve --app orders --spin --core 1 on each backend in
#                               BACKENDS [kernel xdp], over CONNS_LIST [1 100 1000] connections,
#                               open loop at LOAD_RATE [20000] orders/s in total; full round trips
#   scripts/bench.sh fix        FIX 4.4 against the binary protocol: tailgate load --app orders at
#                               LOAD_RATE [20000] orders/s over FIX_CONNS [10] connections (client on
#                               cpu0) against serve --app orders --fix-port 7778 --spin --core 1 (local
#                               mode), --protocol binary, --protocol fix, and fix-state (the FIX sessions
#                               kept in a state file, --fix-state) in turn, on each backend in
#                               BACKENDS: full round trips, and what FIX adds to the median p50
#   scripts/bench.sh loss       tailgate load --app orders against serve --app orders on the
#                               kernel and xdp backends with segments lost on purpose, at
#                               4 x 500 and 100 x 1000 orders/s (LOSS_LOADS) for SECS: reply
#                               loss 1/40 and 1/200 and inbound loss 1/40 (LOSS_CASES). Kernel:
#                               nftables (numgen, data segments only); xdp: --inject tx-loss:N /
#                               loss:N. p50/p99/p99.9/max,
#                               unanswered, and the stack's retransmissions by kind (kernel: nftables
#                               drops replies on arrival in tg_cli, requests on input in tg_gw)
#   scripts/bench.sh overload   100 connections, open loop at each rate of OVERLOAD_RATES
#                               [50000 .. 800000] for SECS_OVERLOAD [4] s, kernel and xdp: throughput, unanswered,
#                               p50/p99/p99.9, and every drop counter that moved (xdp: the exit
#                               line's; kernel: the interface's and TCP's drop counters in tg_gw), and
#                               the segments the gateway sent per order; OVERLOAD_CLIENT=xdp runs the
#                               load generator on the xdp backend too (198.18.0.3 on tg_cli0)
#   scripts/bench.sh attribution  the report's accuracy: tailgate load --app orders (4 connections,
#                               500 orders/s, ATTR_SECS [5] s, client on cpu0) against serve --app
#                               orders --spin --core 1 --sample-log, with one fault per run, on each
#                               backend where the gateway can see it (ATTR_FAULTS): control (none),
#                               stall (--inject stall:50:5000), slow-handler (slow-handler:50:5000),
#                               inbound-loss (xdp only: loss:4; the kernel reassembles out of
#                               sight), reply-loss (nftables in tg_cli drops every 40th data
#                               segment from the gateway on arrival), burst (load --burst 2000:500),
#                               hog and hog-fifo (a process pinned to the loop's core spinning 5 ms in
#                               every 30, SCHED_OTHER and SCHED_FIFO, scripts/lib/hog.py: right when
#                               the report names "preempted by tg-hog" for at least 95 % of the
#                               tail messages from 1 ms whose time overlaps one of its bursts),
#                               page-faults (--inject page-faults:50:2000: every 50th handler faults 2000
#                               fresh pages in; right when the report names "page fault" for at least
#                               95 % of the messages it touched), softirq (bursts of 250 UDP
#                               datagrams every 30 ms into namespaces of its own, tg_sq_a/b, whose
#                               receive path RPS steers to core 1 and 1,000 nftables rules slow there,
#                               scripts/lib/softirq.py: right when the report names "softirq NET_RX"
#                               or "preempted by ksoftirqd/1" for at least 95 % of the tail from 1 ms
#                               overlapping a burst),
#                               and on the three-namespace lab with serve --upstream: upstream-slow
#                               (tailgate exchange --inject slow:50:20000), upstream-loss (xdp only:
#                               the bridge drops every 40th data segment from the exchange; judged
#                               from 1 ms, --threshold-us 1000, as its 2-4 ms are below the VM's stalls).
#                               tailgate report --json at its default threshold (the p99.9) names
#                               the top cause; a confusion table (fault against top cause) per
#                               backend, and the accuracy over the faulted runs
#   scripts/bench.sh queues     one loop against two on a veth lab with two queues per end
#                               (lab.sh up --queues 2): tailgate load --app orders --pingpong over
#                               QUEUE_CONNS [200] connections (client on cpu0) for SECS against
#                                 xdp-1     serve --backend xdp --queue 0 --core 1 (XPS on the client's
#                                           veth sends every flow to queue 0, as an ntuple rule would)
#                                 xdp-2     serve --backend xdp --queue 0,1 --core 0,1 (flows spread by
#                                           the client's socket hash)
#                                 kernel-1  serve --backend kernel --core 1
#                                 kernel-2  serve --backend kernel --core 0,1 (SO_REUSEPORT)
#                               throughput, p50/p99/p99.9 and each loop's share of the messages
#                               (QUEUE_CONFIGS picks configurations). Not in the default set:
#                                 stray     xdp-2 with blocking loops (no --spin), XPS sending from
#                                           cpu0 to queue 0 and from cpu1 to queue 1, the client
#                                           opening every connection on cpu0 (loop 0 owns them) and
#                                           moved to cpu1 after 1 s: every later frame lands on
#                                           queue 1 and is handed to loop 0, which sleeps
#                                 stray-baseline  the same, the gateway from BASELINE_BIN
#   scripts/bench.sh bulk       64 MiB echoed through one connection (BULK_MIB), kernel and xdp:
#                               MiB/s each way, send and receive overlapped
#   scripts/bench.sh connect    the accept path under stress, kernel and xdp (serve --app echo,
#                               --max-conns 12000), with tailgate storm from tg_cli: a
#                               connection storm of each size in CONNECT_CONNS [500 5000]
#                               (time until every connection is established and has echoed
#                               once, and the clients' SYN retransmissions), then a SYN flood
#                               of FLOOD_SYNS [5000] spoofed SYNs with a legitimate client
#                               connecting half-way (its connect and echo times, and its SYN
#                               retransmissions)
#   scripts/bench.sh idle       what an idle connection costs, kernel and xdp (serve --app echo
#                               --max-conns N+100): scripts/lib/idle.py in tg_cli opens and holds each
#                               count of IDLE_CONNS [1000 10000] connections (IDLE_TOUCH=1: one byte
#                               echoed on each first); the gateway's VmRSS before and after, and the
#                               host's TCP socket memory (/proc/net/sockstat mem) moved; IDLE_SERVERS
#                               [kernel xdp xdp-umem8m] (xdp-umem8m: --umem-frames 4096, an 8 MiB UMEM)
#   scripts/bench.sh tuning     sockperf ping-pong (64 bytes) against serve --backend xdp --app
#                               sockperf --spin --core 1 in four host states: default (the
#                               gateway holds /dev/cpu_dma_latency at 0), tuned (after
#                               scripts/tune-host.sh --apply: sysctls, THP, hugepages, the
#                               interface's NAPI knobs, IRQ affinity; reverted after each run),
#                               tuned-napi-defer (the same with --napi-defer), and
#                               no-dma-latency (default, with --cpu-dma-latency off)
#   scripts/bench.sh sla        the exchange leg end to end (lab.sh up --exchange): tailgate load
#                               --app orders --cross 30 over SLA_CONNS [100] connections at each rate
#                               of SLA_RATES [12000] orders/s for SLA_SECS [60] s (client on cpu0),
#                               against serve --upstream --spin --core 1 on each backend in
#                               BACKENDS, with tailgate exchange in tg_ex on cpu0 (blocking): the
#                               round trip to the Ack as the client saw it (p50/p99/p99.9/max), to a
#                               taker's first fill, the answers by kind, and rejects
#   scripts/bench.sh risk       the pre-trade checks and the journal end to end on the exchange lab (as
#                               sla): RISK_CONFIGS [open accounts checks checks-journal] side by side on
#                               each backend: no accounts; RISK_ACCOUNTS [10] accounts with passwords;
#                               every limit set (none refusing); and --journal; SLA_RATES [12000] orders/s
#                               over SLA_CONNS [100] for RISK_SECS [20] s: the round trip to the Ack
#   scripts/bench.sh logon-flood  a trading session (FLOOD_CONNS [10], FLOOD_RATE [2000] orders/s,
#                               FLOOD_SECS [20] s, local mode) calm and under FLOOD_LOGONS [1000] wrong
#                               logons a second from another address (scripts/lib/logon_flood.py), each
#                               backend: the client's round trip, and the gateway's own time per order
#                               from its sampler (tailgate report --log --json)
#   scripts/bench.sh added      the gateway's own added time on the same lab, from a capture of its
#                               frames (xdp: serve --pcap; kernel: tcpdump on tg_gw0): client in ->
#                               upstream out ("in") and exchange in -> client out ("out") per order,
#                               paired exactly (scripts/lib/added_time.py), LOAD_RATE_ADDED [12000]
#                               orders/s over SLA_CONNS [100] for ADDED_SECS [10] s
#
# Runs are interleaved (A, B, A, B, ...) so that drift of the host hits every
# configuration alike. Environment: RUNS [3], SECS [10] per run, MSG [64] bytes,
# SERVERS [sockperf-server kernel xdp tcp-floor udp-floor], BASELINE_BIN (for the *-baseline servers). Prints one markdown row per
# run and a summary (median, min-max of each percentile). sockperf's figures
# are half round trips (its "latency"); tailgate load's are full round trips.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
. scripts/lib/bench_exchange.sh
. scripts/lib/bench_attribution.sh
. scripts/lib/bench_idle.sh
. scripts/lib/bench_fix.sh

RUNS=${RUNS:-3}
SECS=${SECS:-10}
MSG=${MSG:-64}
SERVERS=${SERVERS:-sockperf-server kernel xdp tcp-floor udp-floor}
BACKENDS=${BACKENDS:-kernel xdp}
LOAD_RATE=${LOAD_RATE:-20000}
PORT=7777
GW_IP=198.18.0.1
[[ $(id -u) == 0 ]] || { echo "bench.sh: must run as root" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: RUNS=$RUNS must be a positive integer" >&2; exit 2; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: SECS=$SECS must be a positive integer" >&2; exit 2; }
ensure_rust
ensure_packages "${TG_PACKAGES[@]}" util-linux
cargo build --release --quiet
BIN=$PWD/target/release/tailgate
BASELINE_BIN=${BASELINE_BIN:-}
if [[ $SERVERS == *baseline* || ${QUEUE_CONFIGS:-} == *baseline* ]]; then
  [[ -n $BASELINE_BIN && -x $BASELINE_BIN ]] ||
    { echo "bench.sh: the *-baseline servers need BASELINE_BIN, an executable tailgate built from another commit" >&2; exit 2; }
fi

SERVER_PID=
EXCHANGE_PID=
TCPDUMP_PID=
EXTRA=()
CAPTURE=()
OUT=$(mktemp -d)
TUNE=(scripts/tune-host.sh --iface tg_gw0 --netns tg_gw --core 1 --only sysctl,thp,hugepages,iface,irq --state "$OUT/tune.state")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $SERVER_PID ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [[ -n $EXCHANGE_PID ]] && kill -TERM "$EXCHANGE_PID" 2>/dev/null && wait "$EXCHANGE_PID" 2>/dev/null
  [[ -n $TCPDUMP_PID ]] && kill -INT "$TCPDUMP_PID" 2>/dev/null && wait "$TCPDUMP_PID" 2>/dev/null
  # The attribution mode's competing process or softirq load; the idle mode's holder.
  [[ -n ${HOG_PID:-} ]] && kill "$HOG_PID" 2>/dev/null && wait "$HOG_PID" 2>/dev/null
  [[ -n ${HOLDER_PID:-} ]] && kill "$HOLDER_PID" 2>/dev/null && wait "$HOLDER_PID" 2>/dev/null
  [[ -f $OUT/tune.state ]] && "${TUNE[@]}" --revert >/dev/null
  scripts/lab.sh down >/dev/null || true
  softirq_down
  rm -rf "$OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Kernel servers need the address on the interface; xdp servers need it absent.
lab_for() { # server
  case $1 in
    xdp* | udp-floor | tcp-floor) scripts/lab.sh up --bypass >/dev/null ;;
    *) scripts/lab.sh up >/dev/null ;;
  esac
}

start_server() { # name app
  local name=$1 app=$2 args bin=$BIN
  case $name in
    sockperf-server)
      ip netns exec tg_gw taskset -c 1 sockperf server --tcp -i "$GW_IP" -p "$PORT" --nonblocked --timeout 0 \
        >"$OUT/server.log" 2>&1 &
      ;;
    kernel) args=(--backend kernel) ;;
    xdp) args=(--backend xdp --iface tg_gw0) ;;
    xdp-sampled) args=(--backend xdp --iface tg_gw0 --sample all=100) ;;
    xdp-pcap) args=(--backend xdp --iface tg_gw0 --pcap "$OUT/capture.pcap") ;;
    kernel-sampled) args=(--backend kernel --sample all=100) ;;
    xdp-sampled-nooffcpu) args=(--backend xdp --iface tg_gw0 --sample all=100 --offcpu off) ;;
    kernel-sampled-nooffcpu) args=(--backend kernel --sample all=100 --offcpu off) ;;
    xdp-sampled-noack) args=(--backend xdp --iface tg_gw0 --sample all=100 --sample-acks off) ;;
    kernel-sampled-noack) args=(--backend kernel --sample all=100 --sample-acks off) ;;
    udp-floor) args=(--backend xdp --iface tg_gw0) app=udp-echo ;;
    tcp-floor) args=(--backend xdp --iface tg_gw0) app=tcp-floor ;;
    xdp-umem8m) args=(--backend xdp --iface tg_gw0 --umem-frames 4096) ;;
    xdp-umem1m) args=(--backend xdp --iface tg_gw0 --umem-frames 512) ;;
    xdp-baseline) args=(--backend xdp --iface tg_gw0) bin=$BASELINE_BIN ;;
    kernel-baseline) args=(--backend kernel) bin=$BASELINE_BIN ;;
    *) echo "bench.sh: unknown server '$name'" >&2; exit 2 ;;
  esac
  if [[ $name != sockperf-server ]]; then
    ip netns exec tg_gw "$bin" serve "${args[@]}" "${EXTRA[@]}" --app "$app" --ip "$GW_IP" --port "$PORT" --spin --core 1 \
      >"$OUT/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  wait_serving
  sleep 0.3
}

# Wait (5 s at most) for the server SERVER_PID to say it serves; its log if it died.
wait_serving() {
  for _ in $(seq 50); do
    grep -q "^tailgate: serving \|^tailgate: frame loop on \|Server is ready\|sockperf: \[" "$OUT/server.log" 2>/dev/null && break
    sleep 0.1
  done
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  sleep 0.5
}

# Median (min-max) of columns 2-4 of $OUT/all for each key in column 1, as markdown.
summary() { # first-header precision [names of the columns from 2, space separated]
  local names=(${3:-p50 p99 p99.9})
  local key col row head="| $1" rule="|---"
  for col in "${names[@]}"; do
    head+=" | $col median (min-max)" rule+="|---"
  done
  echo
  echo "$head |"
  echo "$rule|"
  for key in $(awk '{print $1}' "$OUT/all" | awk '!seen[$0]++'); do
    row="| $key"
    for col in $(seq 2 $((${#names[@]} + 1))); do
      row+=" | $(awk -v s="$key" -v c="$col" '$1==s {print $c}' "$OUT/all" | sort -n |
        awk -v p="$2" '{v[NR]=$1} END {f="%."p"f (%."p"f-%."p"f)"; printf f, v[int((NR+1)/2)], v[1], v[NR]}')"
    done
    echo "$row |"
  done
}

pct() { # file percentile
  awk -v p="$2" '$0 ~ "percentile "p" =" {print $NF; exit}' "$1"
}

# Run the sockperf client against the server started, stop the server, and
# print and record one row. udp: no --tcp.
sockperf_row() { # run key [udp]
  local proto=(--tcp) obs p50 p99 p999
  [[ ${3:-} == udp ]] && proto=()
  ip netns exec tg_cli taskset -c 0 sockperf ping-pong "${proto[@]}" -i "$GW_IP" -p "$PORT" -m "$MSG" \
    -t "$SECS" --nonblocked --timeout 0 >"$OUT/client.log" 2>&1 || { cat "$OUT/client.log" >&2; exit 1; }
  stop_server
  obs=$(grep -o 'Total [0-9]* observations' "$OUT/client.log" | awk '{print $2}')
  p50=$(pct "$OUT/client.log" 50.000) p99=$(pct "$OUT/client.log" 99.000) p999=$(pct "$OUT/client.log" 99.900)
  echo "| $1 | $2 | $p50 | $p99 | $p999 | $obs |"
  echo "$2 $p50 $p99 $p999" >>"$OUT/all"
}

case ${1:-} in
  sockperf)
    echo "| run | server | p50 us | p99 us | p99.9 us | observations |"
    echo "|---|---|---|---|---|---|"
    for run in $(seq "$RUNS"); do
      for server in $SERVERS; do
        lab_for "$server"
        start_server "$server" sockperf
        sockperf_row "$run" "$server" "$([[ $server == udp-floor ]] && echo udp)"
      done
    done
    summary server 2
    ;;
  tuning)
    echo "| run | host | p50 us | p99 us | p99.9 us | observations |"
    echo "|---|---|---|---|---|---|"
    for run in $(seq "$RUNS"); do
      for host in default tuned tuned-napi-defer no-dma-latency; do
        lab_for xdp
        EXTRA=()
        [[ $host == no-dma-latency ]] && EXTRA=(--cpu-dma-latency off)
        [[ $host == tuned ]] && "${TUNE[@]}" --apply >/dev/null 2>&1
        [[ $host == tuned-napi-defer ]] && "${TUNE[@]}" --napi-defer --apply >/dev/null 2>&1
        start_server xdp sockperf
        sockperf_row "$run" "$host"
        if [[ $host == tuned* ]]; then "${TUNE[@]}" --revert >/dev/null; fi
      done
    done
    summary host 2
    ;;
  load)
    echo "| run | backend | conns | p50 us | p99 us | p99.9 us | orders/s |"
    echo "|---|---|---|---|---|---|---|"
    for run in $(seq "$RUNS"); do
      for conns in ${CONNS_LIST:-1 100 1000}; do
        for backend in $BACKENDS; do
          lab_for "$backend"
          start_server "$backend" orders
          ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "$LOAD_RATE" \
            --conns "$conns" --duration "$SECS" --core 0 --json "$OUT/r.json" >"$OUT/client.log" 2>&1 ||
            { cat "$OUT/client.log" >&2; exit 1; }
          stop_server
          j() { grep -m1 "\"$1\":" "$OUT/r.json" | tr -d ' ,' | cut -d: -f2; }
          p50=$(j p50) p99=$(j p99) p999=$(j p999) tput=$(j throughput_msgs_per_s)
          printf '| %s | %s | %s | %.1f | %.1f | %.1f | %.0f |\n' "$run" "$backend" "$conns" "$p50" "$p99" "$p999" "$tput"
          echo "$backend/$conns $p50 $p99 $p999" >>"$OUT/all"
        done
      done
    done
    summary backend/conns 1
    ;;
  loss)
    ensure_packages nftables
    echo "| run | backend | load | loss | p50 us | p99 us | p99.9 us | max us | unanswered | stack retransmissions |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for run in $(seq "$RUNS"); do
      for load in ${LOSS_LOADS:-4x500 100x1000}; do
        conns=${load%x*} rate=$((${load%x*} * ${load#*x}))
        for case in ${LOSS_CASES:-reply:40 reply:200 inbound:40}; do
          dir=${case%:*} every=${case#*:}
          for backend in $BACKENDS; do
            lab_for "$backend"
            EXTRA=()
            if [[ $backend == xdp ]]; then
              [[ $dir == reply ]] && EXTRA=(--inject "tx-loss:$every") || EXTRA=(--inject "loss:$every")
            else
              # Data segments only (longer than a bare header with options), as the
              # injectors of the xdp backend do. Replies are dropped on arrival in
              # tg_cli: a drop on tg_gw's output hook fails the send locally, and
              # kernel TCP sends the data again as new data, not as a loss.
              ns=tg_cli hook=input match="tcp sport $PORT"
              [[ $dir == inbound ]] && ns=tg_gw hook=input match="tcp dport $PORT"
              ip netns exec $ns nft -f - <<NFT
table inet tg_bench_loss {
  chain c { type filter hook $hook priority 0; $match meta length > 60 numgen inc mod $every == 0 drop; }
}
NFT
            fi
            start_server "$backend" orders
            ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "$rate" \
              --conns "$conns" --duration "$SECS" --core 0 --json "$OUT/r.json" >"$OUT/client.log" 2>&1 ||
              { cat "$OUT/client.log" >&2; exit 1; }
            stop_server
            ip netns exec tg_gw nft delete table inet tg_bench_loss 2>/dev/null || true
            ip netns exec tg_cli nft delete table inet tg_bench_loss 2>/dev/null || true
            j() { grep -m1 "\"$1\":" "$OUT/r.json" | tr -d ' ,' | cut -d: -f2; }
            retx=$(grep -o 'retx_[a-z]*=[0-9]*' "$OUT/server.log" | grep -v '=0$' | tr '\n' ' ' || true)
            printf '| %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %s | %s |\n' "$run" "$backend" "$load" \
              "$case" "$(j p50)" "$(j p99)" "$(j p999)" "$(j max)" "$(j unanswered)" "${retx:--}"
            echo "$backend/$load/$case $(j p99) $(j p999) $(j max)" >>"$OUT/all"
          done
        done
      done
    done
    summary backend/load/loss 1 "p99 p99.9 max"
    ;;
  overload)
    echo "| run | backend | orders/s offered | answered/s | unanswered | p50 us | p99 us | p99.9 us | segments out per order | drops |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    SECS=${SECS_OVERLOAD:-4}
    # OVERLOAD_CLIENT=xdp: the load generator on its own stack too (an address the kernel does
    # not own in tg_cli), so no kernel TCP at either end of the gateway's xdp runs.
    OVERLOAD_CLIENT_ARGS=()
    [[ ${OVERLOAD_CLIENT:-kernel} == xdp ]] && OVERLOAD_CLIENT_ARGS=(--backend xdp --iface tg_cli0 --local-ip 198.18.0.3)
    for run in $(seq "$RUNS"); do
      for rate in ${OVERLOAD_RATES:-50000 100000 200000 400000 800000}; do
        for backend in $BACKENDS; do
          lab_for "$backend"
          start_server "$backend" orders
          nstat_before=$(ip netns exec tg_gw nstat -az 2>/dev/null | awk '/Drop|Prune|Overflow/ {print $1"="$2}' | tr '\n' ' ')
          segs_before=$(ip netns exec tg_gw nstat -az TcpOutSegs 2>/dev/null | awk '/TcpOutSegs/ {print $2}' || true)
          ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "$rate" \
            --conns 100 --duration "$SECS" --core 0 --json "$OUT/r.json" "${OVERLOAD_CLIENT_ARGS[@]}" >"$OUT/client.log" 2>&1 ||
            { cat "$OUT/client.log" >&2; exit 1; }
          stop_server
          j() { grep -m1 "\"$1\":" "$OUT/r.json" | tr -d ' ,' | cut -d: -f2; }
          # Frames the gateway sent per order answered (replies and pure ACKs): xdp from its
          # exit line, the kernel from TCP's OutSegs in tg_gw.
          answered=$(grep -o 'messages_in=[0-9]*' "$OUT/server.log" | head -1 | cut -d= -f2 || true)
          if [[ $backend == xdp* ]]; then
            segs=$(grep -o 'tx_frames=[0-9]*' "$OUT/server.log" | head -1 | cut -d= -f2 || true)
            # The exit line's drop counters (and the socket's XDP_STATISTICS) that moved.
            drops=$(grep -o '\(xsk_rx_[a-z_]*\|xsk_tx_invalid_descs\|tx_starved\|rx_invalid\|conn_refused\)=[0-9]*' \
              "$OUT/server.log" | grep -v '=0$' | tr '\n' ' ' || true)
          else
            segs=$(ip netns exec tg_gw nstat -az TcpOutSegs 2>/dev/null | awk '/TcpOutSegs/ {print $2}' || true)
            segs=$(( ${segs:-0} - ${segs_before:-0} ))
            drops=$(ip netns exec tg_gw nstat -az 2>/dev/null | awk -v b="$nstat_before" '
              BEGIN { n = split(b, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); old[p[1]] = p[2] } }
              /Drop|Prune|Overflow/ && $2 > old[$1] { printf "%s+%d ", $1, $2 - old[$1] }')
            d=$(ip netns exec tg_gw ip -s link show tg_gw0 | awk 'f {print $4; exit} /RX:/ {f=1}')
            [[ ${d:-0} != 0 ]] && drops+="link_rx_dropped=$d"
          fi
          per=$(awk -v s="${segs:-0}" -v m="${answered:-0}" 'BEGIN {if (m > 0) printf "%.2f", s / m; else print "?"}')
          printf '| %s | %s | %s | %.0f | %s | %.1f | %.1f | %.1f | %s | %s |\n' "$run" "$backend" "$rate" \
            "$(j throughput_msgs_per_s)" "$(j unanswered)" "$(j p50)" "$(j p99)" "$(j p999)" "$per" "${drops:-none}"
          echo "$backend/$rate $(j p50) $(j p99) $(j p999)" >>"$OUT/all"
        done
      done
    done
    summary backend/rate 1
    ;;
  connect)
    echo "| run | backend | case | established (flood: connected) ms | echoed (flood: served) ms | SYN retransmissions | flood SYNs still unsent when served |"
    echo "|---|---|---|---|---|---|---|"
    EXTRA=(--max-conns 12000)
    kv() { grep -o "$1=[0-9.]*" "$OUT/storm" | cut -d= -f2; }
    for run in $(seq "$RUNS"); do
      for backend in $BACKENDS; do
        # A fresh client namespace each time: the storms leave thousands of
        # client ports in TIME-WAIT, and a connect() searching a nearly full
        # port range takes seconds.
        scripts/lab.sh down >/dev/null
        lab_for "$backend"
        start_server "$backend" echo
        for n in ${CONNECT_CONNS:-500 5000}; do
          ip netns exec tg_cli taskset -c 0 "$BIN" -q storm --ip "$GW_IP" --port "$PORT" --conns "$n" \
            >"$OUT/storm" 2>&1 || { cat "$OUT/storm" "$OUT/server.log" >&2; exit 1; }
          est=$(awk -v s="$(kv established_s)" 'BEGIN {printf "%.1f", s * 1000}')
          echo_ms=$(awk -v s="$(kv echoed_s)" 'BEGIN {printf "%.1f", s * 1000}')
          echo "| $run | $backend | $n connections | $est | $echo_ms | $(kv syn_retrans) | |"
          echo "$backend/$n $est $echo_ms $(kv syn_retrans)" >>"$OUT/all"
          sleep 1
        done
        ip netns exec tg_cli taskset -c 0 "$BIN" -q storm --ip "$GW_IP" --port "$PORT" --flood "${FLOOD_SYNS:-5000}" \
          >"$OUT/storm" 2>&1 || { cat "$OUT/storm" "$OUT/server.log" >&2; exit 1; }
        echo "| $run | $backend | flood of ${FLOOD_SYNS:-5000} SYNs | $(kv connect_ms) | $(kv served_ms) | $(kv syn_retrans) | $(kv syns_after) |"
        echo "$backend/flood $(kv connect_ms) $(kv served_ms) $(kv syn_retrans)" >>"$OUT/all"
        stop_server
      done
    done
    summary backend/case 1 "established-or-connected-ms echoed-or-served-ms SYN-retransmissions"
    ;;
  attribution) mode_attribution ;;
  idle) mode_idle ;;
  fix) mode_fix ;;
  queues)
    echo "| run | config | orders/s | p50 us | p99 us | p99.9 us | messages per loop | handoffs |"
    echo "|---|---|---|---|---|---|---|---|"
    for run in $(seq "$RUNS"); do
      for cfg in ${QUEUE_CONFIGS:-xdp-1 xdp-2 kernel-1 kernel-2}; do
        case $cfg in
          xdp*) scripts/lab.sh up --bypass --queues 2 >/dev/null ;;
          *) scripts/lab.sh up --queues 2 >/dev/null ;;
        esac
        # veth delivers to the rx queue numbered like the tx queue a frame
        # left on; XPS on the client's end picks that queue per CPU.
        xps0=0 xps1=0 bin=$BIN spin=--spin
        [[ $cfg == xdp-1 ]] && xps0=3
        [[ $cfg == stray* ]] && xps0=1 xps1=2 spin=
        [[ $cfg == stray-baseline ]] && bin=$BASELINE_BIN
        ip netns exec tg_cli sh -c "echo $xps0 > /sys/class/net/tg_cli0/queues/tx-0/xps_cpus; \
          echo $xps1 > /sys/class/net/tg_cli0/queues/tx-1/xps_cpus"
        case $cfg in
          xdp-1) args=(--backend xdp --iface tg_gw0 --queue 0 --core 1) ;;
          xdp-2) args=(--backend xdp --iface tg_gw0 --queue 0,1 --core 0,1) ;;
          kernel-1) args=(--backend kernel --core 1) ;;
          kernel-2) args=(--backend kernel --core 0,1) ;;
          stray*) args=(--backend xdp --iface tg_gw0 --queue 0,1 --core 0,1) ;;
          *) echo "bench.sh: unknown queue configuration '$cfg'" >&2; exit 2 ;;
        esac
        ip netns exec tg_gw "$bin" serve "${args[@]}" --app orders --ip "$GW_IP" --port "$PORT" $spin \
          >"$OUT/server.log" 2>&1 &
        SERVER_PID=$!
        wait_serving
        ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --pingpong \
          --conns "${QUEUE_CONNS:-200}" --duration "$SECS" --core 0 --json "$OUT/r.json" >"$OUT/client.log" 2>&1 &
        load_pid=$!
        if [[ $cfg == stray* ]]; then
          sleep 1
          taskset -a -p 2 "$load_pid" >/dev/null
        fi
        wait "$load_pid" || { cat "$OUT/client.log" >&2; exit 1; }
        stop_server
        j() { grep -m1 "\"$1\":" "$OUT/r.json" | tr -d ' ,' | cut -d: -f2; }
        per_loop=$(grep -o '^tailgate: \(loop [0-9]* \)\{0,1\}orders: .*messages_in=[0-9]*' "$OUT/server.log" |
          grep -o 'messages_in=[0-9]*' | cut -d= -f2 | paste -sd/ - || true)
        handoffs=$(grep -o 'handoff_forwarded=[0-9]*' "$OUT/server.log" | cut -d= -f2 | awk '{s += $1} END {if (NR) print s}' || true)
        printf '| %s | %s | %.0f | %.1f | %.1f | %.1f | %s | %s |\n' "$run" "$cfg" "$(j throughput_msgs_per_s)" \
          "$(j p50)" "$(j p99)" "$(j p999)" "${per_loop:-?}" "${handoffs:--}"
        echo "$cfg $(j throughput_msgs_per_s) $(j p50) $(j p99)" >>"$OUT/all"
      done
    done
    summary config 1 "orders/s p50 p99"
    ;;
  sla) mode_sla ;;
  added) mode_added ;;
  risk) mode_risk ;;
  logon-flood) mode_logon_flood ;;
  bulk)
    echo "| run | backend | MiB | MiB/s | intact |"
    echo "|---|---|---|---|---|"
    for run in $(seq "$RUNS"); do
      for backend in $BACKENDS; do
        lab_for "$backend"
        start_server "$backend" echo
        ip netns exec tg_cli taskset -c 0 python3 - "$GW_IP" "$PORT" "${BULK_MIB:-64}" >"$OUT/bulk" <<'PY' ||
import hashlib, socket, sys, threading, time
ip, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
total, chunk = mib << 20, bytes(range(256)) * 256
s = socket.create_connection((ip, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
h_out, h_in, got = hashlib.sha256(), hashlib.sha256(), 0
def send():
    sent = 0
    while sent < total:
        s.sendall(chunk)
        h_out.update(chunk)
        sent += len(chunk)
t0 = time.monotonic()
th = threading.Thread(target=send)
th.start()
while got < total:
    b = s.recv(1 << 20)
    if not b:
        break
    h_in.update(b)
    got += len(b)
dt = time.monotonic() - t0
th.join()
print("%.1f %s" % (got / dt / (1 << 20), "yes" if got == total and h_in.digest() == h_out.digest() else "NO"))
PY
          { cat "$OUT/server.log" >&2; exit 1; }
        stop_server
        read -r mibs intact <"$OUT/bulk"
        echo "| $run | $backend | ${BULK_MIB:-64} | $mibs | $intact |"
        echo "$backend $mibs $mibs $mibs" >>"$OUT/all"
      done
    done
    summary backend 1 "MiB/s MiB/s MiB/s"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'
    exit 2
    ;;
esac
