# The exchange-leg modes of scripts/bench.sh (sla, added, risk, logon-flood), sourced by it:
# they use its globals (OUT, BIN, EXTRA, CAPTURE, RUNS, BACKENDS, ...) and helpers
# (start_server, stop_server, summary). Documented in scripts/bench.sh's header.

# The three-namespace lab (lab.sh up --exchange) with tailgate exchange in tg_ex on cpu0 at
# SCHED_FIFO 10 (it shares cpu0 with the load generator, which spins: without it, every answer
# would wait for a scheduler slice), and serve --upstream on BACKEND; CAPTURE (xdp only) is
# added to serve's flags. No journal: the simulator's sequenced messages stay in memory (a
# file's writeback would stall it for milliseconds at times, and it is not what is measured).
sla_up() { # backend [exchange flags...]
  local backend=$1
  shift
  if [[ $backend == xdp ]]; then scripts/lab.sh up --bypass --exchange >/dev/null; else scripts/lab.sh up --exchange >/dev/null; fi
  [[ -f $OUT/pw ]] || { echo pw0 >"$OUT/pw" && chmod 600 "$OUT/pw"; }
  rm -rf "$OUT/state"
  ip netns exec tg_ex taskset -c 0 chrt -f 10 "$BIN" exchange --ip 198.18.0.4 --port 26400 --account gw0:pw0 "$@" \
    >"$OUT/exchange.log" 2>&1 &
  EXCHANGE_PID=$!
  EXTRA+=(--upstream 198.18.0.4:26400 --upstream-user gw0 --upstream-password-file "$OUT/pw" --upstream-state "$OUT/state"
    "${CAPTURE[@]}")
  start_server "$backend" orders
  for _ in $(seq 50); do grep -q "logged in as gw0" "$OUT/server.log" && break; sleep 0.1; done
  grep -q "logged in as gw0" "$OUT/server.log" || { cat "$OUT/server.log" "$OUT/exchange.log" >&2; exit 1; }
}

sla_down() {
  stop_server
  kill -TERM "$EXCHANGE_PID" 2>/dev/null || true
  wait "$EXCHANGE_PID" 2>/dev/null || true
  EXCHANGE_PID=
  EXTRA=()
}

mode_sla() {
  SLA_CONNS=${SLA_CONNS:-100} SLA_SECS=${SLA_SECS:-60}
  echo "| run | backend | orders/s | conns | s | ack p50 us | p99 us | p99.9 us | max us | first fill p50 us | p99.9 us | fills | rejects | unanswered |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for run in $(seq "$RUNS"); do
    for rate in ${SLA_RATES:-12000}; do
      for backend in $BACKENDS; do
        sla_up "$backend"
        rm -f "$OUT/r.json"
        ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "$rate" --cross 30 \
          --conns "$SLA_CONNS" --duration "$SLA_SECS" --core 0 --json "$OUT/r.json" >"$OUT/client.log" 2>&1 || true
        sla_down
        [[ -s $OUT/r.json ]] || { cat "$OUT/client.log" "$OUT/server.log" >&2; exit 1; }
        python3 - "$OUT/r.json" "$run" "$backend" "$rate" "$SLA_CONNS" "$SLA_SECS" >>"$OUT/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
run, backend, rate, conns, secs = sys.argv[2:7]
t, l = r["rtt_us"], r.get("lifecycle") or {}
f = l.get("first_fill_us", {})
rej = sum((l.get("rejects") or {}).values())
print("| %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %d | %d |" % (
  run, backend, rate, conns, secs, t["p50"], t["p99"], t["p999"], t["max"], f.get("p50", 0), f.get("p999", 0),
  l.get("fills", 0), rej, r["unanswered"]))
print("ALL %s/%s %.1f %.1f %.1f" % (backend, rate, t["p50"], t["p99"], t["p999"]))
PY
        grep -v '^ALL' "$OUT/rows" | tail -1
        grep '^ALL' "$OUT/rows" | tail -1 | cut -d' ' -f2- >>"$OUT/all"
      done
    done
  done
  summary backend/rate 1
}

