//! The load generator against real servers on loopback: rates, bursts, echo payloads, a corrupting server.

use super::*;
use crate::app::echo::Echo;
use crate::app::orders::{Orders, OrdersConfig};
use crate::backend::kernel::{KernelConfig, KernelTransport};
use crate::server::{Server, ServerConfig};
use std::sync::Arc;

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn serve<A: crate::app::App + Send + 'static>(app: A) -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<A>) {
    serve_at(free_port(), app)
}

fn serve_at<A: crate::app::App + Send + 'static>(
    addr: SocketAddr,
    app: A,
) -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<A>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let t = KernelTransport::new(KernelConfig::default()).unwrap();
        let mut s = Server::new(t, app, ServerConfig::default());
        s.listen(addr).unwrap();
        tx.send(()).unwrap();
        s.run(&s2).unwrap();
        s.app
    });
    rx.recv().unwrap();
    (addr, stop, h)
}

fn cfg(addr: SocketAddr, app: LoadApp, mode: Mode) -> LoadConfig {
    LoadConfig {
        addr,
        app,
        conns: 4,
        mode,
        duration: Duration::from_millis(300),
        size: 64,
        drain: Duration::from_secs(2),
        progress: false,
        logon_timeout: Duration::from_secs(5),
        burst: None,
        cross: 0,
        logon: Default::default(),
        fix: None,
        together: None,
    }
}

#[test]
fn orders_rate_mode_every_order_answered() {
    let (addr, stop, h) = serve(Orders::new(OrdersConfig::default()));
    let t = KernelTransport::new(KernelConfig::default()).unwrap();
    let r =
        LoadGen::new(t, cfg(addr, LoadApp::Orders, Mode::Rate(5000.0))).unwrap().run(&AtomicBool::new(false)).unwrap();
    stop.store(true, Ordering::Relaxed);
    let app = h.join().unwrap();
    assert!(r.sent > 500, "{}", r.render());
    assert_eq!(r.answered, r.sent, "{}", r.render());
    assert_eq!(r.failures(), 0, "{}", r.render());
    assert_eq!(r.rtt_us.samples, r.sent);
    // The gateway saw the same orders and cancels the client counted.
    assert_eq!(app.counters.orders_acked + app.counters.cancels_acked, r.sent);
    assert_eq!(app.counters.rejects_total(), 0);
}

#[test]
fn orders_over_fix_every_order_and_cancel_answered() {
    use crate::app::orders::FixConfig;
    let addr = free_port();
    let app = Orders::new(OrdersConfig::default()).with_fix(FixConfig { port: addr.port(), ..FixConfig::default() });
    let (addr, stop, h) = serve_at(addr, app);
    let t = KernelTransport::new(KernelConfig::default()).unwrap();
    let c = LoadConfig { fix: Some("TAILGATE".into()), ..cfg(addr, LoadApp::Orders, Mode::Rate(5000.0)) };
    let r = LoadGen::new(t, c).unwrap().run(&AtomicBool::new(false)).unwrap();
    stop.store(true, Ordering::Relaxed);
    let app = h.join().unwrap();
    assert!(r.sent > 500, "{}", r.render());
    assert_eq!((r.answered, r.failures()), (r.sent, 0), "{}", r.render());
    assert_eq!((r.out_of_sequence, r.corrupted, r.unexpected), (0, 0, 0), "{}", r.render());
    // The gateway took as FIX the orders and cancels the client counted,
    // and every one was answered in FIX: acknowledged, or a cancel too late.
    let l = r.lifecycle.as_ref().expect("orders report their lifecycle");
    assert!(l.acks > 0 && l.cancel_acks > 0, "{}", r.render());
    assert_eq!(app.counters.orders_acked + app.counters.cancels_acked, r.sent);
    assert_eq!(l.acks + l.cancel_acks + l.cancel_rejects, r.sent, "{}", r.render());
    assert_eq!(app.counters.rejects_total(), 0);
}

#[test]
fn bursts_add_their_orders_on_top_of_the_rate() {
    let (addr, stop, h) = serve(Orders::new(OrdersConfig::default()));
    let t = KernelTransport::new(KernelConfig::default()).unwrap();
    // 100/s for 300 ms is 30 orders (the first at 0); bursts of 50
    // every 100 ms come at 100 and 200 ms (and 300 ms if the loop gets
    // there before its end check): 80 or 130 more.
    let c = LoadConfig { burst: Some((50, 100_000_000)), ..cfg(addr, LoadApp::Orders, Mode::Rate(100.0)) };
    let r = LoadGen::new(t, c).unwrap().run(&AtomicBool::new(false)).unwrap();
    stop.store(true, Ordering::Relaxed);
    let app = h.join().unwrap();
    assert!(r.sent == 130 || r.sent == 131 || r.sent == 180 || r.sent == 181, "{}", r.render());
    assert_eq!((r.answered, r.failures()), (r.sent, 0), "{}", r.render());
    assert_eq!(app.counters.orders_acked + app.counters.cancels_acked, r.sent);
}

#[test]
fn echo_pingpong_checks_payload() {
    let (addr, stop, h) = serve(Echo::default());
    let t = KernelTransport::new(KernelConfig::default()).unwrap();
    let r = LoadGen::new(t, cfg(addr, LoadApp::Echo, Mode::PingPong)).unwrap().run(&AtomicBool::new(false)).unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert!(r.answered > 100, "{}", r.render());
    assert_eq!(r.failures(), 0, "{}", r.render());
}

