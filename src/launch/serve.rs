//! The simplest job: every loop serves one application on one address.
//! What a user of the crate calls ([`serve`]); `tailgate serve` has its
//! own job for its exit lines.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use super::{launch, Ended, Job, LaunchConfig, LoopCtx, Started};
use crate::app::App;
use crate::server::{Server, ServerConfig, ServerStats};
use crate::transport::{Transport, TransportStats};

/// What one loop of [`serve`] leaves: its counters, the application's
/// summary line, and the error it stopped on, if any.
#[derive(Debug, Clone)]
pub struct Served {
    pub place: String,
    pub server: ServerStats,
    pub transport: TransportStats,
    pub summary: String,
    /// The transport's counters in one line (xdp: the stack's, the
    /// socket's and the XDP program's).
    pub report: Option<String>,
    pub error: Option<String>,
}

struct ServeJob<F> {
    addr: SocketAddr,
    server: ServerConfig,
    make: F,
}

impl<A: App, F: Fn(usize) -> A + Sync> Job for ServeJob<F> {
    type End = Served;

    fn run<T: Transport>(&self, t: T, mut cx: LoopCtx<'_>) -> Result<Served, String> {
        let mut s = Server::new(t, (self.make)(cx.index), self.server);
        s.listen(self.addr).map_err(|e| format!("loop {}: cannot listen on {}: {e}", cx.index, self.addr))?;
        let r = cx.serve(&mut s);
        Ok(Served {
            place: cx.place,
            server: s.stats,
            transport: s.transport.stats(),
            summary: s.app.summary(),
            report: s.transport.report(),
            error: r.err().map(|e| format!("loop {}: {e}", cx.index)),
        })
    }

    fn ready(&self, s: &Started) {
        crate::log_info!("serving on {} backend={} loops={} ({})", self.addr, s.backend, s.loops, s.places);
    }
}

/// Serve `addr` on the loops of `cfg` until `stop`: each loop gets its own
/// application from `make(loop_index)`, its own transport and its own
/// [`Server`]; the start line is logged once every loop listens.
pub fn serve<A: App, F: Fn(usize) -> A + Sync>(
    cfg: LaunchConfig,
    addr: SocketAddr,
    server: ServerConfig,
    make: F,
    stop: &AtomicBool,
) -> Result<Ended<Served>, String> {
    launch(cfg, &ServeJob { addr, server, make }, stop)
}
