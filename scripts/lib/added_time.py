#!/usr/bin/env python3
"""The gateway's own added time, from a capture of its traffic (scripts/bench.sh sla).

    added_time.py CAPTURE GATEWAY_PORT EXCHANGE_PORT

Reads the capture with tshark, rebuilds each TCP stream in sequence order
(a retransmitted byte is taken once, at its first sight), and pairs, for
every order:

    client in    the frame that completed the client's NewOrder
    upstream out the frame that completed its Enter Order
    exchange in  the frame that completed the exchange's Order Accepted
    client out   the frame that completed the client's Ack

by exact identity: the Enter's token is the Accepted's, the Accepted's order
reference is the Ack's order_id, and the Ack's cl_ord_id and connection are
the NewOrder's. Prints one JSON object: the count paired and the p50,
p99, p99.9 and max in microseconds of client in -> upstream out ("in") and
exchange in -> client out ("out").
"""

import json
import struct
import subprocess
import sys


def streams(path, port_gw, port_ex):
    """{(src, sport, dst, dport): [(seq, time, payload)]} for the TCP flows with data."""
    out = subprocess.run(
        ["tshark", "-n", "-r", path, "-Y", "tcp.len > 0", "-T", "fields", "-E", "separator=|",
         "-e", "frame.time_epoch", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
         "-e", "tcp.seq_raw", "-e", "tcp.payload"],
        check=True, capture_output=True, text=True).stdout
    flows = {}
    for line in out.splitlines():
        f = line.split("|")
        if len(f) != 7 or not f[6]:
            continue
        t, src, sport, dst, dport, seq, payload = f
        flows.setdefault((src, int(sport), dst, int(dport)), []).append((int(seq), float(t), bytes.fromhex(payload.replace(":", ""))))
    return flows


def reassemble(segs):
    """The stream's bytes, and for each byte the time of the frame that brought it."""
    if not segs:
        return b"", []
    base = min(s for s, _, _ in segs)
    data, times, have = bytearray(), [], 0
    for seq, t, p in sorted(segs, key=lambda x: ((x[0] - base) & 0xFFFFFFFF, x[1])):
        off = (seq - base) & 0xFFFFFFFF
        if off + len(p) <= have:
            continue  # retransmitted: seen already
        if off > have:
            break  # a hole: the capture missed a segment; stop here
        new = p[have - off:]
        data += new
        times += [t] * len(new)
        have += len(new)
    return bytes(data), times


def client_frames(data, times):
    """(type, body, time) of each frame of the tailgate protocol."""
    at = 0
    while at + 8 <= len(data):
        n = struct.unpack_from("<H", data, at)[0]
        if n < 8 or at + n > len(data):
            return
        yield data[at + 3], data[at:at + n], times[at + n - 1]
        at += n


def soup_messages(data, times):
    """(soup type, payload, time) of each SoupBinTCP packet."""
    at = 0
    while at + 3 <= len(data):
        n = struct.unpack_from(">H", data, at)[0]
        if n < 1 or at + 2 + n > len(data):
            return
        yield chr(data[at + 2]), data[at + 3:at + 2 + n], times[at + 1 + n]
        at += 2 + n


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0.0


def main():
    path, port_gw, port_ex = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    flows = streams(path, port_gw, port_ex)
    new_orders, acks, enters, accepted = {}, {}, {}, {}
    for (src, sport, dst, dport), segs in flows.items():
        data, times = reassemble(segs)
        if dport == port_gw:  # client -> gateway
            for ty, b, t in client_frames(data, times):
                if ty == 0x03:
                    new_orders.setdefault((sport, struct.unpack_from("<Q", b, 8)[0]), t)
        elif sport == port_gw:  # gateway -> client
            for ty, b, t in client_frames(data, times):
                if ty == 0x83:
                    cl, order_id = struct.unpack_from("<Q", b, 8)[0], struct.unpack_from("<Q", b, 40)[0]
                    acks[order_id] = (dport, cl, t)
        elif dport == port_ex:  # gateway -> exchange
            for ty, m, t in soup_messages(data, times):
                if ty == "U" and m[:1] == b"O":
                    enters.setdefault(struct.unpack_from(">I", m, 1)[0], t)
        elif sport == port_ex:  # exchange -> gateway
            for ty, m, t in soup_messages(data, times):
                if ty == "S" and m[:1] == b"A":
                    token, order_ref = struct.unpack_from(">I", m, 9)[0], struct.unpack_from(">Q", m, 36)[0]
                    accepted[order_ref] = (token, t)
    d_in, d_out = [], []
    for order_ref, (token, t_ex) in accepted.items():
        if order_ref not in acks or token not in enters:
            continue
        port, cl, t_ack = acks[order_ref]
        t_new = new_orders.get((port, cl))
        if t_new is None:
            continue
        d_in.append((enters[token] - t_new) * 1e6)
        d_out.append((t_ack - t_ex) * 1e6)
    res = {"paired": len(d_in), "new_orders": len(new_orders), "accepted": len(accepted)}
    for name, v in (("in", d_in), ("out", d_out)):
        res[name] = {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "p999": pct(v, 0.999), "max": max(v) if v else 0.0}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
