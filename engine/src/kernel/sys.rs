//! System calls of the kernel port: the AF_PACKET socket and its options, and interface
//! queries (`SIOCGIF*` ioctls). Control path only; nothing here runs per packet except
//! [`kick`] (once per transmit burst).
//!
//! Rules:
//! - The socket is created with protocol 0, so it receives nothing until [`bind`] (after the
//!   rings exist) sets `ETH_P_ALL` and the interface: no frames of other interfaces slip in.
//! - Every `unsafe` block is an FFI call with pointers to locals of the right size; the
//!   kernel's return value is checked and turned into an `io::Error`.
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A non-blocking, close-on-exec `AF_PACKET`/`SOCK_RAW` socket bound to nothing yet.
/// Needs CAP_NET_RAW (EPERM otherwise).
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall, no pointers.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A UDP socket for interface ioctls (needs no privilege; works while the port is closed).
pub fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall, no pointers.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: BorrowedFd<'_>, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of size_of::<T>() bytes for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `setsockopt(SOL_PACKET, opt, int)`.
pub fn set_int(fd: BorrowedFd<'_>, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    setsockopt(fd, opt, &v)
}

/// `PACKET_RX_RING` / `PACKET_TX_RING` with a `tpacket_req3`.
pub fn set_ring(fd: BorrowedFd<'_>, opt: libc::c_int, req: &libc::tpacket_req3) -> io::Result<()> {
    setsockopt(fd, opt, req)
}

/// Promiscuous membership on `ifindex` (dropped by the kernel when the socket closes).
pub fn add_promisc(fd: BorrowedFd<'_>, ifindex: i32) -> io::Result<()> {
    let mr = libc::packet_mreq {
        mr_ifindex: ifindex,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    setsockopt(fd, libc::PACKET_ADD_MEMBERSHIP, &mr)
}

/// Binds to `ifindex`, all protocols (`ETH_P_ALL`).
pub fn bind(fd: BorrowedFd<'_>, ifindex: i32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a live sockaddr_ll and the length says exactly that.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `PACKET_STATISTICS` (TPACKET_V3 layout). Reading resets the kernel's counters.
pub fn stats(fd: BorrowedFd<'_>) -> io::Result<libc::tpacket_stats_v3> {
    let mut s = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `s` and `len` are live locals; the kernel writes at most `len` bytes.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut s as *mut libc::tpacket_stats_v3 as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(s)
}

/// Asks the kernel to send every frame marked `SEND_REQUEST` (one syscall per tx burst;
/// never blocks). Errors (ENOBUFS, ENETDOWN, ENXIO while the interface goes away) leave the
/// frames queued for the next kick; the caller counts them.
#[inline]
pub fn kick(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with no buffer; the kernel reads the tx ring it owns.
    check(unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) } as i32)
        .map(|_| ())
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= r.ifr_name.len() || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong, r: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `r` is a live, NUL-terminated ifreq; these SIOCGIF* requests read the name and
    // write only inside the ifreq.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, r as *mut libc::ifreq) }).map(|_| ())
}

/// Interface index of `name` (`ENODEV` when there is no such interface).
pub fn ifindex(fd: BorrowedFd<'_>, name: &str) -> io::Result<i32> {
    let mut r = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFINDEX, &mut r)?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_ifindex })
}

/// Interface flags (`IFF_UP`, `IFF_RUNNING`, ...).
pub fn ifflags(fd: BorrowedFd<'_>, name: &str) -> io::Result<i32> {
    let mut r = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFFLAGS, &mut r)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(i32::from(unsafe { r.ifr_ifru.ifru_flags }) & 0xffff)
}

/// Interface MTU.
pub fn mtu(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut r = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFMTU, &mut r)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_mtu }.max(0) as u32)
}

/// Hardware type (`ARPHRD_*`) and address of the interface.
pub fn hwaddr(fd: BorrowedFd<'_>, name: &str) -> io::Result<(u16, [u8; 6])> {
    let mut r = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFHWADDR, &mut r)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok((sa.sa_family, mac))
}
