"""Wrong logons at a steady rate: scripts/bench.sh logon-flood.

    logon_flood.py SRC_IP GW_IP PORT PER_SECOND SECONDS

Each logon is a new TCP connection from SRC_IP carrying one version-3 Logon
(docs/PROTOCOL.md) for account R0 with a wrong password; the gateway's
answer (a Reject, then Logout) is read and the connection closed. At most
256 are open at once. Prints "sent refused throttled": logons sent, Rejects
not_authorized (21), Rejects logon_throttled (22), then "reset": connections
refused or reset before any answer (a source the gateway made wait is refused
as it connects).
"""
import selectors
import socket
import struct
import sys
import time

src, ip, port, rate, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
logon = struct.pack("<HBBI", 48, 3, 0x01, 1) + b"R0      " + b"wrong-password".ljust(32, b"\0")
sel = selectors.DefaultSelector()
sent = refused = throttled = reset = 0
open_ = {}
start = time.monotonic()
next_at = start
while True:
    now = time.monotonic()
    if now - start >= secs:
        break
    while next_at <= now and len(open_) < 256:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((src, 0))
            s.connect((ip, port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            next_at += 1.0 / rate
            continue
        sel.register(s, selectors.EVENT_WRITE)
        open_[s] = [b"", now]
        next_at += 1.0 / rate
    for key, ev in sel.select(timeout=0.001):
        s = key.fileobj
        if ev & selectors.EVENT_WRITE:
            try:
                s.send(logon)
                sent += 1
                sel.modify(s, selectors.EVENT_READ)
            except OSError:
                reset += 1
                sel.unregister(s)
                s.close()
                open_.pop(s, None)
            continue
        try:
            b = s.recv(4096)
        except OSError:
            b = None
        if b is None or (not b and not open_[s][0]):
            reset += 1
            sel.unregister(s)
            s.close()
            open_.pop(s, None)
            continue
        buf = open_[s][0] + b
        open_[s][0] = buf
        if len(buf) >= 40 or not b:
            if len(buf) >= 40 and buf[3] == 0x84:
                if buf[36] == 21:
                    refused += 1
                elif buf[36] == 22:
                    throttled += 1
            sel.unregister(s)
            s.close()
            open_.pop(s, None)
    for s, (_, t) in list(open_.items()):
        if now - t > 2.0:
            sel.unregister(s)
            s.close()
            open_.pop(s)
print(sent, refused, throttled, reset)
