//! The NIC's receive-side scaling, read with the `SIOCETHTOOL` ioctl (what
//! `ethtool -x` and `ethtool -n IF rx-flow-hash tcp4` print): the hash key,
//! the indirection table and the hash function (`ETHTOOL_GRSSH`), and the
//! header fields hashed for TCP over IPv4 (`ETHTOOL_GRXFH`).
//!
//! The ioctls fill plain buffers; [`decode_rxfh`] and [`check`] turn them
//! into an [`RssConfig`] or a specific refusal, and are tested on crafted
//! buffers (no device here has an RSS table: veth and virtio report
//! EOPNOTSUPP).

use std::io;

use super::cvt;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// Get the RSS hash key, indirection table and hash function.
const ETHTOOL_GRSSH: u32 = 0x46;
/// Get the header fields the RSS hash covers for a flow type.
const ETHTOOL_GRXFH: u32 = 0x29;
const TCP_V4_FLOW: u32 = 0x01;
/// `struct ethtool_rxfh` up to `rss_config[]`: cmd, rss_context,
/// indir_size, key_size (u32 each), hfunc, input_xfrm, rsvd8[2] (u8 each),
/// rsvd32 (u32).
const RXFH_HEAD: usize = 24;
/// `ETH_RSS_HASH_TOP`: Toeplitz.
pub const HASH_TOEPLITZ: u8 = 1 << 0;
const RXH_L2DA: u64 = 1 << 1;
const RXH_VLAN: u64 = 1 << 2;
const RXH_L3_PROTO: u64 = 1 << 3;
pub const RXH_IP_SRC: u64 = 1 << 4;
pub const RXH_IP_DST: u64 = 1 << 5;
pub const RXH_L4_B_0_1: u64 = 1 << 6;
pub const RXH_L4_B_2_3: u64 = 1 << 7;
/// The four-tuple: what [`crate::stack::rss::hash_v4_tcp`] hashes.
pub const FOUR_TUPLE: u64 = RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3;

/// A device's RSS configuration as the stack can use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    pub key: Vec<u8>,
    pub indirection: Vec<u32>,
}

/// What `ETHTOOL_GRSSH` returned, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rxfh {
    pub key: Vec<u8>,
    pub indirection: Vec<u32>,
    /// `ETH_RSS_HASH_*` bit of the hash function in use (0: not reported).
    pub hfunc: u8,
    /// `RXH_XFRM_*` bits: a transformation of the input (symmetric hashing).
    pub input_xfrm: u8,
}

/// `struct ifreq` with `ifr_data`: the interface name and a pointer to the
/// ethtool command's buffer (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Issue one ethtool command whose buffer is `buf` (its first u32 is the
/// command) on `iface`.
fn ethtool(iface: &str, buf: &mut [u32]) -> io::Result<()> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("--iface {iface:?}: not an interface name")));
    }
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: buf.as_mut_ptr().cast(), _pad: [0; 16] };
    for (d, &s) in req.name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    // SAFETY: a datagram socket is opened and closed below; no memory is shared.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `req` is a live ifreq whose data pointer is `buf`, which is
    // as long as the command's structure with the sizes it announces (the
    // kernel writes at most the sizes given in the buffer's header).
    let r = cvt(unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfreqData) });
    // SAFETY: `fd` is the socket opened above, closed once.
    unsafe { libc::close(fd) };
    r.map(|_| ())
}

/// Read the device's RSS key, indirection table and hash function
/// (`ETHTOOL_GRSSH`: once with sizes 0 to learn them, once to fill them).
pub fn rxfh(iface: &str) -> io::Result<Rxfh> {
    let words = RXFH_HEAD / 4;
    let mut head = vec![0u32; words];
    head[0] = ETHTOOL_GRSSH;
    ethtool(iface, &mut head).map_err(|e| explain(iface, "the RSS key and indirection table", e))?;
    let (indir, key) = (head[2] as usize, head[3] as usize);
    if indir == 0 || key == 0 || indir > 1 << 16 || key > 1 << 10 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "--iface {iface}: RSS indirection table of {indir} entries and key of {key} bytes: no table to use"
            ),
        ));
    }
    let mut buf = vec![0u32; words + indir + key.div_ceil(4)];
    buf[0] = ETHTOOL_GRSSH;
    buf[2] = indir as u32;
    buf[3] = key as u32;
    ethtool(iface, &mut buf).map_err(|e| explain(iface, "the RSS key and indirection table", e))?;
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    decode_rxfh(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("--iface {iface}: {e}")))
}