#[test]
fn load_counts_a_server_that_corrupts() {
    /// Echo that flips one byte of every 100th message.
    struct Bad(u64);
    impl crate::app::App for Bad {
        type Session = ();
        fn name(&self) -> &'static str {
            "bad"
        }
        fn open(&mut self, _: ConnId, _: u64) {}
        fn on_input(
            &mut self,
            _: &mut (),
            i: &[u8],
            o: &mut crate::app::OutBuf,
            _: &mut crate::sampler::tracer::Tracer,
            _: u64,
            _: u64,
        ) -> (usize, crate::app::Verdict) {
            let n = (i.len() / 64 * 64).min(o.spare() / 64 * 64);
            for chunk in i[..n].chunks(64) {
                self.0 += 1;
                let mut c = chunk.to_vec();
                if self.0 % 100 == 0 {
                    c[40] ^= 0xff;
                }
                o.put(&c);
            }
            (n, crate::app::Verdict::Continue)
        }
        fn on_peer_fin(&mut self, _: &mut (), _: &[u8], _: &mut crate::app::OutBuf) -> crate::app::Verdict {
            crate::app::Verdict::Close
        }
        fn on_tick(&mut self, _: &mut (), _: &mut crate::app::OutBuf, _: u64) -> crate::app::Verdict {
            crate::app::Verdict::Continue
        }
        fn on_close(&mut self, _: (), _: &str) {}
        fn summary(&self) -> String {
            String::new()
        }
    }
    let (addr, stop, h) = serve(Bad(0));
    let t = KernelTransport::new(KernelConfig::default()).unwrap();
    let r = LoadGen::new(t, cfg(addr, LoadApp::Echo, Mode::PingPong)).unwrap().run(&AtomicBool::new(false)).unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert!(r.corrupted > 0, "{}", r.render());
    assert!(r.failures() > 0);
}

/// A gateway that answers the Logon and nothing after it: the load's
/// drain waits on every order, and keeps the sessions alive meanwhile.
#[test]
fn the_drain_keeps_waiting_sessions_alive() {
    use crate::proto::{msg_type, Frame, GatewayMsg, Parsed};
    #[derive(Default)]
    struct Mute {
        logons: u32,
        /// Each closed session's heartbeats after its last order.
        heartbeats: Vec<u64>,
    }
    impl crate::app::App for Mute {
        /// Its heartbeats since its last order.
        type Session = u64;
        fn name(&self) -> &'static str {
            "mute"
        }
        fn open(&mut self, _: ConnId, _: u64) -> u64 {
            0
        }
        fn on_input(
            &mut self,
            s: &mut u64,
            i: &[u8],
            o: &mut crate::app::OutBuf,
            _: &mut crate::sampler::tracer::Tracer,
            _: u64,
            _: u64,
        ) -> (usize, crate::app::Verdict) {
            let mut used = 0;
            while let Ok(Parsed::Frame(f)) = Frame::parse(&i[used..]) {
                if o.spare() < 64 {
                    break;
                }
                used += f.len();
                match f.msg_type() {
                    msg_type::LOGON => {
                        self.logons += 1;
                        let ack = GatewayMsg::LogonAck { heartbeat_ms: 1000, idle_timeout_ms: 2000 };
                        let mut b = [0u8; 64];
                        let n = ack.encode_as(f.version(), 1, &mut b).unwrap();
                        o.put(&b[..n]);
                    }
                    msg_type::HEARTBEAT => *s += 1,
                    msg_type::NEW_ORDER | msg_type::CANCEL => *s = 0,
                    msg_type::LOGOUT => return (used, crate::app::Verdict::Close),
                    _ => {}
                }
            }
            (used, crate::app::Verdict::Continue)
        }
        fn on_peer_fin(&mut self, _: &mut u64, _: &[u8], _: &mut crate::app::OutBuf) -> crate::app::Verdict {
            crate::app::Verdict::Close
        }
        fn on_tick(&mut self, _: &mut u64, _: &mut crate::app::OutBuf, _: u64) -> crate::app::Verdict {
            crate::app::Verdict::Continue
        }
        fn on_close(&mut self, s: u64, _: &str) {
            self.heartbeats.push(s);
        }
        fn summary(&self) -> String {
            String::new()
        }
    }
    let (addr, stop, h) = serve(Mute::default());
    let t = KernelTransport::new(KernelConfig::default()).unwrap();
    let mut c = cfg(addr, LoadApp::Orders, Mode::Rate(200.0));
    c.drain = Duration::from_millis(2500);
    let r = LoadGen::new(t, c).unwrap().run(&AtomicBool::new(false)).unwrap();
    stop.store(true, Ordering::Relaxed);
    let app = h.join().unwrap();
    assert_eq!(app.logons, 4, "four sessions logged on");
    assert!(r.sent > 0 && r.unanswered == r.sent, "{}", r.render());
    // A heartbeat a second from each session while the drain waits.
    assert_eq!(app.heartbeats.len(), 4, "four sessions closed");
    assert!(app.heartbeats.iter().all(|&n| n >= 1), "heartbeats after the last order: {:?}", app.heartbeats);
}