mode_added() {
  SLA_CONNS=${SLA_CONNS:-100} ADDED_SECS=${ADDED_SECS:-10}
  echo "| run | backend | orders/s | paired | in p50 us | in p99 us | in p99.9 us | out p50 us | out p99 us | out p99.9 us |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for run in $(seq "$RUNS"); do
    for backend in $BACKENDS; do
      rm -f "$OUT/gw.pcap"
      CAPTURE=()
      [[ $backend == xdp ]] && CAPTURE=(--pcap "$OUT/gw.pcap")
      sla_up "$backend"
      if [[ $backend != xdp ]]; then
        # The kernel backend's frames, where the veth hands them to the gateway's namespace.
        ip netns exec tg_gw tcpdump -i tg_gw0 -s 0 -B 65536 -w "$OUT/gw.pcap" tcp >/dev/null 2>&1 &
        TCPDUMP_PID=$!
        sleep 0.5
      fi
      ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "${LOAD_RATE_ADDED:-12000}" \
        --cross 30 --conns "$SLA_CONNS" --duration "$ADDED_SECS" --core 0 >"$OUT/client.log" 2>&1 || true
      [[ $backend != xdp ]] && { kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; }
      sla_down
      python3 scripts/lib/added_time.py "$OUT/gw.pcap" "$PORT" 26400 >"$OUT/added.json"
      python3 - "$OUT/added.json" "$run" "$backend" "${LOAD_RATE_ADDED:-12000}" >>"$OUT/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
run, backend, rate = sys.argv[2:5]
i, o = r["in"], r["out"]
print("| %s | %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
  run, backend, rate, r["paired"], i["p50"], i["p99"], i["p999"], o["p50"], o["p99"], o["p999"]))
print("ALL %s/in %.1f %.1f %.1f" % (backend, i["p50"], i["p99"], i["p999"]))
print("ALL %s/out %.1f %.1f %.1f" % (backend, o["p50"], o["p99"], o["p999"]))
PY
      grep -v '^ALL' "$OUT/rows" | tail -1
      grep '^ALL' "$OUT/rows" | tail -2 | cut -d' ' -f2- >>"$OUT/all"
    done
  done
  summary backend/direction 1
}

# The accounts of the risk modes: RISK_ACCOUNTS [10] accounts R0.. with one password, every
# limit set (RISK_LIMITS=all) or none, in $OUT/risk-<limits>.toml; prints the --account list.
risk_config() { # all|none
  local n=${RISK_ACCOUNTS:-10} i hash names=()
  [[ -f $OUT/cpw ]] || { echo bench-s3cret >"$OUT/cpw" && chmod 600 "$OUT/cpw"; }
  [[ -f $OUT/hash ]] || "$BIN" hash-password --password-file "$OUT/cpw" >"$OUT/hash"
  hash=$(cat "$OUT/hash")
  {
    if [[ $1 == all ]]; then
      # Every check on, none refusing this load: the cost, not the refusals.
      printf '[limits]\nmax_order_qty = 100000\nmax_order_notional = 1000000000000\nprice_collar_bps = 5000\n'
      printf 'max_gross_open_notional = 1000000000000000\nmax_net_notional = 1000000000000000\n'
      printf 'session_orders_per_sec = 1000000\nsession_burst = 100000\naccount_orders_per_sec = 1000000\n'
      printf 'account_burst = 100000\nduplicate_window_ms = 1\nrestricted_symbols = ["XYZ"]\n'
      printf '[prices]\nTGATE = 10000\n'
    fi
    for i in $(seq 0 $((n - 1))); do
      printf '[[accounts]]\nname = "R%d"\npassword_hash = "%s"\nsources = ["198.18.0.0/15"]\nmax_sessions = 1000\n' "$i" "$hash"
    done
  } >"$OUT/risk-$1.toml"
  for i in $(seq 0 $((n - 1))); do names+=("R$i"); done
  local IFS=,
  echo "${names[*]}"
}

# scripts/bench.sh risk: the pre-trade checks and the journal end to end, each configuration
# of RISK_CONFIGS side by side: open (no accounts, no limits), accounts (logons with passwords,
# no limits), checks (every limit set), checks-journal (and --journal). The round trip to the Ack.
mode_risk() {
  SLA_CONNS=${SLA_CONNS:-100} RISK_SECS=${RISK_SECS:-20}
  local accounts cfg load_acct
  accounts=$(risk_config none)
  risk_config all >/dev/null
  echo "| run | backend | config | orders/s | ack p50 us | p99 us | p99.9 us | max us | rejects | unanswered |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for run in $(seq "$RUNS"); do
    for backend in $BACKENDS; do
      for cfg in ${RISK_CONFIGS:-open accounts checks checks-journal}; do
        load_acct=(--account "$accounts" --password-file "$OUT/cpw")
        case $cfg in
          open) load_acct=() ;;
          accounts) EXTRA=(--config "$OUT/risk-none.toml") ;;
          checks) EXTRA=(--config "$OUT/risk-all.toml") ;;
          checks-journal) rm -rf "$OUT/journal"; EXTRA=(--config "$OUT/risk-all.toml" --journal "$OUT/journal" ${JOURNAL_FLAGS:-}) ;;
          *) echo "bench.sh: unknown risk config '$cfg'" >&2; exit 2 ;;
        esac
        sla_up "$backend"
        rm -f "$OUT/r.json"
        ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "${SLA_RATES:-12000}" \
          --cross 30 --conns "$SLA_CONNS" --duration "$RISK_SECS" --core 0 "${load_acct[@]}" --json "$OUT/r.json" \
          >"$OUT/client.log" 2>&1 || true
        sla_down
        rm -rf "$OUT/journal"
        [[ -s $OUT/r.json ]] || { cat "$OUT/client.log" "$OUT/server.log" >&2; exit 1; }
        python3 - "$OUT/r.json" "$run" "$backend" "$cfg" "${SLA_RATES:-12000}" >>"$OUT/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
