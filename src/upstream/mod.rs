//! The gateway's upstream leg: its sessions to the venue (the order
//! lifecycle that runs on them is in `app::orders`).
//!
//! ```text
//! soup_client.rs  the client side of a SoupBinTCP session: login, exactly-once delivery, heartbeats, backoff
//! state.rs        what a session remembers across restarts, written off the loop
//! ```

pub mod soup_client;
pub mod state;
