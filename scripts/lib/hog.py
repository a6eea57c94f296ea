#!/usr/bin/env python3
"""A competing process for scripts/bench.sh attribution: pinned to one core,
it spins BURST_MS in every PERIOD_MS for SECONDS (bounded), under the comm
"tg-hog" (what the report must name), with SCHED_OTHER or, with --fifo,
SCHED_FIFO priority 10. Writes each burst's start and end (CLOCK_MONOTONIC
ns, the sampler's clock) to LOG, one line each, and prints their count.

    hog.py CORE SECONDS BURST_MS PERIOD_MS LOG [--fifo]
"""
import ctypes
import os
import sys
import time


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    core, secs, burst, period = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    if not (0 < secs <= 120 and 0 < burst < period <= 1000):
        sys.exit("hog.py: SECONDS in (0, 120], 0 < BURST_MS < PERIOD_MS <= 1000")
    ctypes.CDLL(None, use_errno=True).prctl(15, b"tg-hog", 0, 0, 0)  # PR_SET_NAME
    os.sched_setaffinity(0, {core})
    log = open(sys.argv[5], "w")
    if "--fifo" in sys.argv[6:]:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    end = time.monotonic() + secs
    bursts = 0
    while time.monotonic() < end:
        t0 = time.monotonic_ns()
        while time.monotonic_ns() - t0 < burst * 1e6:
            pass
        log.write("%d %d\n" % (t0, time.monotonic_ns()))
        log.flush()
        bursts += 1
        time.sleep((period - burst) / 1000.0)
    print(bursts)


if __name__ == "__main__":
    main()