/// Decode a filled `struct ethtool_rxfh` (native byte order): the header,
/// then `indir_size` u32 queue numbers, then `key_size` key bytes.
pub fn decode_rxfh(b: &[u8]) -> Result<Rxfh, String> {
    let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    let (Some(indir), Some(key), true) = (u32_at(8), u32_at(12), b.len() >= RXFH_HEAD) else {
        return Err(format!("ethtool_rxfh of {} bytes: shorter than its {RXFH_HEAD}-byte header", b.len()));
    };
    let (indir, key) = (indir as usize, key as usize);
    let need = RXFH_HEAD + indir * 4 + key;
    if b.len() < need {
        return Err(format!(
            "ethtool_rxfh of {} bytes: its {indir}-entry table and {key}-byte key need {need}",
            b.len()
        ));
    }
    let indirection: Vec<u32> = (0..indir).filter_map(|i| u32_at(RXFH_HEAD + 4 * i)).collect();
    let key_at = RXFH_HEAD + 4 * indir;
    Ok(Rxfh { key: b[key_at..key_at + key].to_vec(), indirection, hfunc: b[16], input_xfrm: b[17] })
}

/// The header fields hashed for TCP over IPv4 (`RXH_*` bits), or why not known.
pub fn tcp4_fields(iface: &str) -> io::Result<u64> {
    // struct ethtool_rxnfc as first defined for GRXFH: cmd, flow_type, data (u64).
    let mut buf = [0u32; 4];
    buf[0] = ETHTOOL_GRXFH;
    buf[1] = TCP_V4_FLOW;
    ethtool(iface, &mut buf).map_err(|e| explain(iface, "the fields it hashes for tcp4", e))?;
    Ok(u64::from(buf[2]) | (u64::from(buf[3]) << 32))
}

/// Whether the stack can predict the queue of a TCP/IPv4 reply from this
/// configuration: Toeplitz, no input transformation, the four-tuple
/// (`fields`: `None` when the driver does not say; the four-tuple is then
/// assumed, as drivers default to it for TCP). The refusal says which.
pub fn check(iface: &str, r: Rxfh, fields: Option<u64>) -> Result<RssConfig, String> {
    if r.hfunc != HASH_TOEPLITZ {
        let name = match r.hfunc {
            0 => "not reported".to_string(),
            2 => "xor".to_string(),
            4 => "crc32".to_string(),
            h => format!("0x{h:x}"),
        };
        return Err(format!(
            "--iface {iface}: RSS hash function {name}, not Toeplitz: the queue of a reply cannot be computed"
        ));
    }
    if r.input_xfrm != 0 {
        return Err(format!(
            "--iface {iface}: RSS input transformation 0x{:x} (symmetric hashing): the queue of a reply cannot be computed",
            r.input_xfrm
        ));
    }
    if let Some(f) = fields {
        if f & FOUR_TUPLE != FOUR_TUPLE || f & (RXH_L2DA | RXH_VLAN | RXH_L3_PROTO) != 0 {
            return Err(format!(
                "--iface {iface}: RSS for tcp4 hashes fields 0x{f:x}, not the address and port four-tuple (0x{FOUR_TUPLE:x}){}",
                if f & (RXH_L4_B_0_1 | RXH_L4_B_2_3) == 0 { ": no local port can choose the queue" } else { "" }
            ));
        }
    }
    if let Some(q) = r.indirection.iter().find(|&&q| q > 4096) {
        return Err(format!("--iface {iface}: RSS indirection table names queue {q}"));
    }
    Ok(RssConfig { key: r.key, indirection: r.indirection })
}

