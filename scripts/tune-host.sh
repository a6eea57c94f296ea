#!/usr/bin/env bash
# Make a host ready for a pinned busy-poll gateway, or show what that takes.
#
#   scripts/tune-host.sh --iface IF --core LIST [--netns NS] [--port P] [--queue LIST]
#                        [--apply | --revert] [--state FILE] [--only GROUPS]
#
# Without --apply or --revert it prints the plan and changes nothing: every
# setting with its current value, the value it would set and why.
# --apply saves the current values to the state file first, then sets them;
# applying again keeps the first saved values (idempotent). --revert writes
# back exactly the saved values and removes the state file.
#
#   --iface IF     the gateway's interface (in --netns NS if given: the lab's
#                  tg_gw0 lives in namespace tg_gw)
#   --core LIST    the gateway's cores, e.g. 1 or 2,3 or 2-5 (the name
#                  `tailgate serve` and `doctor` use; --cores is still read)
#   --port P       the gateway's TCP port: adds an ntuple rule steering it to
#   --queue Q      queue Q (default 0) where the NIC supports ntuple filters.
#                  A list (0,1 or 0-3: one gateway loop per queue, as `serve
#                  --queue LIST --core LIST`) adds no rule: RSS spreads the
#                  flows over the queues; each queue's IRQs are listed and,
#                  like every IRQ, kept off the gateway cores (group irq)
#   --napi-defer   defer the NIC's IRQs while the loop busy-polls
#                  (napi_defer_hard_irqs 2, gro_flush_timeout 200 us): for
#                  zero-copy NICs only. Without it both are kept at 0: on veth
#                  in copy mode deferral raised the p50 from 2.2 to 110 us
#                  (docs/TUNING.md)
#   --state FILE   default /run/tailgate/tune-host.IF.state (tmpfs: settings
#                  and state both go away at reboot)
#   --only GROUPS  comma list of: sysctl, thp, hugepages, iface, governor, irq,
#                  irqbalance, nic (default: all)
#
# What cannot change at run time (isolcpus, nohz_full, rcu_nocbs) is printed
# as the kernel command line to add. See docs/TUNING.md for each knob.
# A bad interface or core list is an error before anything changes.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d' >&2; exit 2; }
die() { echo "tune-host: $*" >&2; exit 2; }

IFACE= CORES= NETNS= PORT= QUEUE=0 MODE=plan STATE= ONLY=all NAPI_DEFER=0
while (($#)); do
  case $1 in
    --iface) IFACE=${2:-}; shift 2 ;;
    --core | --cores) CORES=${2:-}; shift 2 ;;
    --netns) NETNS=${2:-}; shift 2 ;;
    --port) PORT=${2:-}; shift 2 ;;
    --queue) QUEUE=${2:-}; shift 2 ;;
    --state) STATE=${2:-}; shift 2 ;;
    --only) ONLY=${2:-}; shift 2 ;;
    --napi-defer) NAPI_DEFER=1; shift ;;
    --apply) MODE=apply; shift ;;
    --revert) MODE=revert; shift ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $(id -u) == 0 ]] || die "must run as root (it reads and writes /proc/sys, /sys and /proc/irq)"
