//! The venue's protocols, spoken by the gateway's upstream leg and by the
//! exchange simulator: SoupBinTCP 3.0 (sessions, sequencing, replay) and
//! OUCH 5.0 (orders) inside it. Codecs only, from Nasdaq's public
//! specifications (docs/VENUE.md).
//!
//! ```text
//! soup.rs   SoupBinTCP 3.0 packets: framing, login, heartbeats, sequenced and unsequenced data
//! ouch.rs   OUCH 5.0 messages: enter, replace, cancel; accepted, replaced, canceled, executed, rejected
//! ```

pub mod ouch;
pub mod soup;
