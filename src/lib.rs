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
//! * [`load`]: the load generator, itself a client of [`transport`];
//! * [`launch`]: one launcher for one loop or many (the gateway, the load
//!   generator, any application): loops on queues and cores, the backend,
//!   the tracers and the reporter;
//! * [`sampler`]: per-message samples, metrics and tail attribution;
//! * [`ring`]: the bounded single-producer ring the loops write into (the
//!   sampler's samples, the capture's frames, frames handed between loops);
//! * [`capture`]: `--pcap`, every frame of the xdp backend to a file;
//! * [`clock`], [`log`], [`runtime`]: time, a log that never blocks the loop,
//!   pinning and signals;
//! * [`doctor`]: host readiness checks;
//! * [`sys`]: thin wrappers over system calls and intrinsics. With the AF_XDP
//!   socket and the sample ring, the only code exempt from the crate-wide
//!   deny of raw memory access (docs/ARCHITECTURE.md).

pub mod app;
pub mod backend;
pub mod capture;
pub mod clock;
pub mod doctor;
pub mod launch;
pub mod load;
pub mod log;
pub mod proto;
pub mod ring;
pub mod runtime;
pub mod sampler;
pub mod server;
pub mod stack;
pub mod sys;
pub mod transport;
