//! The Internet checksum (RFC 1071), shared by the RX verifier and the
//! udp-echo floor.

/// Add `data` as big-endian 16-bit words to `acc` (an odd last byte is padded).
pub fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to write into a header whose checksum field was zero.
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Does a sum taken over data that includes its checksum field verify?
pub fn verifies(acc: u32) -> bool {
    fold(acc) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(&data, 0)), 0xddf2);
        assert_eq!(finish(sum16(&data, 0)), !0xddf2);
        let mut with = data.to_vec();
        with.extend_from_slice(&finish(sum16(&data, 0)).to_be_bytes());
        assert!(verifies(sum16(&with, 0)));
        assert_eq!(sum16(&[0xab], 0), 0xab00, "odd byte padded");
    }
}