/// The device's RSS configuration if the stack can compute with it, or why not.
pub fn rss_config(iface: &str) -> Result<RssConfig, String> {
    let r = rxfh(iface).map_err(|e| e.to_string())?;
    let fields = tcp4_fields(iface).ok();
    check(iface, r, fields)
}

fn explain(iface: &str, what: &str, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => "the driver does not report it (EOPNOTSUPP)".to_string(),
        Some(libc::ENODEV) => "no such interface".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("--iface {iface}: reading {what} (SIOCETHTOOL): {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filled ethtool_rxfh as a driver would leave it.
    fn filled(indir: &[u32], key: &[u8], hfunc: u8, xfrm: u8) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ETHTOOL_GRSSH, 0, indir.len() as u32, key.len() as u32] {
            b.extend(w.to_ne_bytes());
        }
        b.extend([hfunc, xfrm, 0, 0]);
        b.extend(0u32.to_ne_bytes());
        for q in indir {
            b.extend(q.to_ne_bytes());
        }
        b.extend(key);
        b
    }

    #[test]
    fn a_filled_table_decodes_and_toeplitz_on_the_four_tuple_is_usable() {
        let indir: Vec<u32> = (0..128).map(|i| i % 4).collect();
        let key: Vec<u8> = (0..40).collect();
        let r = decode_rxfh(&filled(&indir, &key, HASH_TOEPLITZ, 0)).unwrap();
        assert_eq!((r.indirection.clone(), r.key.clone(), r.hfunc, r.input_xfrm), (indir.clone(), key.clone(), 1, 0));
        let c = check("eth9", r.clone(), Some(FOUR_TUPLE)).unwrap();
        assert_eq!((c.key, c.indirection), (key.clone(), indir.clone()));
        // A driver that does not report its tcp4 fields: the four-tuple is assumed.
        assert!(check("eth9", r, None).is_ok());
    }

    #[test]
    fn short_buffers_and_unusable_configurations_are_refused_by_name() {
        let indir = [0u32, 1, 0, 1];
        let key = [7u8; 40];
        let full = filled(&indir, &key, HASH_TOEPLITZ, 0);
        let e = decode_rxfh(&full[..20]).unwrap_err();
        assert!(e.contains("shorter than its 24-byte header"), "{e}");
        let e = decode_rxfh(&full[..full.len() - 1]).unwrap_err();
        assert!(e.contains("4-entry table and 40-byte key need 80"), "{e}");
        let xor = decode_rxfh(&filled(&indir, &key, 2, 0)).unwrap();
        assert!(check("eth9", xor, None).unwrap_err().contains("hash function xor, not Toeplitz"));
        let none = decode_rxfh(&filled(&indir, &key, 0, 0)).unwrap();
        assert!(check("eth9", none, None).unwrap_err().contains("not reported"));
        let sym = decode_rxfh(&filled(&indir, &key, HASH_TOEPLITZ, 1)).unwrap();
        assert!(check("eth9", sym, None).unwrap_err().contains("symmetric hashing"));
        let two = decode_rxfh(&full).unwrap();
        let e = check("eth9", two.clone(), Some(RXH_IP_SRC | RXH_IP_DST)).unwrap_err();
        assert!(e.contains("no local port can choose the queue"), "{e}");
        let e = check("eth9", two, Some(FOUR_TUPLE | RXH_VLAN)).unwrap_err();
        assert!(e.contains("not the address and port four-tuple"), "{e}");
    }

    #[test]
    fn devices_without_rss_and_missing_devices_give_specific_errors() {
        // Loopback reports no RSS table: the driver has no get_rxfh.
        let e = rxfh("lo").unwrap_err();
        assert!(e.to_string().contains("--iface lo: reading the RSS key"), "{e}");
        assert!(e.to_string().contains("EOPNOTSUPP") || e.to_string().contains("no table"), "{e}");
        let e = rss_config("tg-no-such-if").unwrap_err();
        assert!(e.contains("no such interface"), "{e}");
        let e = rxfh("a-name-far-too-long-for-ifnamsiz").unwrap_err();
        assert!(e.to_string().contains("not an interface name"), "{e}");
    }
}
