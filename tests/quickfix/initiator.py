#!/usr/bin/env python3
"""A QuickFIX FIX 4.4 initiator for tests/fix_lab.rs: it logs on to the
gateway's FIX port (Username 553 / Password 554 in its Logon), sends orders
and cancels, and prints one JSON line per event it saw: "logon", "logout"
(with the Logout's Text), "exec" (an ExecutionReport's fields, PossDupFlag
included), "cancel_reject", "reject_sent" (a session Reject QuickFIX sent
us: one of our messages failed its FIX44 data dictionary), "reject_recv"
and "done". QuickFIX validates every message it receives against the
dictionary it ships; only valid application messages reach fromApp.

    initiator.py MODE HOST PORT USER PASSWORD DIR [PAIRS]

MODE:
  happy    crossing pairs (buy and sell 100 @ 10.00, each filled), a resting
           buy cancelled, and a cancel of an unknown order; then Logout
  wrongpw  a Logon (with the password given, meant to be wrong); waits for
           the Logout
  rest     PAIRS buys (100 @ 10.00), each acknowledged, then the
           connection dropped without a Logout (QuickFIX's store in DIR
           keeps its numbers)
  sell     PAIRS sells (100 @ 10.00) that fill against them; then Logout
  recover  logs on again with DIR's store (no reset): QuickFIX asks for the
           gap with its own ResendRequest; waits for the fills of the PAIRS
           buys, then Logout

USER is the account (Username 553) and the SenderCompID.
"""
import json
import os
import sys
import threading
import time

import quickfix as fix


def emit(**kw):
    print(json.dumps(kw), flush=True)


class App(fix.Application):
    def __init__(self, user, password):
        super().__init__()
        self.user, self.password = user, password
        self.session = None
        self.logged_on = threading.Event()
        self.logged_out = threading.Event()
        self.lock = threading.Lock()
        self.execs = []

    def onCreate(self, sid):
        self.session = sid

    def onLogon(self, sid):
        emit(event="logon")
        self.logged_on.set()

    def onLogout(self, sid):
        emit(event="logout_callback")
        self.logged_out.set()

    def toAdmin(self, msg, sid):
        t = msg.getHeader().getField(35)
        if t == "A":
            msg.setField(553, self.user)
            msg.setField(554, self.password)
        elif t == "3":
            emit(event="reject_sent", text=field(msg, 58), ref_tag=field(msg, 371), raw=msg.toString().replace("\x01", "|"))
        elif t == "2":
            emit(event="resend_request_sent", begin=field(msg, 7), end=field(msg, 16))

    def fromAdmin(self, msg, sid):
        t = msg.getHeader().getField(35)
        if t == "5":
            emit(event="logout", text=field(msg, 58))
        elif t == "3":
            emit(event="reject_recv", text=field(msg, 58), ref_tag=field(msg, 371))
        elif t == "4":
            emit(event="sequence_reset", new_seq=field(msg, 36), gap_fill=field(msg, 123))

    def toApp(self, msg, sid):
        pass

    def fromApp(self, msg, sid):
        t = msg.getHeader().getField(35)
        poss_dup = field(msg.getHeader(), 43) == "Y"
        if t == "8":
            e = dict(
                event="exec",
                clid=field(msg, 11),
                orig=field(msg, 41),
                exec_id=field(msg, 17),
                exec_type=field(msg, 150),
                status=field(msg, 39),
                cum=field(msg, 14),
                leaves=field(msg, 151),
                avg_px=field(msg, 6),
                text=field(msg, 58),
                poss_dup=poss_dup,
            )
            with self.lock:
                self.execs.append(e)
            emit(**e)
        elif t == "9":
            emit(event="cancel_reject", clid=field(msg, 11), orig=field(msg, 41), text=field(msg, 58))
        else:
            emit(event="app", msg_type=t)


def field(m, tag):
    try:
        return m.getField(tag) if m.isSetField(tag) else None
    except Exception:
        return None


