//! tailgate: a kernel-bypass TCP stack and order gateway for latency-critical
//! trading.
//!
//! The data path, top to bottom (see docs/ARCHITECTURE.md):
//!
//! * [`app`]: the applications (order gateway, echo, sockperf echo);
//! * [`server`]: the event loop that drives an app over a transport;
//! * [`transport`]: the socket-level API every backend implements, with the
//!   signals and named counters a backend reports;
//! * [`stack`]: the user-space TCP/IP stack (smoltcp and its socket shards),
//!   generic over its frame-level link, with an in-memory link for tests;
//! * [`backend`]: one module per backend: kernel (epoll) and xdp (an XDP
//!   program and an AF_XDP socket under the stack);
//! * [`proto`]: the order-entry wire protocol, codec only;
//! * [`venue`]: the venue's protocols, SoupBinTCP 3.0 and OUCH 5.0, codec only;
//! * [`exchange`]: the exchange simulator the upstream leg talks to;
//! * [`upstream`]: the gateway's sessions to the venue;
//! * [`load`]: the load generator, itself a client of [`transport`];
//! * [`launch`]: one launcher for one loop or many (the gateway, the load
//!   generator, any application): loops on queues and cores, the backend,
//!   the tracers and the reporter;
//! * [`sampler`]: per-message samples, metrics, tail attribution and the
//!   off-CPU trace of what takes a loop's core;
//! * [`plot`]: latency distributions and the tail's causes as SVG;
//! * [`ring`]: the bounded single-producer ring the loops write into (the
//!   sampler's samples, the capture's frames, frames handed between loops);
//! * [`capture`]: `--pcap`, every frame of the xdp backend to a file;
//! * [`clock`], [`log`], [`runtime`]: time, a log that never blocks the loop,
//!   pinning and signals;
//! * [`doctor`]: host readiness checks;
//! * [`sys`]: thin wrappers over system calls and intrinsics. With the AF_XDP
//!   socket and the sample ring, the only code exempt from the crate-wide
//!   deny of raw memory access (docs/ARCHITECTURE.md).
//!
//! # Building on it
//!
//! A user implements [`app::App`]: a session type, and what to do with a
//! connection's input, its peer's FIN, a timer tick and its close. Input
//! arrives as bytes; replies go into a fixed [`app::OutBuf`] (when it is
//! full, stop consuming: that is how backpressure reaches the peer). An
//! application that opens connections of its own asks its loop through
//! [`app::Requests`] and gets them back in [`app::App::open_outbound`] or
//! [`app::App::on_refused`]. Then [`launch::serve`] runs it on one loop or
//! many, on either backend, with the crate's event loop ([`server`]):
//!
//! ```no_run
//! use tailgate::app::{App, OutBuf, Verdict};
//! use tailgate::launch::{serve, LaunchConfig, Places};
//! use tailgate::sampler::tracer::Tracer;
//! use tailgate::transport::ConnId;
//!
//! /// Upper-cases what it gets.
//! struct Shout;
//!
//! impl App for Shout {
//!     type Session = ();
//!     fn name(&self) -> &'static str { "shout" }
//!     fn open(&mut self, _: ConnId, _now: u64) {}
//!     fn on_input(&mut self, _: &mut (), input: &[u8], out: &mut OutBuf, _: &mut Tracer, _: u64, _: u64)
//!         -> (usize, Verdict) {
//!         let n = input.len().min(out.spare());
//!         for b in &input[..n] {
//!             out.put(&[b.to_ascii_uppercase()]);
//!         }
//!         (n, Verdict::Continue)
//!     }
//!     fn on_peer_fin(&mut self, _: &mut (), _: &[u8], _: &mut OutBuf) -> Verdict { Verdict::Close }
//!     fn on_tick(&mut self, _: &mut (), _: &mut OutBuf, _: u64) -> Verdict { Verdict::Continue }
//!     fn on_close(&mut self, _: (), _reason: &str) {}
//!     fn summary(&self) -> String { "shout".into() }
//! }
//!
//! let stop = tailgate::runtime::stop_flag().unwrap(); // SIGINT, SIGTERM
//! // Two loops pinned to cores 2 and 3, each with its own SO_REUSEPORT listener;
//! // LaunchConfig::xdp(XdpConfig::new("eth1", ip), places) bypasses the kernel.
//! let cfg = LaunchConfig::kernel(Places { queues: vec![0], cores: vec![2, 3] });
//! let addr = "0.0.0.0:7100".parse().unwrap();
//! let ended = serve(cfg, addr, Default::default(), |_loop| Shout, &stop).unwrap();
//! for l in ended.loops.into_iter().flatten() {
//!     println!("{}: {} connections", l.place, l.server.opened);
//! }
//! ```
//!
//! `examples/tally.rs` is a whole server of its own line protocol, and
//! `examples/relay.rs` relays each client to an upstream server, opening
//! that connection from the client's own loop.

pub mod admin;
pub mod app;
pub mod backend;
pub mod capture;
pub mod clock;
pub mod doctor;
pub mod exchange;
pub mod fix;
pub mod fixed_map;
pub mod journal;
pub mod launch;
pub mod load;
pub mod log;
pub mod plot;
pub mod proto;
pub mod ring;
pub mod risk;
pub mod runtime;
pub mod sampler;
pub mod server;
pub mod stack;
pub mod sys;
pub mod transport;
pub mod upstream;
pub mod venue;
