//! Kernel receive timestamps for the kernel backend's tracing: the time the
//! kernel received the skb the data came in (SO_TIMESTAMPNS, taken in
//! `netif_receive_skb`, CLOCK_REALTIME), read with `recvmsg`. Only used when
//! sampling is on; the plain `read` path is unchanged otherwise.
//!
//! For TCP the kernel reports the timestamp of the last skb the read
//! consumed, so several messages read at once share it.

use std::io;
use std::os::fd::RawFd;

/// Ask the kernel to timestamp what `fd` receives.
pub fn enable(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int
    // and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recv` into `buf`, returning the bytes read and the kernel's receive
/// timestamp in CLOCK_REALTIME nanoseconds (0 if none came with them).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // Room for SCM_TIMESTAMPNS (16 + 16 bytes) and, on a socket that also
    // asked for ACK reports (`txack`), SCM_TIMESTAMPING (16 + 48), u64-aligned.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at one iovec over `buf` and at `control`, both live
    // and writable for the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = 0;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; the timestamp is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ts = (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// Read what is waiting on `fd` (waiting up to 5 s for it).
    fn read_some(fd: RawFd, buf: &mut [u8]) -> (usize, u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match recv(fd, buf) {
                Ok(r) => return r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn loopback_data_carries_a_recent_timestamp() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        enable(s.as_raw_fd()).unwrap();
        // The kernel turns receive timestamps on through deferred work, so
        // the first segments after enabling may carry none (the backend
        // then falls back to the poll time); within a few tries they must.
        for _ in 0..50 {
            let before = crate::clock::realtime_ns();
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 16];
            let (n, ts) = read_some(s.as_raw_fd(), &mut buf);
            assert_eq!(&buf[..n], b"hello");
            if ts != 0 {
                let after = crate::clock::realtime_ns();
                assert!(ts >= before && ts <= after, "{before} <= {ts} <= {after}");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no receive timestamp in 50 tries");
    }
}
