//! One framed message's fields, indexed where they lie: MsgType must be the
//! third field, a field is found by its tag, and a tag that appears again
//! (a repeating group, which this gateway does not take) is named. No allocation: the index is a
//! fixed array on the caller's stack.

use super::{FieldError, Fields};

/// Fields a message may carry (header, body and trailer together).
pub const MAX_FIELDS: usize = 64;

/// Why a framed message's fields cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgError {
    /// A field is malformed (see [`FieldError`]).
    Field(FieldError),
    /// The third field is not MsgType (35).
    MsgTypeNotThird,
    /// More than [`MAX_FIELDS`] fields.
    TooManyFields,
}

/// The fields of one whole message (as [`super::frame`] delimits it).
pub struct Msg<'a> {
    buf: &'a [u8],
    at: [(u32, u16, u16); MAX_FIELDS],
    n: usize,
    repeated: Option<u32>,
}

impl<'a> Msg<'a> {
    /// Index the fields of `frame`, a whole message whose BeginString,
    /// BodyLength and CheckSum [`super::frame`] has checked.
    pub fn parse(frame: &'a [u8]) -> Result<Msg<'a>, MsgError> {
        let mut m = Msg { buf: frame, at: [(0, 0, 0); MAX_FIELDS], n: 0, repeated: None };
        let base = frame.as_ptr() as usize;
        for (i, f) in Fields::new(frame).enumerate() {
            let f = f.map_err(MsgError::Field)?;
            if i == 2 && f.tag != super::tag::MSG_TYPE {
                return Err(MsgError::MsgTypeNotThird);
            }
            if m.get(f.tag).is_some() {
                // The first one counts; the message is to be refused.
                m.repeated.get_or_insert(f.tag);
                continue;
            }
            if m.n == MAX_FIELDS {
                return Err(MsgError::TooManyFields);
            }
            // A frame is at most MAX_MESSAGE (8 KiB) long: offsets fit u16.
            let off = f.value.as_ptr() as usize - base;
            m.at[m.n] = (f.tag, off as u16, f.value.len() as u16);
            m.n += 1;
        }
        if m.n < 3 {
            return Err(MsgError::MsgTypeNotThird);
        }
        Ok(m)
    }

    /// The value of `tag`, if the message has it.
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        self.at[..self.n]
            .iter()
            .find(|(t, _, _)| *t == tag)
            .map(|&(_, off, len)| &self.buf[usize::from(off)..usize::from(off) + usize::from(len)])
    }

    /// The first tag that appears more than once (a repeating group, which
    /// this gateway does not take), if any.
    pub fn repeated(&self) -> Option<u32> {
        self.repeated
    }

    /// MsgType (35).
    pub fn msg_type(&self) -> &'a [u8] {
        let (_, off, len) = self.at[2];
        &self.buf[usize::from(off)..usize::from(off) + usize::from(len)]
    }

    /// The tags, in order.
    pub fn tags(&self) -> impl Iterator<Item = u32> + '_ {
        self.at[..self.n].iter().map(|f| f.0)
    }
}
