//! The kernel's report of when the peer acknowledged what a TCP socket sent,
//! for the kernel backend's tracing (docs/ATTRIBUTION.md, the ACK stage).
//!
//! `SO_TIMESTAMPING` with `SOF_TIMESTAMPING_TX_ACK` makes the kernel queue,
//! on the socket's error queue, one report per `send` once the peer has
//! acknowledged that send's last byte. `OPT_ID` numbers the reports by byte
//! offset (the last byte's, counted from the first byte sent after the
//! option was set), `OPT_TSONLY` keeps the payload out of them, and
//! `OPT_STATS` attaches the connection's counters, among them its total
//! retransmissions, so the backend can say whether the ACK waited for one.
//! The reports are read with `recvmsg(MSG_ERRQUEUE)`; the kernel raises
//! EPOLLERR on the socket when one is queued.
//!
//! The values below are the Linux UAPI's (`linux/net_tstamp.h`,
//! `linux/errqueue.h`, `linux/tcp.h`); the libc crate does not export all
//! of them for Linux.

use std::io;
use std::os::fd::RawFd;

/// `SO_TIMESTAMPING` (`SO_TIMESTAMPING_OLD`: 64-bit time on 64-bit targets).
const SO_TIMESTAMPING: libc::c_int = 37;
/// The control message that carries the timestamps.
const SCM_TIMESTAMPING: libc::c_int = SO_TIMESTAMPING;
/// The control message that carries `OPT_STATS` (netlink attributes).
const SCM_TIMESTAMPING_OPT_STATS: libc::c_int = 54;
/// `ee_info` of an ACK report.
const SCM_TSTAMP_ACK: u32 = 2;
/// `TCP_NLA_TOTAL_RETRANS`: data segments retransmitted (u32).
const TCP_NLA_TOTAL_RETRANS: u16 = 5;
const TCP_NLA_DSACK_DUPS: u16 = 20;

const FLAGS: libc::c_uint = libc::SOF_TIMESTAMPING_TX_ACK
    | libc::SOF_TIMESTAMPING_SOFTWARE
    | libc::SOF_TIMESTAMPING_OPT_ID
    | libc::SOF_TIMESTAMPING_OPT_TSONLY;

/// One ACK report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Bytes acknowledged, modulo 2^32: the report's `OPT_ID` (the offset
    /// of the send's last byte, a u32 that wraps every 4 GiB) plus one.
    /// [`Ack::acked`] widens it.
    pub acked_low: u32,
    /// When the ACK was processed (CLOCK_REALTIME ns).
    pub at_realtime_ns: u64,
    /// The connection's retransmissions so far (with `OPT_STATS`).
    pub total_retrans: Option<u32>,
    /// D-SACK blocks the connection received so far: duplicates the peer
    /// reported, each a copy it did not need (with `OPT_STATS`, Linux 4.19).
    pub dsack_dups: Option<u32>,
}

/// Ask for ACK reports on the established TCP socket `fd`. Returns whether
/// the retransmission counter comes with them (`OPT_STATS`, Linux 4.10);
/// an error if the kernel refuses the reports altogether.
pub fn enable(fd: RawFd) -> io::Result<bool> {
    if set(fd, FLAGS | libc::SOF_TIMESTAMPING_OPT_STATS).is_ok() {
        return Ok(true);
    }
    set(fd, FLAGS).map(|()| false)
}

fn set(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    let v = flags as libc::c_int;
    // SAFETY: setsockopt on a socket the caller owns, with a pointer to a
    // live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_TIMESTAMPING,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read every report queued on `fd`'s error queue, handing each ACK report
/// to `f`. Returns how many messages the error queue held (ACK reports or
/// not): 0 means the EPOLLERR that led here was a real socket error.
pub fn drain(fd: RawFd, mut f: impl FnMut(Ack)) -> io::Result<usize> {
    let mut n = 0;
    // Room for the timestamps (16 + 48), the extended error (16 + 16 + the
    // offender's address 16) and the TCP stats (a few hundred bytes).
    let mut control = [0u64; 128];
    loop {
        // SAFETY: msghdr is plain data; all-zero is its empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg has no iovec (OPT_TSONLY reports carry no payload)
        // and points at `control`, live and writable for its length.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(n);
            }
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        n += 1;
        if let Some(a) = parse(&msg) {
            f(a);
        }
    }
}

