# The attribution mode of scripts/bench.sh, sourced by it: the report's accuracy against faults
# injected one per run (see bench.sh's usage for the list), and a confusion table per backend.
# The hog faults (a competing process pinned to the loop's core, scripts/lib/hog.py) are judged by
# the off-CPU trace: of the tail messages (from 1 ms) whose time in the gateway overlaps one of the
# hog's bursts (its log, on the sampler's clock), the share the report names "preempted by tg-hog".
# The page-fault storm (--inject page-faults:50:2000) likewise: of the messages it touched (flag
# injected) in the tail, the share named "page fault".

mode_attribution() {
  ensure_packages nftables
  SECS=${ATTR_SECS:-5}
  expect() { # fault -> the cause the report should name
    case $1 in
      stall) echo loop_stall ;; slow-handler) echo slow_handler ;; inbound-loss) echo retransmission ;;
      reply-loss) echo reply_retransmitted ;; burst) echo queued_behind_burst ;;
      upstream-slow) echo exchange_slow ;; upstream-loss) echo upstream_retransmission ;;
      hog | hog-fifo | page-faults) echo loop_stall ;; *) echo - ;;
    esac
  }
  echo "| run | backend | fault | top cause | tail | right | named the hog |"
  echo "|---|---|---|---|---|---|---|"
  : >"$OUT/attr"
  for run in $(seq "$RUNS"); do
    for fault in ${ATTR_FAULTS:-control stall slow-handler inbound-loss reply-loss burst hog hog-fifo page-faults upstream-slow upstream-loss}; do
      for backend in $BACKENDS; do
        [[ ($fault == inbound-loss || $fault == upstream-loss) && $backend != xdp ]] && continue
        [[ $fault != upstream-* ]] && lab_for "$backend"
        EXTRA=(--sample-log "$OUT/samples") LOAD=() EXCHANGE=()
        rm -f "$OUT/samples"
        case $fault in
          stall) EXTRA+=(--inject stall:50:5000) ;;
          slow-handler) EXTRA+=(--inject slow-handler:50:5000) ;;
          page-faults) EXTRA+=(--inject page-faults:50:2000) ;;
          inbound-loss) EXTRA+=(--inject loss:4) ;;
          reply-loss)
            # Dropped on arrival in the client's namespace, the same for both
            # backends: a loss on the wire (a drop on the gateway's own output
            # hook would be a local send failure, which kernel TCP sends again
            # as new data, not as a retransmission).
            ip netns exec tg_cli nft -f - <<NFT
table inet tg_bench_loss {
chain c { type filter hook input priority 0; tcp sport $PORT meta length > 60 numgen inc mod 40 == 0 drop; }
}
NFT
            ;;
          burst) LOAD=(--burst 2000:500) ;;
          upstream-slow) EXCHANGE=(--inject slow:50:20000) ;;
        esac
        HOG_PID=
        if [[ $fault == hog* ]]; then
          # Started before the gateway: it competes from the load's first order.
          local fifo=
          [[ $fault == hog-fifo ]] && fifo=--fifo
          python3 scripts/lib/hog.py 1 $((SECS + 3)) 5 30 "$OUT/hog.bursts" $fifo >"$OUT/hog.out" &
          HOG_PID=$!
        fi
        if [[ $fault == upstream-* ]]; then
          sla_up "$backend" "${EXCHANGE[@]}"
          if [[ $fault == upstream-loss ]]; then
            # The exchange's data segments to the gateway, lost in the bridge (on the wire).
            ip netns exec tg_cli nft -f - <<NFT