[[ -n $IFACE ]] || die "--iface IF is required"
[[ -n $CORES ]] || die "--core LIST is required"
[[ -z $PORT || ($PORT =~ ^[0-9]+$ && $PORT -ge 1 && $PORT -le 65535) ]] || die "--port $PORT: not a port (1-65535)"
[[ $QUEUE =~ ^[0-9,-]+$ ]] || die "--queue $QUEUE: not a queue number or list"
[[ $ONLY =~ ^[a-z,]+$ ]] || die "--only $ONLY: expected a comma list of groups"
for g in ${ONLY//,/ }; do
  [[ $g =~ ^(all|sysctl|thp|hugepages|iface|governor|irq|irqbalance|nic)$ ]] || die "--only: unknown group '$g'"
done
STATE=${STATE:-/run/tailgate/tune-host.$IFACE.state}

# Run in the interface's namespace when --netns is given.
in_ns() { if [[ -n $NETNS ]]; then ip netns exec "$NETNS" "$@"; else "$@"; fi; }

if [[ -n $NETNS ]] && ! ip netns list | awk '{print $1}' | grep -qx "$NETNS"; then
  die "--netns $NETNS: no such network namespace"
fi
in_ns test -d "/sys/class/net/$IFACE" || die "--iface $IFACE: no such interface${NETNS:+ in namespace $NETNS}"

# Expand a CPU list ("1,3-4") to one CPU per line.
expand() {
  local part a b
  for part in ${1//,/ }; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
      ((a <= b)) || return 1
      seq "$a" "$b"
    elif [[ $part =~ ^[0-9]+$ ]]; then
      echo "$part"
    else
      return 1
    fi
  done
}
ONLINE=$(expand "$(cat /sys/devices/system/cpu/online)") || die "cannot read the online CPUs"
GW=$(expand "$CORES" 2>/dev/null) || die "--core $CORES: expected a list like 1 or 2,3 or 2-5"
[[ -n $GW ]] || die "--core $CORES: empty"
for c in $GW; do
  grep -qx "$c" <<<"$ONLINE" || die "--core $CORES: CPU $c is not online (online: $(tr '\n' ' ' <<<"$ONLINE"))"
done
OTHER=$(grep -vxF -f <(echo "$GW") <<<"$ONLINE" | paste -sd, || true)
GW_LIST=$(paste -sd, <<<"$GW")
QUEUES=$(expand "$QUEUE" 2>/dev/null) || die "--queue $QUEUE: expected a queue or a list like 0,1 or 0-3"
NQ=$(wc -l <<<"$QUEUES")

want() { [[ $ONLY == all || ,$ONLY, == *,$1,* ]]; }

# A file's value; for "a [b] c" files (THP), the bracketed word.
get() { # path [ns]
  local v
  if [[ ${2:-} == ns ]]; then v=$(in_ns cat "$1" 2>/dev/null) || return 1; else v=$(cat "$1" 2>/dev/null) || return 1; fi
  if [[ $v =~ \[([a-z+]+)\] ]]; then echo "${BASH_REMATCH[1]}"; else echo "$v"; fi
}
# Only kernel tunables are ever written: a path outside /proc/sys and /sys
# (a state line one field short would shift a value into the path) is refused.
safe_path() { [[ $1 =~ ^/(proc/sys|sys|proc/irq)/[A-Za-z0-9_./:-]+$ && $1 != *..* ]]; }
put() { # path value [ns]
  safe_path "$1" || { echo "tune-host: refusing to write '$1': not under /proc/sys, /sys or /proc/irq" >&2; return 1; }
  if [[ ${3:-} == ns ]]; then in_ns sh -c 'echo "$2" > "$1"' _ "$1" "$2"; else echo "$2" >"$1"; fi
}

CHANGES=0 ERRORS=0
row() { printf '%-10s %-58s %-14s %-14s %s\n' "$@"; }

# One file-backed setting: plan it, or save and set it.
setting() { # group path target why [ns]
  local group=$1 path=$2 target=$3 why=$4 ns=${5:-} cur
  want "$group" || return 0
  if ! cur=$(get "$path" "$ns"); then
    row "$group" "$path" "n/a" "-" "not present here: $why"
    return 0
  fi
  if [[ $cur == "$target" ]]; then
    row "$group" "$path" "$cur" "$target" "ok: $why"
    return 0
  fi
  row "$group" "$path" "$cur" "$target" "$why"
  CHANGES=$((CHANGES + 1))
  if [[ $MODE == apply ]]; then
    if put "$path" "$target" "$ns" 2>/dev/null; then
      # Saved after the write succeeded; '|' separates (fields may be empty).
      if [[ $SAVE == 1 ]]; then printf 'file|%s|%s|%s\n' "$ns" "$path" "$cur" >>"$STATE"; fi
    elif [[ $group == irq ]]; then
      echo "  note: the kernel refuses to move $path (a per-CPU or managed IRQ)" >&2
    else
      echo "  ! could not set $path" >&2
      ERRORS=$((ERRORS + 1))
    fi
  fi
}

# The state file: a version line, then one line per change, '|'-separated:
#   file|NS|PATH|OLD   (NS is "ns" when PATH is read in --netns, else empty)
#   irqbalance||irqbalance|running
#   coalesce||KNOB|OLD
#   ntuple||RULE_ID|-
STATE_VERSION="tailgate-tune-host-state 2"
validate_state() { # file
  local n=0 line kind ns path old rest
  if [[ $(head -n 1 "$1") != "$STATE_VERSION" ]]; then
    echo "tune-host: $1: not a state file of this version (first line is not '$STATE_VERSION'); nothing changed" >&2
    return 1
  fi
  while IFS= read -r line; do
    n=$((n + 1))
    ((n == 1)) && continue
    IFS='|' read -r kind ns path old rest <<<"$line"
    local ok=0
    case $kind in
      file) [[ $(tr -cd '|' <<<"$line" | wc -c) == 3 && ($ns == "" || $ns == ns) ]] && safe_path "$path" && ok=1 ;;
      irqbalance) [[ $line == "irqbalance||irqbalance|running" ]] && ok=1 ;;
      coalesce) [[ $line =~ ^coalesce\|\|(adaptive-rx\|(on|off)|rx-usecs\|[0-9]+)$ ]] && ok=1 ;;
      ntuple) [[ $line =~ ^ntuple\|\|[0-9]+\|-$ ]] && ok=1 ;;
    esac
    if ((!ok)); then
      echo "tune-host: $1 line $n: malformed ('$line'); nothing changed" >&2
      return 1
    fi
  done <"$1"
}

