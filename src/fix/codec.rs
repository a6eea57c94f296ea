//! Reading: one message's frame, then its fields, in place.

use super::{checksum, BEGIN_STRING, SOH};

/// The longest message accepted (its whole frame). A BodyLength that would
/// make one longer is an error at once, before the bytes arrive, so a
/// stranger cannot make the session buffer wait for megabytes.
pub const MAX_MESSAGE: usize = 8192;

/// Why the bytes at the start of a buffer are not a FIX 4.4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The first field is not `8=FIX.4.4`.
    BeginString,
    /// The second field is not `9=` followed by digits.
    BodyLength,
    /// BodyLength makes the message longer than [`MAX_MESSAGE`].
    TooLong,
    /// The field after the body is not `10=` and three digits.
    CheckSumField,
    /// CheckSum says `got`, the bytes sum to `expected`.
    CheckSum { expected: u8, got: u16 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BeginString => write!(f, "the first field is not 8=FIX.4.4"),
            FrameError::BodyLength => write!(f, "the second field is not BodyLength (9) with digits"),
            FrameError::TooLong => write!(f, "BodyLength makes the message longer than {MAX_MESSAGE} bytes"),
            FrameError::CheckSumField => write!(f, "the body is not followed by CheckSum (10) with three digits"),
            FrameError::CheckSum { expected, got } => {
                write!(f, "CheckSum {got:03} does not match the bytes' {expected:03}")
            }
        }
    }
}

/// The length of the whole message at the start of `buf`, once all of it
/// is there (`Ok(None)`: not yet; more bytes may make it whole), or why
/// it is not a message. Checks BeginString, BodyLength and CheckSum; the
/// fields between are read by [`Fields`].
pub fn frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let head: &[u8] = b"8=FIX.4.4\x01";
    let have = buf.len().min(head.len());
    if buf[..have] != head[..have] {
        return Err(FrameError::BeginString);
    }
    if buf.len() < head.len() {
        return Ok(None);
    }
    debug_assert_eq!(&head[2..head.len() - 1], BEGIN_STRING);
    // 9=<digits><SOH>
    let rest = &buf[head.len()..];
    let have = rest.len().min(2);
    if rest[..have] != b"9="[..have] {
        return Err(FrameError::BodyLength);
    }
    let digits = rest.get(2..).unwrap_or(&[]);
    let mut body_len = 0usize;
    let mut n = 0;
    loop {
        let Some(&c) = digits.get(n) else { return Ok(None) };
        match c {
            b'0'..=b'9' if n < 6 => body_len = body_len * 10 + usize::from(c - b'0'),
            SOH if n > 0 => break,
            _ => return Err(FrameError::BodyLength),
        }
        n += 1;
    }
    let body_at = head.len() + 2 + n + 1;
    let trailer_at = body_at + body_len;
    let total = trailer_at + 7;
    if total > MAX_MESSAGE {
        return Err(FrameError::TooLong);
    }
    if buf.len() < total {
        return Ok(None);
    }
    // BodyLength counts up to and including the body's last SOH.
    if body_len > 0 && buf[trailer_at - 1] != SOH {
        return Err(FrameError::CheckSumField);
    }
    let t = &buf[trailer_at..total];
    if &t[..3] != b"10=" || !t[3..6].iter().all(u8::is_ascii_digit) || t[6] != SOH {
        return Err(FrameError::CheckSumField);
    }
    let got = u32::from(t[3] - b'0') * 100 + u32::from(t[4] - b'0') * 10 + u32::from(t[5] - b'0');
    let expected = checksum(&buf[..trailer_at]);
    if got != u32::from(expected) {
        return Err(FrameError::CheckSum { expected, got: got as u16 });
    }
    Ok(Some(total))
}

/// One field: its tag and its value, in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub tag: u32,
    pub value: &'a [u8],
}

/// Why a field is malformed; `at` is its offset in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The tag is not a number from 1 (or has no `=` after it).
    Tag { at: usize },
    /// The value is empty.
    Empty { tag: u32 },
    /// The field has no SOH after it.
    Unterminated { tag: u32 },
}

/// The fields of a message (or of any run of `tag=value<SOH>` bytes), in
/// order, read in place. Stops at the first malformed field.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, at: 0, failed: false }
    }

    /// Where the next field starts.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, FieldError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.buf.len() {
            return None;
        }
        let start = self.at;
        let rest = &self.buf[start..];
        let mut tag = 0u32;
        let mut i = 0;
        while let Some(&c) = rest.get(i) {
            if !c.is_ascii_digit() || i >= 9 {
                break;
            }
            tag = tag * 10 + u32::from(c - b'0');
            i += 1;
        }
        if i == 0 || tag == 0 || rest.get(i) != Some(&b'=') || (i > 1 && rest[0] == b'0') {
            self.failed = true;
            return Some(Err(FieldError::Tag { at: start }));
        }
        let value = &rest[i + 1..];
        let Some(end) = value.iter().position(|&c| c == SOH) else {
            self.failed = true;
            return Some(Err(FieldError::Unterminated { tag }));
        };
        if end == 0 {
            self.failed = true;
            return Some(Err(FieldError::Empty { tag }));
        }
        self.at = start + i + 1 + end + 1;
        Some(Ok(Field { tag, value: &value[..end] }))
    }
}
