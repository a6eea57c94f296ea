#!/usr/bin/env python3
"""Validate FIX 4.4 messages with QuickFIX (tests/fix_wire.rs): each line of
the file FILE is one message (SOH kept; a message never holds a newline).
Each is parsed by quickfix.Message with the FIX44 data dictionary QuickFIX
ships (BodyLength, CheckSum, structure), then checked by the dictionary as
a session would (required fields, field types and values). Prints "ok
MSGTYPE" or "error: WHY" per message; exits 1 if any message failed.

The dictionary's check reports some faults (a required tag missing) as a
C++ exception the Python binding does not translate, which aborts the
interpreter: so each message is checked in a child process of its own.

    validate.py FILE
"""
import os
import subprocess
import sys


def check_one(raw):
    import quickfix as fix

    dd = fix.DataDictionary(os.path.join(sys.prefix, "share", "quickfix", "FIX44.xml"))
    m = fix.Message(raw, dd, True)
    dd.validate(m)
    t = fix.MsgType()
    m.getHeader().getField(t)
    print("ok", t.getValue())


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        check_one(sys.argv[2])
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    failed = 0
    with open(sys.argv[1], "rb") as f:
        for line in f:
            raw = line.rstrip(b"\n").decode("latin-1")
            r = subprocess.run([sys.executable, __file__, "--one", raw], capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.startswith("ok "):
                print(r.stdout.strip())
            else:
                failed += 1
                why = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
                print("error:", why)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
