//! The gateway's upstream leg: its sessions to the venue (in progress; the
//! order lifecycle comes next).
//!
//! ```text
//! soup_client.rs  the client side of a SoupBinTCP session: login, exactly-once delivery, heartbeats, backoff
//! ```

pub mod soup_client;