def order(sid, clid, side, qty, price):
    m = fix.Message()
    m.getHeader().setField(fix.MsgType(fix.MsgType_NewOrderSingle))
    m.setField(fix.ClOrdID(clid))
    m.setField(fix.Side(side))
    m.setField(fix.Symbol("TGATE"))
    m.setField(fix.TransactTime())
    m.setField(fix.OrderQty(qty))
    m.setField(fix.OrdType(fix.OrdType_LIMIT))
    m.setField(fix.Price(price))
    fix.Session.sendToTarget(m, sid)


def cancel(sid, clid, orig, side):
    m = fix.Message()
    m.getHeader().setField(fix.MsgType(fix.MsgType_OrderCancelRequest))
    m.setField(fix.OrigClOrdID(orig))
    m.setField(fix.ClOrdID(clid))
    m.setField(fix.Side(side))
    m.setField(fix.Symbol("TGATE"))
    m.setField(fix.TransactTime())
    m.setField(fix.OrderQty(100))
    fix.Session.sendToTarget(m, sid)


def settings(path, host, port, d, reset, comp):
    dd = os.path.join(sys.prefix, "share", "quickfix", "FIX44.xml")
    with open(path, "w") as f:
        f.write(
            f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=60
FileStorePath={d}/store
FileLogPath={d}/log
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
DataDictionary={dd}
HeartBtInt=5
SocketConnectHost={host}
SocketConnectPort={port}
ResetOnLogon={'Y' if reset else 'N'}
[SESSION]
BeginString=FIX.4.4
SenderCompID={comp}
TargetCompID=TAILGATE
"""
        )
    return fix.SessionSettings(path)


def wait_for(cond, limit):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    mode, host, port, user, password, d = sys.argv[1:7]
    pairs = int(sys.argv[7]) if len(sys.argv) > 7 else 3
    os.makedirs(d, exist_ok=True)
    app = App(user, password)
    s = settings(os.path.join(d, "qf.cfg"), host, port, d, reset=mode != "recover", comp=user)
    init = fix.SocketInitiator(app, fix.FileStoreFactory(s), s, fix.FileLogFactory(s))
    init.start()
    try:
        if mode == "wrongpw":
            wait_for(lambda: app.logged_out.is_set(), 10)
            return
        if not app.logged_on.wait(10):
            emit(event="error", what="no logon within 10 s")
            return
        sid = app.session
        if mode == "happy":
            for i in range(pairs):
                order(sid, f"B{i}", fix.Side_BUY, 100, 10.0)
                order(sid, f"S{i}", fix.Side_SELL, 100, 10.0)
            order(sid, "R1", fix.Side_BUY, 100, 9.0)
            wait_for(lambda: any(e["clid"] == "R1" and e["exec_type"] == "0" for e in app.execs), 10)
            cancel(sid, "C1", "R1", fix.Side_BUY)
            cancel(sid, "C2", "NOPE", fix.Side_BUY)
            filled = lambda: sum(1 for e in app.execs if e["exec_type"] == "F") >= 2 * pairs
            canceled = lambda: any(e["exec_type"] == "4" for e in app.execs)
            wait_for(lambda: filled() and canceled(), 10)
            time.sleep(0.3)
        elif mode == "rest":
            for i in range(pairs):
                order(sid, f"B{i}", fix.Side_BUY, 100, 10.0)
            acked = lambda: len({e["clid"] for e in app.execs if e["exec_type"] == "0"}) >= pairs
            wait_for(acked, 10)
            # Drop the connection: no Logout.
            init.stop(True)
            emit(event="done")
            return
        elif mode == "sell":
            for i in range(pairs):
                order(sid, f"S{i}", fix.Side_SELL, 100, 10.0)
            filled = lambda: len({e["clid"] for e in app.execs if e["exec_type"] == "F"}) >= pairs
            wait_for(filled, 10)
        elif mode == "recover":
            filled = lambda: len({e["clid"] for e in app.execs if e["exec_type"] == "F"}) >= pairs
            wait_for(filled, 15)
            time.sleep(0.3)
        fix.Session.lookupSession(sid).logout("done")
        wait_for(lambda: app.logged_out.is_set(), 5)
    finally:
        emit(event="done")
        init.stop()


if __name__ == "__main__":
    main()
