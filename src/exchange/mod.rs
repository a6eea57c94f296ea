//! The exchange simulator (`tailgate exchange`): the venue the gateway's
//! upstream leg talks to, for tests and benchmarks.
//!
//! ```text
//! book.rs   one symbol's price-time priority limit order book
//! ```

pub mod book;
