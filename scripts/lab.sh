#!/usr/bin/env bash
# The veth lab: two network namespaces joined by a veth pair, and with --exchange
# a third, the exchange's, behind a bridge in the clients' namespace.
#
#   scripts/lab.sh up            gateway side gets 198.18.0.1/24 (kernel TCP)
#   scripts/lab.sh up --bypass   gateway side gets no IPv4 address: a user-space
#                                stack owns TG_IP_GW on that interface
#   scripts/lab.sh up [--bypass] --queues N
#                                N receive and transmit queues on both ends (1-16;
#                                default 1), for one gateway loop per queue
#   scripts/lab.sh up [--bypass] --exchange
#                                also an exchange namespace: TG_IF_CLI and a second
#                                pair's end join a bridge (TG_BR) in the clients'
#                                namespace, which holds TG_IP_CLI; the other end,
#                                in TG_NS_EX, gets TG_IP_EX. The gateway reaches
#                                clients and exchange through its one interface.
#   scripts/lab.sh down          remove everything this script made
#   scripts/lab.sh status        show what exists
#
# Environment (defaults in brackets); addresses must be inside 198.18.0.0/15:
#   TG_NS_GW [tg_gw]  TG_NS_CLI [tg_cli]  TG_IF_GW [tg_gw0]  TG_IF_CLI [tg_cli0]
#   TG_IP_GW [198.18.0.1]  TG_IP_CLI [198.18.0.2]  TG_PREFIX [24]
#   TG_NS_EX [tg_ex]  TG_IF_EX [tg_ex0]  TG_IF_EXB [tg_cli1]  TG_BR [tg_br]  TG_IP_EX [198.18.0.4]
#
# Every offload (tx checksum, tso, gso, gro, lro) is turned off on both ends:
# a veth with tx checksum offload hands a bypass stack frames whose TCP
# checksum holds only the pseudo-header sum (docs/ARCHITECTURE.md).
set -euo pipefail

NS_GW=${TG_NS_GW:-tg_gw}
NS_CLI=${TG_NS_CLI:-tg_cli}
IF_GW=${TG_IF_GW:-tg_gw0}
IF_CLI=${TG_IF_CLI:-tg_cli0}
IP_GW=${TG_IP_GW:-198.18.0.1}
IP_CLI=${TG_IP_CLI:-198.18.0.2}
PREFIX=${TG_PREFIX:-24}
NS_EX=${TG_NS_EX:-tg_ex}
IF_EX=${TG_IF_EX:-tg_ex0}
IF_EXB=${TG_IF_EXB:-tg_cli1}
BR=${TG_BR:-tg_br}
IP_EX=${TG_IP_EX:-198.18.0.4}

die() { echo "lab.sh: $*" >&2; exit 2; }

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

