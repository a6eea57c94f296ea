//! Backends behind [`crate::transport::Transport`], one module each.
//!
//! * [`kernel`]: kernel TCP over epoll (mio). Runs anywhere.
//! * [`xdp`]: an XDP redirect program and an AF_XDP socket, with the
//!   user-space stack ([`crate::stack`]) on top (kernel bypass).

pub mod kernel;
pub mod xdp;
