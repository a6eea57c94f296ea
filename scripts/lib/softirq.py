#!/usr/bin/env python3
"""A softirq load for scripts/bench.sh attribution: from the core it runs on,
sends a burst of BURST_PKTS small UDP datagrams to DST (an address inside the
lab's own namespaces, whose receive path is steered by RPS to the loop's core
and made slow there by nftables rules) every PERIOD_MS for SECONDS (bounded).
The loop's core then spends milliseconds in NET_RX softirq per burst, on
whatever thread it interrupts. Writes each burst's first and last send
(CLOCK_MONOTONIC ns, the sampler's clock) to LOG, one line each, and prints
their count.

    softirq.py DST SECONDS BURST_PKTS PERIOD_MS LOG
"""
import socket
import sys
import time


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    dst, secs, burst, period = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    if not (0 < secs <= 120 and 0 < burst <= 10000 and 0 < period <= 1000):
        sys.exit("softirq.py: SECONDS in (0, 120], BURST_PKTS in (0, 10000], PERIOD_MS in (0, 1000]")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    log = open(sys.argv[5], "w")
    payload = b"x" * 32
    end = time.monotonic() + secs
    bursts = 0
    while time.monotonic() < end:
        t0 = time.monotonic_ns()
        for _ in range(burst):
            s.sendto(payload, (dst, 9))
        log.write("%d %d\n" % (t0, time.monotonic_ns()))
        log.flush()
        bursts += 1
        time.sleep(period / 1000.0)
    print(bursts)


if __name__ == "__main__":
    main()