run, backend, cfg, rate = sys.argv[2:6]
t, l = r["rtt_us"], r.get("lifecycle") or {}
rej = sum((l.get("rejects") or {}).values())
print("| %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %d | %d |" % (
  run, backend, cfg, rate, t["p50"], t["p99"], t["p999"], t["max"], rej, r["unanswered"]))
print("ALL %s/%s %.1f %.1f %.1f" % (backend, cfg, t["p50"], t["p99"], t["p999"]))
PY
        grep -v '^ALL' "$OUT/rows" | tail -1
        grep '^ALL' "$OUT/rows" | tail -1 | cut -d' ' -f2- >>"$OUT/all"
      done
    done
  done
  summary backend/config 1
}

# scripts/bench.sh logon-flood: a trading session (FLOOD_CONNS [10] sessions, FLOOD_RATE [2000]
# orders/s, FLOOD_SECS [20] s, local mode: the gateway answers) calm, and with FLOOD_LOGONS [1000]
# wrong logons a second from another address in the clients' namespace
# (scripts/lib/logon_flood.py, on cpu0 beside the load generator), side by side on each backend.
# Two measures: the round trip the client saw (the flooder shares the client's core, so this one
# also carries its CPU), and the gateway's own time per order from its sampler (every order
# sampled, logons not, and no tail bias: a slow logon is not an order; tailgate report --log
# --json).
mode_logon_flood() {
  local accounts flood_pid
  accounts=$(risk_config none)
  echo "| run | backend | flood | orders/s | rtt p50 us | rtt p99 us | rtt p99.9 us | gateway p50 us | gateway p99 us | gateway p99.9 us | logons sent | refused | throttled | reset at connect |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for run in $(seq "$RUNS"); do
    for backend in $BACKENDS; do
      for flood in calm flood; do
        lab_for "$backend"
        # The flood's own address: its failures are throttled, not the session's.
        ip netns exec tg_cli ip addr add 198.18.0.9/24 dev tg_cli0 2>/dev/null || true
        rm -f "$OUT/s.log" "$OUT/r.json"
        EXTRA=(--config "$OUT/risk-none.toml" --sample "all=0,limit=100,market=100,cancel=100" --sample-tail-us 0 --sample-log "$OUT/s.log")
        start_server "$backend" orders
        echo "0 0 0 0" >"$OUT/flood"
        flood_pid=
        if [[ $flood == flood ]]; then
          ip netns exec tg_cli taskset -c 0 python3 scripts/lib/logon_flood.py 198.18.0.9 "$GW_IP" "$PORT" \
            "${FLOOD_LOGONS:-1000}" $((${FLOOD_SECS:-20} + 2)) >"$OUT/flood" 2>"$OUT/flood.err" &
          flood_pid=$!
          sleep 1
        fi
        ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate "${FLOOD_RATE:-2000}" \
          --conns "${FLOOD_CONNS:-10}" --duration "${FLOOD_SECS:-20}" --core 0 --account "$accounts" \
          --password-file "$OUT/cpw" --json "$OUT/r.json" >"$OUT/client.log" 2>&1 || true
        [[ -n $flood_pid ]] && wait "$flood_pid"
        stop_server
        EXTRA=()
        [[ -s $OUT/r.json ]] || { cat "$OUT/client.log" "$OUT/server.log" >&2; exit 1; }
        "$BIN" report --log "$OUT/s.log" --json >"$OUT/rep.json" 2>/dev/null || echo '{}' >"$OUT/rep.json"
        python3 - "$OUT/r.json" "$OUT/rep.json" "$run" "$backend" "$flood" "${FLOOD_RATE:-2000}" "$(cat "$OUT/flood")" \
          >>"$OUT/rows" <<'PY'
import json, sys
r, g = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
run, backend, flood, rate, f = sys.argv[3:8]
sent, refused, throttled, reset = f.split()
t = r["rtt_us"]
gp = lambda k: g.get(k, float("nan"))
print("| %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %s |" % (
  run, backend, flood, rate, t["p50"], t["p99"], t["p999"], gp("p50_us"), gp("p99_us"), gp("p999_us"),
  sent, refused, throttled, reset))
print("ALL %s/%s %.1f %.1f %.1f" % (backend, flood, gp("p50_us"), gp("p99_us"), gp("p999_us")))
PY
        grep -v '^ALL' "$OUT/rows" | tail -1
        grep '^ALL' "$OUT/rows" | tail -1 | cut -d' ' -f2- >>"$OUT/all"
      done
    done
  done
  echo
  echo "The gateway's own time per order:"
  summary backend/flood 1
}