check_ip() { # name value
  local name=$1 ip=$2 a b c d
  [[ $ip =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
    die "$name=$ip is not an IPv4 address"
  a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]}
  for o in "$a" "$b" "$c" "$d"; do ((10#$o <= 255)) || die "$name=$ip is not an IPv4 address"; done
  ((10#$a == 198 && (10#$b == 18 || 10#$b == 19))) ||
    die "$name=$ip is outside 198.18.0.0/15 (the benchmarking range the lab is limited to)"
}

check_name() { # what value maxlen
  [[ $2 =~ ^[A-Za-z0-9_.-]+$ ]] || die "$1=$2: only letters, digits, '_', '.', '-' allowed"
  ((${#2} <= $3)) || die "$1=$2 is longer than $3 characters"
}

validate() {
  check_name TG_NS_GW "$NS_GW" 64
  check_name TG_NS_CLI "$NS_CLI" 64
  check_name TG_IF_GW "$IF_GW" 15
  check_name TG_IF_CLI "$IF_CLI" 15
  [[ $NS_GW != "$NS_CLI" ]] || die "TG_NS_GW and TG_NS_CLI must differ"
  [[ $IF_GW != "$IF_CLI" ]] || die "TG_IF_GW and TG_IF_CLI must differ"
  check_ip TG_IP_GW "$IP_GW"
  check_ip TG_IP_CLI "$IP_CLI"
  [[ $IP_GW != "$IP_CLI" ]] || die "TG_IP_GW and TG_IP_CLI must differ"
  check_name TG_NS_EX "$NS_EX" 64
  check_name TG_IF_EX "$IF_EX" 15
  check_name TG_IF_EXB "$IF_EXB" 15
  check_name TG_BR "$BR" 15
  check_ip TG_IP_EX "$IP_EX"
  [[ $IP_EX != "$IP_GW" && $IP_EX != "$IP_CLI" ]] || die "TG_IP_EX must differ from TG_IP_GW and TG_IP_CLI"
  [[ $NS_EX != "$NS_GW" && $NS_EX != "$NS_CLI" ]] || die "TG_NS_EX must differ from TG_NS_GW and TG_NS_CLI"
  [[ $PREFIX =~ ^[0-9]+$ ]] && ((PREFIX >= 15 && PREFIX <= 30)) ||
    die "TG_PREFIX=$PREFIX must be between 15 and 30"
}

need() {
  for t in "$@"; do command -v "$t" >/dev/null || die "'$t' not found (apt-get install iproute2 ethtool)"; done
  [[ $(id -u) == 0 ]] || die "must run as root (network namespaces)"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

offloads_off() { # ns dev
  local f
  for f in tx tso gso gro lro; do
    # lro is 'fixed off' on veth; a fixed feature is not an error here.
    ip netns exec "$1" ethtool -K "$2" "$f" off >/dev/null 2>&1 || true
  done
  if ip netns exec "$1" ethtool -k "$2" 2>/dev/null |
    grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|large-receive-offload):' |
    grep -q ': on'; then
    die "could not turn every offload off on $2 in $1: $(ip netns exec "$1" ethtool -k "$2" | grep -E ': on' | head -5 | tr '\n' ' ')"
  fi
}

rx_queues() { # ns dev
  ip netns exec "$1" ls -d "/sys/class/net/$2/queues/" 2>/dev/null >/dev/null || { echo 0; return; }
  ip netns exec "$1" sh -c "ls -d /sys/class/net/$2/queues/rx-* | wc -l"
}

# The exchange's namespace and the bridge, or (without --exchange) none of it.
exchange_side() { # want
  if [[ $1 == 0 ]]; then
    ns_exists "$NS_EX" && ip netns del "$NS_EX"
    ip -n "$NS_CLI" link del "$IF_EXB" >/dev/null 2>&1 || true
    ip -n "$NS_CLI" link del "$BR" >/dev/null 2>&1 || true
    return 0
  fi
  ns_exists "$NS_EX" || ip netns add "$NS_EX"
  ip -n "$NS_EX" link set lo up
  if ! ip -n "$NS_EX" link show "$IF_EX" >/dev/null 2>&1; then
    ip -n "$NS_CLI" link del "$IF_EXB" >/dev/null 2>&1 || true
    ip link add "$IF_EX" netns "$NS_EX" type veth peer name "$IF_EXB" netns "$NS_CLI"
  fi
  ip -n "$NS_CLI" link show "$BR" >/dev/null 2>&1 || ip -n "$NS_CLI" link add "$BR" type bridge
  # Frames are passed on at once (no learning delay, no spanning tree).
  ip -n "$NS_CLI" link set "$BR" type bridge stp_state 0 forward_delay 0
  ip -n "$NS_CLI" link set "$IF_CLI" master "$BR"
  ip -n "$NS_CLI" link set "$IF_EXB" master "$BR"
  offloads_off "$NS_EX" "$IF_EX"
  offloads_off "$NS_CLI" "$IF_EXB"
  offloads_off "$NS_CLI" "$BR"
  ip -n "$NS_EX" addr flush dev "$IF_EX" scope global
  ip -n "$NS_EX" addr add "$IP_EX/$PREFIX" dev "$IF_EX"
  ip -n "$NS_EX" link set "$IF_EX" up
  ip -n "$NS_CLI" link set "$IF_EXB" up
  ip -n "$NS_CLI" link set "$BR" up
}

up() {
  local bypass=$1 queues=$2 exchange=$3
  for ns in "$NS_GW" "$NS_CLI"; do
    ns_exists "$ns" || ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  if ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1 && [[ $(rx_queues "$NS_GW" "$IF_GW") != "$queues" ]]; then
    # A pair with another queue count is made again.
    ip -n "$NS_GW" link del "$IF_GW"
  fi
  if ! ip -n "$NS_GW" link show "$IF_GW" >/dev/null 2>&1; then
    # A half-made pair (one end left behind) is removed first.
    ip -n "$NS_CLI" link del "$IF_CLI" >/dev/null 2>&1 || true
    ip link del "$IF_GW" >/dev/null 2>&1 || true
    # Both ends get N rx and N tx queues. veth has no RSS: a frame goes to
    # the peer's rx queue with the index of the tx queue it was sent on, and
    # the client's kernel picks a socket's tx queue from the socket's own
    # hash, so flows spread over the gateway's queues. Native XDP on a veth
    # needs at least as many rx queues as its peer has tx queues (else the
    # attach fails with ENOSPC): equal counts on both ends keep that true.
    ip link add "$IF_GW" netns "$NS_GW" numtxqueues "$queues" numrxqueues "$queues" \
      type veth peer name "$IF_CLI" netns "$NS_CLI" numtxqueues "$queues" numrxqueues "$queues"
  fi
  offloads_off "$NS_GW" "$IF_GW"
  offloads_off "$NS_CLI" "$IF_CLI"
  ip -n "$NS_GW" addr flush dev "$IF_GW" scope global
  if [[ $bypass == 0 ]]; then
    ip -n "$NS_GW" addr add "$IP_GW/$PREFIX" dev "$IF_GW"
  fi
  ip -n "$NS_CLI" addr flush dev "$IF_CLI" scope global
  exchange_side "$exchange"
  local cli_dev=$IF_CLI
  [[ $exchange == 1 ]] && cli_dev=$BR
  ip -n "$NS_CLI" addr flush dev "$cli_dev" scope global
  ip -n "$NS_CLI" addr add "$IP_CLI/$PREFIX" dev "$cli_dev"
  ip -n "$NS_GW" link set "$IF_GW" up
  ip -n "$NS_CLI" link set "$IF_CLI" up
  local mode=kernel
  [[ $bypass == 1 ]] && mode="bypass ($IF_GW has no kernel IPv4 address; $IP_GW belongs to the user-space stack)"
  echo "lab up: $NS_GW/$IF_GW $IP_GW <-> $NS_CLI/$IF_CLI $IP_CLI, $queues queue(s), offloads off, mode $mode"
  if [[ $exchange == 1 ]]; then
    echo "lab up: exchange $NS_EX/$IF_EX $IP_EX, bridged with $IF_CLI by $BR in $NS_CLI"
  fi
}

down() {
  local did=0
  for ns in "$NS_GW" "$NS_CLI" "$NS_EX"; do
    if ns_exists "$ns"; then ip netns del "$ns"; did=1; fi
  done
  ip link del "$IF_GW" >/dev/null 2>&1 && did=1 || true
  if [[ $did == 1 ]]; then echo "lab down: removed $NS_GW $NS_CLI $NS_EX"; else echo "lab down: nothing to remove"; fi
}

status() {
  local rc=0
  for ns in "$NS_GW" "$NS_CLI"; do
    if ns_exists "$ns"; then echo "namespace $ns: present"; else echo "namespace $ns: absent"; rc=1; fi
  done
  if ns_exists "$NS_GW" && ns_exists "$NS_CLI"; then
    ip -n "$NS_GW" -br addr show dev "$IF_GW" 2>/dev/null | sed "s/^/$NS_GW: /" || { echo "$IF_GW: absent"; rc=1; }
    ip -n "$NS_CLI" -br addr show dev "$IF_CLI" 2>/dev/null | sed "s/^/$NS_CLI: /" || { echo "$IF_CLI: absent"; rc=1; }
    ip -n "$NS_GW" link show dev "$IF_GW" 2>/dev/null | grep -o 'prog/xdp.*' | sed "s/^/$IF_GW: xdp /" || true
    echo "$IF_GW rx queues: $(rx_queues "$NS_GW" "$IF_GW")"
    if ns_exists "$NS_EX"; then
      ip -n "$NS_EX" -br addr show dev "$IF_EX" 2>/dev/null | sed "s/^/$NS_EX: /" || { echo "$IF_EX: absent"; rc=1; }
      ip -n "$NS_CLI" -br addr show dev "$BR" 2>/dev/null | sed "s/^/$NS_CLI: /" || true
    fi
    for pair in "$NS_GW $IF_GW" "$NS_CLI $IF_CLI"; do
      set -- $pair
      on=$(ip netns exec "$1" ethtool -k "$2" 2>/dev/null |
        grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|large-receive-offload):' |
        grep ': on' | cut -d: -f1 | tr '\n' ' ' || true)
      echo "$2 offloads on: ${on:-none}"
    done
  fi
  return $rc
}

validate
cmd=${1:-}
case "$cmd" in
  up)
    bypass=0 queues=1 exchange=0
    shift
    while (($#)); do
      case "$1" in
        --bypass) bypass=1 ;;
        --exchange) exchange=1 ;;
        --queues)
          [[ ${2:-} =~ ^[0-9]+$ ]] && ((10#$2 >= 1 && 10#$2 <= 16)) || die "up: --queues needs a number from 1 to 16, got '${2:-}'"
          queues=$((10#$2))
          shift
          ;;
        *) die "up: unknown option '$1' (expected --bypass, --queues N or --exchange)" ;;
      esac
      shift
    done
    need ip ethtool
    up "$bypass" "$queues" "$exchange"
    ;;
  down) need ip; down ;;
  status) need ip ethtool; status ;;
  -h | --help | help) usage 0 ;;
  *) echo "lab.sh: unknown command '${cmd}'" >&2; usage 2 ;;
esac