table bridge tg_bench_loss {
chain c { type filter hook forward priority 0; ip saddr 198.18.0.4 tcp sport 26400 meta length > 60 numgen inc mod 40 == 0 drop; }
}
NFT
          fi
        else
          start_server "$backend" orders
        fi
        ip netns exec tg_cli "$BIN" -q load --ip "$GW_IP" --port "$PORT" --app orders --rate 500 --conns 4 \
          --duration "$SECS" --core 0 "${LOAD[@]}" >"$OUT/client.log" 2>&1 ||
          [[ $fault == *loss || $fault == upstream-* ]] || { cat "$OUT/client.log" >&2; exit 1; }
        if [[ $fault == upstream-* ]]; then sla_down; else stop_server; fi
        if [[ -n $HOG_PID ]]; then
          kill "$HOG_PID" 2>/dev/null || true
          wait "$HOG_PID" 2>/dev/null || true
        fi
        ip netns exec tg_cli nft delete table inet tg_bench_loss 2>/dev/null || true
        ip netns exec tg_cli nft delete table bridge tg_bench_loss 2>/dev/null || true
        [[ -n ${ATTR_KEEP:-} ]] && cp "$OUT/server.log" "$ATTR_KEEP/$run-$backend-$fault.log" && cp "$OUT/samples" "$ATTR_KEEP/$run-$backend-$fault.samples"
        THRESHOLD=()
        # A lost answer costs the kernel exchange's fast retransmission, 2-4 ms: below this
        # VM's stalls, which own the p99.9's few messages; judged over every message from 1 ms.
        [[ $fault == upstream-loss ]] && THRESHOLD=(--threshold-us 1000)
        # The hog's 5 ms bursts, judged from 1 ms: every message it delayed that much.
        [[ $fault == hog* || $fault == page-faults ]] && THRESHOLD=(--threshold-us 1000 --messages)
        "$BIN" report --log "$OUT/samples" --json "${THRESHOLD[@]}" >"$OUT/report.json"
        # The stalls the hog made: tail messages whose time in the gateway
        # overlaps one of its bursts (hog.py logs them on the same clock);
        # of those, how many the report names "preempted by tg-hog".
        [[ $fault == hog* ]] || : >"$OUT/hog.bursts"
        top=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
bursts = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
ms = r.get("messages", [])
if sys.argv[3] == "page-faults":
    made, name = [m for m in ms if "injected" in m["flags"]], "page fault"
else:
    made = [m for m in ms if any(a < m["t_end_ns"] and m["t_arrival_ns"] < b for a, b in bursts)]
    name = "preempted by tg-hog"
named = sum(1 for m in made if m.get("stall") == name)
print(r["top_cause"], r["tail"], "%d/%d" % (named, len(made)) if made else "-")' "$OUT/report.json" "$OUT/hog.bursts" "$fault")
        read -r cause tail named <<<"$top"
        want=$(expect "$fault")
        right=-
        [[ $want != - ]] && { [[ $cause == "$want" ]] && right=yes || right=no; }
        if [[ $fault == hog* || $fault == page-faults ]]; then
          # Right when the hog (the fault storm) is named for at least 95 % of the tail it made.
          right=$(python3 -c 'import sys; a, b = map(int, sys.argv[1].split("/")); print("yes" if b and a >= 0.95 * b else "no")' "$named")
        fi
        echo "| $run | $backend | $fault | $cause | $tail | $right | $named |"
        echo "$backend $fault $cause $right" >>"$OUT/attr"
      done
    done
  done
  for backend in $BACKENDS; do
    echo
    echo "$backend: injected fault (rows) against the report's top cause (columns), $RUNS runs each"
    python3 - "$OUT/attr" "$backend" <<'PY'
import sys
from collections import Counter, OrderedDict
rows = [l.split() for l in open(sys.argv[1]) if l.split()[0] == sys.argv[2]]
faults = list(OrderedDict.fromkeys(r[1] for r in rows))
causes = sorted(set(r[2] for r in rows))
n = Counter((r[1], r[2]) for r in rows)
print("| fault | " + " | ".join(causes) + " |")
print("|---|" + "---|" * len(causes))
for f in faults:
  print("| %s | " % f + " | ".join(str(n[(f, c)] or "") for c in causes) + " |")
scored = [r for r in rows if r[3] != "-"]
right = sum(r[3] == "yes" for r in scored)
print("\naccuracy (faulted runs, top cause = the injected fault's): %d of %d, %.1f %%"
    % (right, len(scored), 100.0 * right / max(1, len(scored))))
PY
  done
}
