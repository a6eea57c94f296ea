//! Backends behind [`crate::transport::Transport`], one file each.
//!
//! * [`kernel`]: kernel TCP over epoll (mio). Runs anywhere.
//!
//! The AF_XDP + user-space stack backend is planned (see docs/ARCHITECTURE.md).

pub mod kernel;
pub mod xdp;

use std::fmt;
use std::str::FromStr;

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Kernel TCP over epoll.
    Kernel,
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kernel" => Ok(BackendKind::Kernel),
            "xdp" | "auto" => Err(format!("--backend {s}: the AF_XDP backend is not built yet; use --backend kernel")),
            other => Err(format!("--backend {other}: unknown backend (expected: kernel)")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendKind::Kernel => f.write_str("kernel"),
        }
    }
}