if [[ $MODE == revert ]]; then
  [[ -f $STATE ]] || { echo "tune-host: nothing to revert ($STATE does not exist)"; exit 0; }
  # Every line is checked before the first write: a file this version did
  # not write, or a line one field short, changes nothing.
  validate_state "$STATE" || exit 2
  FAILED=0
  # Reverse order: the last change is undone first (the version line last).
  while IFS='|' read -r kind ns path old; do
    case $kind in
      file)
        if put "$path" "$old" "$ns"; then echo "restored $path = $old"; else
          echo "  ! could not restore $path = $old" >&2
          FAILED=$((FAILED + 1))
        fi
        ;;
      irqbalance)
        if command -v systemctl >/dev/null && systemctl start irqbalance 2>/dev/null; then echo "restarted irqbalance"; else
          echo "  ! could not restart irqbalance: start it by hand" >&2
          FAILED=$((FAILED + 1))
        fi
        ;;
      ntuple)
        if in_ns ethtool -N "$IFACE" delete "$path"; then echo "deleted ntuple rule $path on $IFACE"; else FAILED=$((FAILED + 1)); fi
        ;;
      coalesce)
        if in_ns ethtool -C "$IFACE" "$path" "$old"; then echo "restored ethtool -C $IFACE $path $old"; else FAILED=$((FAILED + 1)); fi
        ;;
    esac
  done < <(tail -n +2 "$STATE" | tac)
  if ((FAILED)); then
    echo "tune-host: $FAILED value(s) could not be restored; $STATE kept (fix the cause and --revert again)" >&2
    exit 1
  fi
  rm -f "$STATE"
  echo "tune-host: reverted; $STATE removed"
  exit 0
fi

SAVE=0
if [[ $MODE == apply ]]; then
  mkdir -p "$(dirname "$STATE")"
  # Applying again must not overwrite the values saved before the first apply
  # (and a state file this version cannot revert is not added to).
  if [[ -f $STATE ]]; then
    validate_state "$STATE" || exit 2
  else
    SAVE=1
    echo "$STATE_VERSION" >"$STATE"
  fi
fi

