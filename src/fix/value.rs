//! FIX field values read and written without allocation: unsigned
//! integers, decimals in fixed units, ClOrdIDs packed into a u64, and
//! UTCTimestamps.

/// An unsigned integer of 1-18 digits (no sign, no leading `+`).
pub fn uint(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, &c| a * 10 + u64::from(c - b'0')))
}

/// A decimal (`[-]digits[.digits]`) in units of 10^-`scale`: more
/// fraction digits than `scale` are refused unless they are zeros.
pub fn decimal(v: &[u8], scale: u32) -> Option<i64> {
    let (neg, v) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &v[..0]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) || int.len() > 18 {
        return None;
    }
    let mut units: i64 = 0;
    for &c in int {
        units = units.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    for i in 0..scale as usize {
        let d = frac.get(i).map_or(0, |&c| i64::from(c - b'0'));
        units = units.checked_mul(10)?.checked_add(d)?;
    }
    if frac.iter().skip(scale as usize).any(|&c| c != b'0') {
        return None;
    }
    Some(if neg { -units } else { units })
}

/// Longest ClOrdID written by [`write_id`]: 19 digits.
pub const ID_LEN: usize = 20;

/// A ClOrdID as the gateway keeps it (a u64): a decimal number without a
/// leading zero, below 2^63, is itself with the top bit set; any other
/// value of 1-8 printable characters (no space) is its bytes, big-endian
/// (top bit clear, as ASCII is). Others are refused.
pub fn pack_id(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    if v[0] != b'0' && v.len() <= 18 && v.iter().all(u8::is_ascii_digit) {
        return uint(v).map(|n| n | 1 << 63);
    }
    if v.len() > 8 || !v.iter().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    Some(v.iter().fold(0u64, |a, &c| a << 8 | u64::from(c)))
}

/// `v` in decimal, at the end of `out`.
pub fn digits(mut v: u64, out: &mut [u8; ID_LEN]) -> &[u8] {
    let mut i = ID_LEN;
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &out[i..];
        }
    }
}

/// The ClOrdID that [`pack_id`] made `id` from.
pub fn write_id(id: u64, out: &mut [u8; ID_LEN]) -> &[u8] {
    if id >> 63 == 1 {
        return digits(id & !(1 << 63), out);
    }
    let b = id.to_be_bytes();
    let skip = b.iter().take_while(|&&c| c == 0).count();
    out[..8 - skip].copy_from_slice(&b[skip..]);
    &out[..8 - skip]
}

/// Length of a UTCTimestamp with milliseconds, `YYYYMMDD-HH:MM:SS.sss`.
pub const TIMESTAMP_LEN: usize = 21;

/// `ns` since the epoch as a UTCTimestamp with milliseconds.
pub fn timestamp(ns: u64, out: &mut [u8; TIMESTAMP_LEN]) -> &[u8] {
    let ms = ns / 1_000_000;
    let secs = ms / 1000;
    let (y, mo, d) = civil(secs / 86_400);
    let t = secs % 86_400;
    let mut put = |at: usize, v: u64, n: usize| {
        let mut v = v;
        for i in (0..n).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y, 4);
    put(4, mo, 2);
    put(6, d, 2);
    put(9, t / 3600, 2);
    put(12, t / 60 % 60, 2);
    put(15, t % 60, 2);
    put(18, ms % 1000, 3);
    out[8] = b'-';
    out[11] = b':';
    out[14] = b':';
    out[17] = b'.';
    &out[..]
}

/// Is `v` a UTCTimestamp (`YYYYMMDD-HH:MM:SS`, optionally `.sss`, or up to
/// nanoseconds)? The fields' ranges are checked, not the calendar.
pub fn is_timestamp(v: &[u8]) -> bool {
    let digits = |r: std::ops::Range<usize>| v.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let base = v.len() >= 17
        && digits(0..8)
        && v[8] == b'-'
        && digits(9..11)
        && v[11] == b':'
        && digits(12..14)
        && v[14] == b':'
        && digits(15..17);
    base && (v.len() == 17 || (v[17] == b'.' && v.len() > 18 && v.len() <= 27 && digits(18..v.len())))
}

/// Days since 1970-01-01 as (year, month, day), proleptic Gregorian.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as u64, m as u64, d as u64)
}
