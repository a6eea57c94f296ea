//! Backends behind [`crate::transport::Transport`], one file each.
//!
//! * [`kernel`]: kernel TCP over epoll (mio). Runs anywhere.
//! * [`xdp`]: AF_XDP + an XDP redirect program + smoltcp (kernel bypass).
//! * [`rxts`]: kernel receive timestamps for the kernel backend's tracing.

pub mod kernel;
pub mod rxts;
pub mod xdp;
