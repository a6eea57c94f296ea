//! Writing one message into the caller's buffer: the body first, then the
//! header in front of it (its BodyLength is known only then), then the
//! CheckSum. No allocation, no formatting machinery.

use super::{checksum, SOH};

/// Room kept in front of the body for `8=FIX.4.4<SOH>9=NNNNNN<SOH>`.
const HEAD_ROOM: usize = 20;

/// A message being written into `buf`. Start with [`Encoder::new`] (which
/// writes MsgType 35 first, as the standard header requires after
/// BodyLength), add fields in order, and [`Encoder::finish`]. A field that
/// does not fit makes the encoder refuse the rest, and `finish` say so.
pub struct Encoder<'a> {
    buf: &'a mut [u8],
    at: usize,
    overflow: bool,
}

impl<'a> Encoder<'a> {
    /// A message of type `msg_type` (the value of tag 35).
    pub fn new(buf: &'a mut [u8], msg_type: &[u8]) -> Encoder<'a> {
        let mut e = Encoder { buf, at: HEAD_ROOM, overflow: false };
        e.bytes(35, msg_type);
        e
    }

    /// Fields only, from the start of `buf` (a body to store and send
    /// later with [`Encoder::raw`]); read them with [`Encoder::written`].
    pub fn fields(buf: &'a mut [u8]) -> Encoder<'a> {
        Encoder { buf, at: 0, overflow: false }
    }

    /// What [`Encoder::fields`] wrote; `None` if a field was refused.
    pub fn written(&self) -> Option<&[u8]> {
        (!self.overflow).then(|| &self.buf[..self.at])
    }

    fn put(&mut self, b: &[u8]) {
        if self.overflow || self.at + b.len() > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    fn tag(&mut self, tag: u32) {
        let mut d = [0u8; 10];
        let n = digits(u64::from(tag), &mut d);
        self.put(&d[10 - n..]);
        self.put(b"=");
    }

    /// A field with `value` as it is (it must hold no SOH: FIX has no
    /// escaping; a value with one is refused as an overflow would be).
    pub fn bytes(&mut self, tag: u32, value: &[u8]) -> &mut Self {
        if value.contains(&SOH) || value.is_empty() {
            self.overflow = true;
            return self;
        }
        self.tag(tag);
        self.put(value);
        self.put(&[SOH]);
        self
    }

    /// Fields already encoded (`tag=value<SOH>` runs, a stored body).
    pub fn raw(&mut self, fields: &[u8]) -> &mut Self {
        self.put(fields);
        self
    }

    /// A field with an unsigned integer value.
    pub fn uint(&mut self, tag: u32, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let n = digits(v, &mut d);
        self.bytes(tag, &d[20 - n..])
    }

    /// A field with a signed integer value.
    pub fn int(&mut self, tag: u32, v: i64) -> &mut Self {
        let mut d = [0u8; 21];
        let n = digits(v.unsigned_abs(), &mut d[1..]);
        let start = 21 - n;
        if v < 0 {
            d[start - 1] = b'-';
            return self.bytes(tag, &d[start - 1..]);
        }
        self.bytes(tag, &d[start..])
    }

    /// A price or quantity given in units of 10^-`scale` (a decimal point
    /// written where it belongs, trailing zeros of the fraction dropped); a
    /// scale above 19 is refused.
    pub fn decimal(&mut self, tag: u32, units: i64, scale: u32) -> &mut Self {
        // An i64 has 19 digits: a larger scale is a caller's mistake.
        if scale > 19 {
            self.overflow = true;
            return self;
        }
        let mut d = [0u8; 24];
        let mut n = 0;
        let mut v = units.unsigned_abs();
        let mut frac = scale;
        // The fraction's digits, least significant first, skipping zeros
        // at its end.
        let mut seen = false;
        while frac > 0 {
            let c = (v % 10) as u8;
            v /= 10;
            frac -= 1;
            if c != 0 || seen {
                seen = true;
                d[23 - n] = b'0' + c;
                n += 1;
            }
        }
        if seen {
            d[23 - n] = b'.';
            n += 1;
        }
        loop {
            d[23 - n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if units < 0 {
            d[23 - n] = b'-';
            n += 1;
        }
        self.bytes(tag, &d[24 - n..])
    }

    /// The whole message, framed (BeginString, BodyLength, CheckSum), as a
    /// slice of the buffer; `None` if it did not fit (or a value held SOH).
    pub fn finish(self) -> Option<&'a [u8]> {
        if self.overflow {
            return None;
        }
        let body_len = self.at - HEAD_ROOM;
        let mut d = [0u8; 20];
        let n = digits(body_len as u64, &mut d);
        let head_len = b"8=FIX.4.4\x019=".len() + n + 1;
        if head_len > HEAD_ROOM || self.at + 7 > self.buf.len() {
            return None;
        }
        let start = HEAD_ROOM - head_len;
        let mut w = start;
        for part in [&b"8=FIX.4.4\x019="[..], &d[20 - n..], &[SOH][..]] {
            self.buf[w..w + part.len()].copy_from_slice(part);
            w += part.len();
        }
        let sum = checksum(&self.buf[start..self.at]);
        let t = [b'1', b'0', b'=', b'0' + sum / 100, b'0' + sum / 10 % 10, b'0' + sum % 10, SOH];
        self.buf[self.at..self.at + 7].copy_from_slice(&t);
        let end = self.at + 7;
        Some(&self.buf[start..end])
    }
}

/// `v`'s decimal digits at the end of `out`; their count.
fn digits(mut v: u64, out: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        let i = out.len() - 1 - n;
        out[i] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            return n;
        }
    }
}
