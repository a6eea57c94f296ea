#!/usr/bin/env python3
"""Hold N idle TCP connections to IP:PORT for scripts/bench.sh idle: opens them
(non-blocking, at most 500 connecting at once, within SECONDS), with --touch
sends one byte on each and reads its echo, prints "ready N", then holds them
until stdin closes or SECONDS more pass (bounded), and closes them all.

    idle.py IP PORT N SECONDS [--touch]
"""
import resource
import select
import socket
import sys
import time


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    ip, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    if not (0 < n <= 20000 and 0 < secs <= 600):
        sys.exit("idle.py: N in (0, 20000], SECONDS in (0, 600]")
    want = n + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    deadline = time.monotonic() + secs
    socks, pending = [], {}
    poll = select.epoll()
    while (len(socks) < n or pending) and time.monotonic() < deadline:
        while len(socks) < n and len(pending) < 500:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((ip, port))
            socks.append(s)
            pending[s.fileno()] = s
            poll.register(s.fileno(), select.EPOLLOUT)
        for fd, _ in poll.poll(0.1):
            s = pending.pop(fd)
            poll.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                sys.exit("idle.py: connect: error %d after %d connections" % (err, len(socks) - len(pending)))
    if pending or len(socks) < n:
        sys.exit("idle.py: only %d of %d connected in time" % (len(socks) - len(pending), n))
    if "--touch" in sys.argv[5:]:
        for s in socks:
            s.setblocking(True)
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(b"x")
            if s.recv(1) != b"x":
                sys.exit("idle.py: no echo")
    print("ready", len(socks), flush=True)
    # Held for SECONDS from here (connecting had its own SECONDS), or until stdin closes.
    r, _, _ = select.select([sys.stdin], [], [], secs)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
