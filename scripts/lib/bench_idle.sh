# The idle mode of scripts/bench.sh, sourced by it: what an open connection with no traffic costs.
# For each count of IDLE_CONNS and each backend, serve --app echo --max-conns N+100, then
# scripts/lib/idle.py opens N connections from tg_cli (with IDLE_TOUCH=1, one byte echoed on each)
# and holds them. Measured before and after: the gateway's VmRSS and the kernel's TCP socket memory
# (/proc/net/sockstat "mem", pages, the whole host's: both ends' sockets, which idle hold none),
# and the kernel's slab objects (/proc/slabinfo, active objects times their size, the whole host's:
# a socket's struct, inode, file, dentry and epoll entry live there, in neither figure above). The
# client's 1000 sockets are in every run's slab delta; the kernel backend's own are in its run only,
# so its sockets' slab is its delta less an xdp run's. IDLE_SMAPS=DIR keeps each server's smaps.

mode_idle() {
  local n backend rss0 rss1 mem0 mem1 slab0 slab1 touch=
  [[ ${IDLE_TOUCH:-0} == 1 ]] && touch=--touch
  rss() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
  sockmem() { awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat; }
  slab() { awk 'NR > 2 {s += $2 * $4} END {printf "%d", s / 1024}' /proc/slabinfo; }
: >"$OUT/all"
  echo "| run | backend | connections | RSS before KiB | RSS after KiB | per connection KiB | sockstat mem KiB | RSS + socket memory KiB | slab delta KiB (both ends) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for run in $(seq "$RUNS"); do
    for n in ${IDLE_CONNS:-1000 10000}; do
      for backend in ${IDLE_SERVERS:-kernel xdp xdp-umem8m}; do
        lab_for "$backend"
        EXTRA=(--max-conns $((n + 100)))
        start_server "$backend" echo
        rss0=$(rss) mem0=$(sockmem) slab0=$(slab)
        # The holder reads its stdin: a FIFO we hold open (read-write, so opening it never
        # blocks), closed to release it; bench.sh's cleanup kills it if we stop early.
        rm -f "$OUT/hold"
        mkfifo "$OUT/hold"
        exec {hold_fd}<>"$OUT/hold"
        ip netns exec tg_cli taskset -c 0 python3 scripts/lib/idle.py "$GW_IP" "$PORT" "$n" 120 $touch \
          <"$OUT/hold" >"$OUT/idle.out" 2>&1 &
        HOLDER_PID=$!
        for _ in $(seq 1200); do
          grep -q '^ready' "$OUT/idle.out" 2>/dev/null && break
          kill -0 "$HOLDER_PID" 2>/dev/null || break
          sleep 0.1
        done
        grep -q '^ready' "$OUT/idle.out" || { cat "$OUT/idle.out" "$OUT/server.log" >&2; exit 1; }
        sleep 2
        rss1=$(rss) mem1=$(sockmem) slab1=$(slab)
        [[ -n ${IDLE_SMAPS:-} ]] && cp "/proc/$SERVER_PID/smaps" "$IDLE_SMAPS/smaps.$backend.$n"
        # Still holding every connection when measured (its own time limit is on holding).
        kill -0 "$HOLDER_PID" 2>/dev/null || { echo "bench.sh idle: the holder ended early" >&2; exit 1; }
        exec {hold_fd}>&-
        wait "$HOLDER_PID" || true
        HOLDER_PID=
        stop_server
        EXTRA=()
        local per sock total
        per=$(awk -v a="$rss0" -v b="$rss1" -v n="$n" 'BEGIN {printf "%.1f", (b - a) / n}')
        sock=$(( (mem1 - mem0) * 4 ))
        total=$(( rss1 + (mem1 - mem0) * 4 ))
        echo "| $run | $backend | $n | $rss0 | $rss1 | $per | $sock | $total | $((slab1 - slab0)) |"
        echo "$backend/$n $rss1 $per $total $((slab1 - slab0))" >>"$OUT/all"
      done
    done
  done
  summary backend/connections 1 "RSS-after-KiB per-connection-KiB RSS+socket-memory-KiB slab-delta-KiB"
}
