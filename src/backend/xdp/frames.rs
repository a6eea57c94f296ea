//! A frame-level loop straight on the AF_XDP rings, for applications that
//! answer frames without a TCP stack (`--app udp-echo` and `--app
//! tcp-floor`, the floors of the benchmarks): each received frame is copied into a TX frame, the handler
//! turns it into its reply in place (or refuses it), and the reply is sent.

use std::sync::atomic::{AtomicBool, Ordering};

use super::xsk::{BindMode, RxHalf, TxHalf, UmemView};
use super::XdpConfig;
use crate::transport::WaitMode;

/// Answers frames in place.
pub trait FrameHandler {
    /// Turn `frame` into its reply in place: the reply's length (at most
    /// the frame's), or None to drop it.
    fn reply(&mut self, frame: &mut [u8]) -> Option<usize>;
    /// The end-of-run line.
    fn summary(&self) -> String;
}

/// What the loop itself counts; the handler counts its replies and refusals.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameStats {
    /// Frames dropped for want of a free TX frame.
    pub tx_starved: u64,
}

fn answer_one(
    rx: &mut RxHalf,
    tx: &mut TxHalf,
    view: UmemView<'_>,
    h: &mut impl FrameHandler,
    st: &mut FrameStats,
) -> bool {
    let Some(frame) = rx.take() else { return false };
    let Some(mut out) = tx.alloc() else {
        st.tx_starved += 1;
        rx.recycle(frame);
        return true;
    };
    let src = view.rx_bytes(&frame);
    let dst = view.tx_bytes_mut(&mut out, src.len());
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    rx.recycle(frame);
    match h.reply(&mut dst[..n]) {
        Some(len) if len <= n => {
            tx.submit(out, len);
        }
        _ => tx.free(out),
    }
    true
}

/// Serve `port` (and ARP) with `h` until `stop`.
pub fn run(cfg: XdpConfig, port: u16, h: &mut impl FrameHandler, stop: &AtomicBool) -> Result<FrameStats, String> {
    let (prog, mut sock, _own) = super::open(&cfg, (0, 0)).map_err(|e| e.to_string())?;
    // The XDP program redirects TCP and UDP only to listening ports.
    prog.maps()?.add_port(port)?;
    crate::log_info!(
        "frame loop on {}:{port} backend=xdp ({} mode, {}) iface={}",
        cfg.stack.ip,
        if sock.mode == BindMode::ZeroCopy { "zero-copy" } else { "copy" },
        if cfg.stack.wait == WaitMode::Spin { "spin" } else { "blocking" },
        cfg.iface
    );
    let mut st = FrameStats::default();
    while !stop.load(Ordering::Relaxed) {
        let (rx, tx, view) = sock.split();
        rx.wake_if_needed();
        let mut n = 0;
        while n < 64 && answer_one(rx, tx, view, h, &mut st) {
            n += 1;
        }
        rx.flush();
        tx.kick();
        tx.reap();
        if n == 0 && cfg.stack.wait == WaitMode::Block {
            rx.wait(10, None);
        }
    }
    let mut c = crate::transport::Counters::default();
    prog.counters().fill(&mut c);
    crate::log_info!("{}; tx_starved={}; {}", h.summary(), st.tx_starved, c.line());
    // The program first (no more redirects), then the socket.
    drop(prog);
    drop(sock);
    Ok(st)
}
