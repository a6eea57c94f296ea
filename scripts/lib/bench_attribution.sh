# The attribution mode of scripts/bench.sh, sourced by it: the report's accuracy against faults
# injected one per run (see bench.sh's usage for the list), and a confusion table per backend.
# The hog faults (a competing process pinned to the loop's core, scripts/lib/hog.py) are judged by
# the off-CPU trace: of the tail messages (from 1 ms) whose time in the gateway overlaps one of the
# hog's bursts (its log, on the sampler's clock), the share the report names "preempted by tg-hog".
# The page-fault storm (--inject page-faults:50:2000) likewise: of the messages it touched (flag
# injected) in the tail, the share named "page fault".
# The softirq load (scripts/lib/softirq.py: bursts of UDP datagrams into a pair of namespaces of its
# own, whose receive path RPS steers to the loop's core and 1,000 nftables rules make slow there)
# likewise: of the tail messages overlapping a burst (to 10 ms after its last send), the share named
# "softirq NET_RX" or "preempted by ksoftirqd/1" (the kernel hands a long softirq to its thread).

# The softirq load's namespaces: created for the run, deleted after it (and by bench.sh's cleanup).
softirq_down() {
  local ns
  for ns in tg_sq_a tg_sq_b; do ip netns del "$ns" 2>/dev/null || true; done
}
softirq_up() {
  softirq_down
  ip netns add tg_sq_a
  ip netns add tg_sq_b
  ip link add tg_sqa netns tg_sq_a type veth peer name tg_sqb netns tg_sq_b
  ip -n tg_sq_a addr add 198.18.250.1/30 dev tg_sqa
  ip -n tg_sq_b addr add 198.18.250.2/30 dev tg_sqb
  ip -n tg_sq_a link set tg_sqa up
  ip -n tg_sq_b link set tg_sqb up
  # RPS: the receiver's datagrams are processed on core 1 (mask 2), in NET_RX softirq there.
  ip netns exec tg_sq_b sh -c 'echo 2 >/sys/class/net/tg_sqb/queues/rx-0/rps_cpus' 2>/dev/null || return 1
  # 1,000 rules that match nothing, then one that drops the datagram (no ICMP answers).
  python3 -c '
print("table inet tg_sq {\nchain c {\ntype filter hook prerouting priority 0;")
for i in range(1000):
    print("udp dport %d counter drop" % (20000 + i))
print("udp dport 9 drop\n}\n}")' | ip netns exec tg_sq_b nft -f - || return 1
}

mode_attribution() {
  ensure_packages nftables
  SECS=${ATTR_SECS:-5}
  expect() { # fault -> the cause the report should name
    case $1 in
      stall) echo loop_stall ;; slow-handler) echo slow_handler ;; inbound-loss) echo retransmission ;;
      reply-loss) echo reply_retransmitted ;; burst) echo queued_behind_burst ;;
      upstream-slow) echo exchange_slow ;; upstream-loss) echo upstream_retransmission ;;
      hog | hog-fifo | page-faults | softirq) echo loop_stall ;; *) echo - ;;
    esac
  }
  echo "| run | backend | fault | top cause | tail | right | named the hog |"
  echo "|---|---|---|---|---|---|---|"
  : >"$OUT/attr"
  for run in $(seq "$RUNS"); do
    for fault in ${ATTR_FAULTS:-control stall slow-handler inbound-loss reply-loss burst hog hog-fifo page-faults softirq upstream-slow upstream-loss}; do
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
        elif [[ $fault == softirq ]]; then
          # Bursts of 250 datagrams (about 3.5 ms of softirq on core 1) every 30 ms, sent from core 0.
          if ! softirq_up; then
            softirq_down
            echo "| $run | $backend | softirq | skipped: this kernel has no RPS (rps_cpus) or nftables refused the rules | | | |"
            continue
          fi
          ip netns exec tg_sq_a taskset -c 0 python3 scripts/lib/softirq.py 198.18.250.2 $((SECS + 3)) 250 30 \
            "$OUT/hog.bursts" >"$OUT/hog.out" &
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
        [[ $fault == softirq ]] && softirq_down
        ip netns exec tg_cli nft delete table inet tg_bench_loss 2>/dev/null || true
        ip netns exec tg_cli nft delete table bridge tg_bench_loss 2>/dev/null || true
        [[ -n ${ATTR_KEEP:-} ]] && cp "$OUT/server.log" "$ATTR_KEEP/$run-$backend-$fault.log" && cp "$OUT/samples" "$ATTR_KEEP/$run-$backend-$fault.samples"
        THRESHOLD=()
        # A lost answer costs the kernel exchange's fast retransmission, 2-4 ms: below this
        # VM's stalls, which own the p99.9's few messages; judged over every message from 1 ms.
        [[ $fault == upstream-loss ]] && THRESHOLD=(--threshold-us 1000)
        # The hog's 5 ms bursts, judged from 1 ms: every message it delayed that much.
        [[ $fault == hog* || $fault == page-faults || $fault == softirq ]] && THRESHOLD=(--threshold-us 1000 --messages)
        "$BIN" report --log "$OUT/samples" --json "${THRESHOLD[@]}" >"$OUT/report.json"
        # The stalls the hog made: tail messages whose time in the gateway
        # overlaps one of its bursts (hog.py logs them on the same clock);
        # of those, how many the report names "preempted by tg-hog".
        [[ $fault == hog* || $fault == softirq ]] || : >"$OUT/hog.bursts"
        top=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
bursts = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
ms = r.get("messages", [])
names = {"preempted by tg-hog"}
if sys.argv[3] == "page-faults":
    made, names = [m for m in ms if "injected" in m["flags"]], {"page fault"}
elif sys.argv[3] == "softirq":
    made = [m for m in ms if any(a < m["t_end_ns"] and m["t_arrival_ns"] < b + 10**7 for a, b in bursts)]
    names = {"softirq NET_RX", "preempted by ksoftirqd/1"}
else:
    made = [m for m in ms if any(a < m["t_end_ns"] and m["t_arrival_ns"] < b for a, b in bursts)]
named = sum(1 for m in made if m.get("stall") in names)
print(r["top_cause"], r["tail"], "%d/%d" % (named, len(made)) if made else "-")' "$OUT/report.json" "$OUT/hog.bursts" "$fault")
        read -r cause tail named <<<"$top"
        want=$(expect "$fault")
        right=-
        [[ $want != - ]] && { [[ $cause == "$want" ]] && right=yes || right=no; }
        if [[ $fault == hog* || $fault == page-faults || $fault == softirq ]]; then
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
