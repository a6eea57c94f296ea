# The fix mode of scripts/bench.sh, sourced by it: FIX 4.4 against the binary protocol, the same
# orders at the same rate, on each backend. One gateway per run (serve --app orders --fix-port
# FIX_PORT, local mode: it answers itself), driven by tailgate load over FIX_CONNS connections at
# LOAD_RATE orders/s in total for SECS, with --protocol binary on PORT, with --protocol fix on
# FIX_PORT, and (fix-state) the same FIX sessions kept in a state file (serve --fix-state, a
# directory of the run's own), interleaved; full round trips as the client saw them, and the FIX
# cost: the median p50 of fix (and fix-state) less that of binary, per backend.

mode_fix() {
  local run backend proto port conns=${FIX_CONNS:-10} fix_port=7778
  echo "| run | backend | protocol | p50 us | p99 us | p99.9 us | orders/s | failures |"
  echo "|---|---|---|---|---|---|---|---|"
  for run in $(seq "$RUNS"); do
    for backend in $BACKENDS; do
      for proto in binary fix fix-state; do
        lab_for "$backend"
        EXTRA=(--fix-port "$fix_port")
        if [[ $proto == fix-state ]]; then
          rm -rf "$OUT/fixstate"
          EXTRA+=(--fix-state "$OUT/fixstate")
        fi
        start_server "$backend" orders
        port=$PORT
        [[ $proto == fix* ]] && port=$fix_port
        ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$port" --protocol "${proto%-state}" --app orders \
          --rate "$LOAD_RATE" --conns "$conns" --duration "$SECS" --core 0 --json "$OUT/r.json" \
          >"$OUT/client.log" 2>&1 || { cat "$OUT/client.log" >&2; exit 1; }
        stop_server
        j() { grep -m1 "\"$1\":" "$OUT/r.json" | tr -d ' ,' | cut -d: -f2; }
        printf '| %s | %s | %s | %.1f | %.1f | %.1f | %.0f | %s |\n' "$run" "$backend" "$proto" \
          "$(j p50)" "$(j p99)" "$(j p999)" "$(j throughput_msgs_per_s)" "$(j unanswered)"
        echo "$backend/$proto $(j p50) $(j p99) $(j p999)" >>"$OUT/all"
      done
    done
  done
  summary backend/protocol 1
  echo
  for backend in $BACKENDS; do
    awk -v b="$backend" '
      $1 == b "/binary" {bin[++nb] = $2} $1 == b "/fix" {fix[++nf] = $2} $1 == b "/fix-state" {st[++ns] = $2}
      function med(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
        return a[int((n + 1) / 2)]
      }
      END {
        printf "%s: FIX adds %+.1f us to the p50 (median %.1f against %.1f); ", b, med(fix, nf) - med(bin, nb), med(fix, nf), med(bin, nb)
        printf "with a state file %+.1f us (median %.1f)\n", med(st, ns) - med(bin, nb), med(st, ns)
      }
    ' "$OUT/all"
  done
}