/// One error-queue message: an ACK report, or `None`.
fn parse(msg: &libc::msghdr) -> Option<Ack> {
    let mut ts = None;
    let mut id = None;
    let (mut retrans, mut dsack) = (None, None);
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; every payload is read unaligned and only
    // within the length its header gives.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let len = ((*c).cmsg_len as usize).saturating_sub(data.offset_from(c.cast::<u8>()) as usize);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, SCM_TIMESTAMPING) if len >= std::mem::size_of::<libc::timespec>() => {
                    // scm_timestamping: ts[0] is the software timestamp.
                    let t: libc::timespec = std::ptr::read_unaligned(data.cast());
                    ts = Some((t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64));
                }
                (libc::SOL_IP, libc::IP_RECVERR) | (libc::SOL_IPV6, libc::IPV6_RECVERR)
                    if len >= std::mem::size_of::<libc::sock_extended_err>() =>
                {
                    let e: libc::sock_extended_err = std::ptr::read_unaligned(data.cast());
                    if e.ee_errno == libc::ENOMSG as u32
                        && e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                        && e.ee_info == SCM_TSTAMP_ACK
                    {
                        id = Some(e.ee_data);
                    }
                }
                (libc::SOL_SOCKET, SCM_TIMESTAMPING_OPT_STATS) => {
                    let b = std::slice::from_raw_parts(data, len);
                    retrans = opt_stat(b, TCP_NLA_TOTAL_RETRANS);
                    dsack = opt_stat(b, TCP_NLA_DSACK_DUPS);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    let (ts, id) = (ts?, id?);
    Some(Ack { acked_low: id.wrapping_add(1), at_realtime_ns: ts, total_retrans: retrans, dsack_dups: dsack })
}

impl Ack {
    /// Bytes acknowledged in all, given `last`, the connection's count at
    /// its previous report: reports come in order and never more than 4 GiB
    /// apart (a send buffer is far smaller), so this one is `last` plus how
    /// far its low 32 bits moved on, across any number of wraps.
    pub fn acked(&self, last: u64) -> u64 {
        last + u64::from(self.acked_low.wrapping_sub(last as u32))
    }
}

/// The u32 attribute `want` (`TCP_NLA_*`) from `OPT_STATS`' netlink
/// attributes (each: u16 length including its 4-byte header, u16 type,
/// value, padded to 4).
fn opt_stat(mut b: &[u8], want: u16) -> Option<u32> {
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        if ty == want && len >= 8 {
            return Some(u32::from_ne_bytes([b[4], b[5], b[6], b[7]]));
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn acked_counts_the_wraps_of_the_32_bit_offset() {
        let report =
            |acked: u64| Ack { acked_low: acked as u32, at_realtime_ns: 1, total_retrans: None, dsack_dups: None };
        let mut last = 0u64;
        // 1 MiB sends from just below 4 GiB to past 12 GiB: every report
        // moves on by its send, never back.
        for k in 0..9000u64 {
            let truth = (1 << 32) - 5_000_000 + k * (1 << 20);
            let got = report(truth).acked(last);
            assert_eq!(got, truth, "report {k}");
            last = got;
        }
        assert!(last > 2 * (1u64 << 32), "{last}");
        // A repeated report counts nothing more.
        assert_eq!(report(last).acked(last), last);
    }

    #[test]
    fn netlink_attributes_give_the_retransmission_and_dsack_counts() {
        let attr = |ty: u16, v: &[u8]| {
            let mut a = Vec::new();
            a.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            a.extend_from_slice(&ty.to_ne_bytes());
            a.extend_from_slice(v);
            while a.len() % 4 != 0 {
                a.push(0);
            }
            a
        };
        let mut b = attr(1, &7u64.to_ne_bytes());
        b.extend(attr(3, &[1, 2, 3])); // odd length: padded
        b.extend(attr(TCP_NLA_TOTAL_RETRANS, &42u32.to_ne_bytes()));
        b.extend(attr(TCP_NLA_DSACK_DUPS, &3u32.to_ne_bytes()));
        let total_retrans = |b: &[u8]| opt_stat(b, TCP_NLA_TOTAL_RETRANS);
        assert_eq!(total_retrans(&b), Some(42));
        assert_eq!(opt_stat(&b, TCP_NLA_DSACK_DUPS), Some(3));
        assert_eq!(total_retrans(&b[..8]), None);
        // A crafted length is an absence, not a panic.
        let mut bad = b.clone();
        bad[0] = 0xff;
        assert_eq!(total_retrans(&bad), None);
        assert_eq!(total_retrans(&[2, 0, 5, 0]), None);
    }

    #[test]
    fn loopback_sends_are_reported_when_acknowledged() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let stats = enable(s.as_raw_fd()).unwrap();
        let before = crate::clock::realtime_ns();
        s.write_all(b"hello").unwrap();
        s.write_all(b", world").unwrap();
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).unwrap();
        let mut acks = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while acks.len() < 2 && std::time::Instant::now() < deadline {
            drain(s.as_raw_fd(), |a| acks.push(a)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // One report per send, numbered by the offset of its last byte.
        assert_eq!(acks.iter().map(|a| a.acked_low).collect::<Vec<_>>(), vec![5, 12], "{acks:?}");
        let after = crate::clock::realtime_ns();
        assert!(acks.iter().all(|a| a.at_realtime_ns >= before && a.at_realtime_ns <= after), "{acks:?}");
        if stats {
            assert_eq!(acks[1].total_retrans, Some(0), "{acks:?}");
            assert_eq!(acks[1].dsack_dups, Some(0), "{acks:?}");
        }
        // Nothing left: a drain finds an empty queue.
        assert_eq!(drain(s.as_raw_fd(), |_| panic!("a report twice")).unwrap(), 0);
    }
}