echo "tune-host: $IFACE${NETNS:+ (namespace $NETNS)}, gateway cores $GW_LIST, other cores ${OTHER:-none}; mode $MODE"
row group setting current target why
setting sysctl /proc/sys/net/core/busy_poll 50 "poll/select busy-poll sockets for up to 50 us before sleeping"
setting sysctl /proc/sys/net/core/busy_read 50 "blocking reads busy-poll the device queue for up to 50 us"
setting sysctl /proc/sys/kernel/sched_rt_runtime_us -1 "no RT throttling: a SCHED_FIFO loop is not paused 50 ms every second"
setting sysctl /proc/sys/vm/stat_interval 10 "vmstat work wakes each core every 10 s instead of every second"
setting sysctl /proc/sys/kernel/numa_balancing 0 "no NUMA-balancing page faults in the loop's memory"
setting thp /sys/kernel/mm/transparent_hugepage/enabled never "no khugepaged collapses or compaction stalls; the UMEM uses explicit hugepages"
setting thp /sys/kernel/mm/transparent_hugepage/defrag never "no direct compaction on allocation"
if want hugepages; then
  cur=$(get /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages || echo 0)
  setting hugepages /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages $((cur > 32 ? cur : 32)) \
    "32 x 2 MiB pages: two loops' 32 MiB UMEMs on hugepages (fewer TLB misses)"
fi
if ((NAPI_DEFER)); then
  setting iface "/sys/class/net/$IFACE/napi_defer_hard_irqs" 2 "--napi-defer: the NIC's IRQs stay off while the loop busy-polls (SO_PREFER_BUSY_POLL)" ns
  setting iface "/sys/class/net/$IFACE/gro_flush_timeout" 200000 "--napi-defer: the IRQ comes back after 200 us without a poll" ns
else
  setting iface "/sys/class/net/$IFACE/napi_defer_hard_irqs" 0 "no IRQ deferral: NAPI runs as frames arrive (deferral cost 50x at p50 on veth copy mode; --napi-defer for zero-copy NICs)" ns
  setting iface "/sys/class/net/$IFACE/gro_flush_timeout" 0 "no GRO flush delay" ns
fi
if want governor; then
  for c in $GW; do
    setting governor "/sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor" performance "no frequency ramp-up latency on gateway core $c"
  done
fi
if want irq; then
  if [[ -z $OTHER ]]; then
    row irq "/proc/irq/*/smp_affinity_list" "-" "-" "no other online core to move IRQs to"
  else
    for f in /proc/irq/[0-9]*/smp_affinity_list; do
      cur=$(cat "$f" 2>/dev/null) || continue
      hit=0
      for c in $(expand "$cur" 2>/dev/null || true); do grep -qx "$c" <<<"$GW" && hit=1; done
      ((hit)) || continue
      setting irq "$f" "$OTHER" "keep IRQ $(basename "$(dirname "$f")") off the gateway cores"
    done
  fi
  # Each gateway queue's own IRQs (drivers name them after the interface
  # and the queue: eth1-TxRx-0, ...), moved above with every other IRQ.
  for q in $QUEUES; do
    irqs=$(awk -v i="$IFACE" -v q="$q" '{n = $NF} index(n, i) == 1 && n ~ ("[-_]" q "$") {sub(":", "", $1); print $1}' \
      /proc/interrupts | paste -sd, || true)
    row irq "queue $q IRQs" "${irqs:-none named after $IFACE}" "${OTHER:-n/a}" \
      "info: the queue's interrupts belong on a housekeeping core, not its loop's"
  done
fi
if want irqbalance; then
  if pgrep -x irqbalance >/dev/null; then
    row irqbalance irqbalance running stopped "it would move IRQs back onto the gateway cores"
    CHANGES=$((CHANGES + 1))
    if [[ $MODE == apply ]]; then
      [[ $SAVE == 1 ]] && printf 'irqbalance||irqbalance|running\n' >>"$STATE"
      { command -v systemctl >/dev/null && systemctl stop irqbalance; } || pkill -x irqbalance || ERRORS=$((ERRORS + 1))
    fi
  else
    row irqbalance irqbalance "not running" "not running" "ok: nothing moves IRQs behind our back"
  fi
