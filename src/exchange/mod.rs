//! The exchange simulator (`tailgate exchange`): the venue the gateway's
//! upstream leg talks to, for tests and benchmarks. OUCH 5.0 over
//! SoupBinTCP 3.0 (`crate::venue`), one book per symbol, a journal per
//! account for replay, and faults on request. Test equipment: it allocates
//! as orders come (bounded by the books' size), unlike the gateway's loop.
//!
//! ```text
//! venue.rs    the App: sessions, login, replay, heartbeats, orders, executions
//! book.rs     one symbol's price-time priority limit order book
//! journal.rs  an account's sequenced messages, in memory and in a file
//! faults.rs   --inject: slow answers, rejects, dropped sessions, no heartbeats
//! ```

pub mod book;
pub mod faults;
pub mod journal;
pub mod venue;

pub use venue::{Exchange, ExchangeConfig, ExchangeStats};
