//! FIX 4.4 tag=value, the wire format (the FIX session layer and the
//! order messages build on it): find one whole message in a byte stream
//! and check its frame ([`frame`]: BeginString 8, BodyLength 9, CheckSum
//! 10), read its fields in place ([`Fields`]), and write one
//! ([`Encoder`]). Nothing here allocates: a message is read where it lies
//! and written into the caller's buffer.

mod codec;
mod encode;
#[cfg(test)]
mod tests;

pub use codec::{frame, Field, FieldError, Fields, FrameError, MAX_MESSAGE};
pub use encode::Encoder;

/// The field separator (SOH).
pub const SOH: u8 = 0x01;

/// The only BeginString this gateway speaks.
pub const BEGIN_STRING: &[u8] = b"FIX.4.4";

/// Tags of the standard header and trailer that framing reads.
pub mod tag {
    pub const BEGIN_STRING: u32 = 8;
    pub const BODY_LENGTH: u32 = 9;
    pub const MSG_TYPE: u32 = 35;
    pub const CHECK_SUM: u32 = 10;
}

/// The CheckSum of `bytes`: their sum modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}