fi
if want nic; then
  if ! command -v ethtool >/dev/null; then
    row nic ethtool "-" "-" "ethtool not installed: NIC channels, coalescing and ntuple not checked"
  else
    ch=$(in_ns ethtool -l "$IFACE" 2>/dev/null | awk '/Current hardware settings/ {f=1} f && /Combined/ {print $2; exit}' || true)
    if ((NQ > 1)); then
      row nic "channels (ethtool -l)" "${ch:-n/a}" "${ch:-n/a}" "info: one AF_XDP socket and loop per queue (--queue $QUEUE); RSS spreads the flows over them"
    else
      row nic "channels (ethtool -l)" "${ch:-n/a}" "${ch:-n/a}" "info: the AF_XDP socket binds one queue (--queue $QUEUE); steer the gateway's flows there"
    fi
    rx=$(in_ns ethtool -c "$IFACE" 2>/dev/null | awk '/^rx-usecs:/ {print $2; exit}' || true)
    if [[ -z $rx || $rx == n/a ]]; then
      row nic "coalescing (ethtool -C rx-usecs)" "n/a" "-" "not supported by $IFACE's driver"
    elif [[ $rx == 0 ]]; then
      row nic "coalescing (ethtool -C rx-usecs)" 0 0 "ok: no interrupt moderation delay"
    else
      row nic "coalescing (ethtool -C rx-usecs)" "$rx" 0 "no interrupt moderation delay on RX"
      CHANGES=$((CHANGES + 1))
      if [[ $MODE == apply ]]; then
        ad=$(in_ns ethtool -c "$IFACE" 2>/dev/null | awk '/^Adaptive RX:/ {print $3; exit}' || true)
        if [[ $ad == on ]] && in_ns ethtool -C "$IFACE" adaptive-rx off 2>/dev/null; then
          [[ $SAVE == 1 ]] && printf 'coalesce||adaptive-rx|on\n' >>"$STATE"
        fi
        if in_ns ethtool -C "$IFACE" rx-usecs 0 2>/dev/null; then
          [[ $SAVE == 1 ]] && printf 'coalesce||rx-usecs|%s\n' "$rx" >>"$STATE"
        else
          ERRORS=$((ERRORS + 1))
        fi
      fi
    fi
    if [[ -n $PORT ]] && ((NQ > 1)); then
      row nic "ntuple tcp4 dst-port $PORT" "-" "-" "info: several queues ($QUEUE): no rule; RSS spreads the gateway's flows over them"
    elif [[ -n $PORT ]]; then
      if in_ns ethtool -n "$IFACE" 2>/dev/null | grep -q "Total [0-9]* rules"; then
        row nic "ntuple tcp4 dst-port $PORT" "none" "queue $QUEUE" "steer the gateway's traffic to the AF_XDP queue"
        CHANGES=$((CHANGES + 1))
        if [[ $MODE == apply ]]; then
          id=$(in_ns ethtool -N "$IFACE" flow-type tcp4 dst-port "$PORT" action "$QUEUE" 2>&1 | grep -o '[0-9]*$' || true)
          if [[ -n $id ]]; then printf 'ntuple||%s|-\n' "$id" >>"$STATE"; else ERRORS=$((ERRORS + 1)); fi
        fi
      else
        row nic "ntuple tcp4 dst-port $PORT" "n/a" "-" "$IFACE has no ntuple filters: use one queue or RSS so the flow lands on queue $QUEUE"
      fi
    fi
  fi
fi

# Boot-time settings: printed, never changed.
cmdline=$(cat /proc/cmdline)
missing=()
for p in "isolcpus=managed_irq,domain,$GW_LIST" "nohz_full=$GW_LIST" "rcu_nocbs=$GW_LIST"; do
  key=${p%%=*}
  if grep -qE "(^| )$key=" <<<"$cmdline"; then
    row boot "$key" "$(grep -oE "(^| )$key=[^ ]*" <<<"$cmdline" | sed 's/^ //; s/^[^=]*=//')" "${p#*=}" "kernel command line (not changed at run time)"
  else
    missing+=("$p")
    row boot "$key" "unset" "${p#*=}" "kernel command line (not changed at run time)"
  fi
done
if ((${#missing[@]})); then
  echo "boot: add to the kernel command line and reboot: ${missing[*]}"
fi

case $MODE in
  plan) echo "tune-host: plan only, nothing changed ($CHANGES setting(s) would change); --apply to set them" ;;
  apply)
    echo "tune-host: applied $CHANGES change(s), $ERRORS error(s); previous values in $STATE (--revert restores them)"
    ((ERRORS == 0)) || exit 1
    ;;
esac
