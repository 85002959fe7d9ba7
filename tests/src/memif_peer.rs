//! A raw memif **client** for hostile-peer tests, written independently of the engine's
//! `memif::wire` (so it is an oracle, not a mirror): every message is hand-encoded from the
//! layouts in DPDK `drivers/net/memif/memif.h` (memif 2.0, 128-byte packed frames, `u16 type`
//! then the union at byte 2).
//!
//! Shared memory is a memfd written with `pwrite` (no mapping, no unsafe): the peer maps the
//! same pages, so descriptor and head writes through the fd are what it sees.
//!
//! Region layout used here (one region, index 0): C2S ring at 0, S2C ring at [`S2C_RING_OFF`],
//! each `128 + 16 << log2` bytes; buffers from [`BUF_OFF`], [`BUF_SIZE`] each, `2 << log2` of
//! them (first the C2S ring's, then the S2C ring's).
use nix::sys::eventfd::EventFd;
use nix::sys::socket::{
    connect, recv, sendmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessage, MsgFlags,
    SockFlag, SockType, UnixAddr,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub const MSG_SIZE: usize = 128;
pub const T_ACK: u16 = 1;
pub const T_HELLO: u16 = 2;
pub const T_INIT: u16 = 3;
pub const T_ADD_REGION: u16 = 4;
pub const T_ADD_RING: u16 = 5;
pub const T_CONNECT: u16 = 6;
pub const T_CONNECTED: u16 = 7;
pub const T_DISCONNECT: u16 = 8;
pub const VERSION: u16 = 0x0200;
pub const COOKIE: u32 = 0x3E31F20;
/// ADD_RING flags bit0: the ring carries client → server traffic (memif.h `FLAG_S2M`/`C2S`).
pub const RING_FLAG_C2S: u16 = 1;
pub const LOG2: u8 = 4;
pub const SLOTS: u32 = 1 << LOG2;
pub const RING_BYTES: u64 = 128 + 16 * SLOTS as u64;
pub const S2C_RING_OFF: u64 = 512;
pub const BUF_OFF: u64 = 1024;
pub const BUF_SIZE: u32 = 2048;
pub const REGION_SIZE: u64 = BUF_OFF + 2 * SLOTS as u64 * BUF_SIZE as u64;
const _: () = assert!(RING_BYTES <= S2C_RING_OFF && S2C_RING_OFF + RING_BYTES <= BUF_OFF);

/// An empty 128-byte message of type `t`.
pub fn msg(t: u16) -> [u8; MSG_SIZE] {
    let mut m = [0u8; MSG_SIZE];
    m[0..2].copy_from_slice(&t.to_le_bytes());
    m
}

pub fn init_msg(id: u32, secret: &str, name: &str) -> [u8; MSG_SIZE] {
    let mut m = msg(T_INIT);
    m[2..4].copy_from_slice(&VERSION.to_le_bytes());
    m[4..8].copy_from_slice(&id.to_le_bytes());
    m[8] = 0; // ethernet
    let s = secret.as_bytes();
    m[9..9 + s.len().min(24)].copy_from_slice(&s[..s.len().min(24)]);
    let n = name.as_bytes();
    m[33..33 + n.len().min(32)].copy_from_slice(&n[..n.len().min(32)]);
    m
}

pub fn add_region_msg(index: u16, size: u64) -> [u8; MSG_SIZE] {
    let mut m = msg(T_ADD_REGION);
    m[2..4].copy_from_slice(&index.to_le_bytes());
    m[4..12].copy_from_slice(&size.to_le_bytes());
    m
}

pub fn add_ring_msg(flags: u16, index: u16, region: u16, offset: u32, log2: u8) -> [u8; MSG_SIZE] {
    let mut m = msg(T_ADD_RING);
    m[2..4].copy_from_slice(&flags.to_le_bytes());
    m[4..6].copy_from_slice(&index.to_le_bytes());
    m[6..8].copy_from_slice(&region.to_le_bytes());
    m[8..12].copy_from_slice(&offset.to_le_bytes());
    m[12] = log2;
    m[13..15].copy_from_slice(&0u16.to_le_bytes());
    m
}

pub fn connect_msg(name: &str) -> [u8; MSG_SIZE] {
    let mut m = msg(T_CONNECT);
    let n = name.as_bytes();
    m[2..2 + n.len().min(32)].copy_from_slice(&n[..n.len().min(32)]);
    m
}

/// Type of a received message (0 when too short).
pub fn msg_type(m: &[u8]) -> u16 {
    if m.len() < 2 {
        0
    } else {
        u16::from_le_bytes([m[0], m[1]])
    }
}

/// Reason string of a DISCONNECT message.
pub fn disconnect_reason(m: &[u8]) -> String {
    let s = m.get(6..).unwrap_or_default();
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// One raw memif control connection (client side).
pub struct RawPeer {
    sock: OwnedFd,
    pub region: Option<File>,
    events: Vec<EventFd>,
}

impl RawPeer {
    /// Connects to a memif server socket (filesystem path) with a 3 s receive timeout.
    pub fn connect(path: &Path) -> Result<RawPeer, String> {
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        let addr = UnixAddr::new(path).map_err(|e| format!("address {}: {e}", path.display()))?;
        connect(sock.as_raw_fd(), &addr).map_err(|e| format!("connect {}: {e}", path.display()))?;
        setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::milliseconds(3000))
            .map_err(|e| e.to_string())?;
        Ok(RawPeer {
            sock,
            region: None,
            events: Vec::new(),
        })
    }

    /// Sends raw bytes (any length) with optional fds.
    pub fn send_raw(&self, bytes: &[u8], fds: &[i32]) -> Result<(), String> {
        let iov = [IoSlice::new(bytes)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let c: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        sendmsg::<UnixAddr>(self.sock.as_raw_fd(), &iov, c, MsgFlags::MSG_NOSIGNAL, None)
            .map(|_| ())
            .map_err(|e| format!("sendmsg: {e}"))
    }

    /// Receives one message; `Ok(None)` on EOF (the server closed).
    pub fn recv(&self) -> Result<Option<Vec<u8>>, String> {
        let mut buf = [0u8; 256];
        match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(buf[..n].to_vec())),
            Err(nix::errno::Errno::ECONNRESET) => Ok(None),
            Err(e) => Err(format!("recv: {e}")),
        }
    }

    /// Receives one message and checks its type.
    pub fn expect(&self, t: u16) -> Result<Vec<u8>, String> {
        match self.recv()? {
            Some(m) if msg_type(&m) == t => Ok(m),
            Some(m) if msg_type(&m) == T_DISCONNECT => Err(format!(
                "expected type {t}, got DISCONNECT: {}",
                disconnect_reason(&m)
            )),
            Some(m) => Err(format!("expected type {t}, got type {}", msg_type(&m))),
            None => Err(format!("expected type {t}, got EOF")),
        }
    }

    /// Reads until EOF; returns the DISCONNECT reason if one came. Err on timeout (the server
    /// kept the connection open).
    pub fn expect_closed(&self) -> Result<Option<String>, String> {
        let mut reason = None;
        for _ in 0..8 {
            match self.recv()? {
                None => return Ok(reason),
                Some(m) if msg_type(&m) == T_DISCONNECT => reason = Some(disconnect_reason(&m)),
                Some(_) => {}
            }
        }
        Err("server kept sending without closing".into())
    }

    /// Creates the memfd region with both rings initialised (cookie, descriptors pointing at
    /// their buffers, head = tail = 0; the S2C ring fully refilled, MASK_INT set on it).
    pub fn make_region(&mut self) -> Result<i32, String> {
        let fd = nix::sys::memfd::memfd_create(
            c"uswitch-e2e-hostile",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map_err(|e| format!("memfd_create: {e}"))?;
        let f = File::from(fd);
        f.set_len(REGION_SIZE).map_err(|e| e.to_string())?;
        let raw = f.as_raw_fd();
        self.region = Some(f);
        for (ring, off) in [(0u32, 0u64), (1, S2C_RING_OFF)] {
            let mut hdr = [0u8; 128];
            hdr[0..4].copy_from_slice(&COOKIE.to_le_bytes());
            if ring == 1 {
                hdr[4..6].copy_from_slice(&1u16.to_le_bytes()); // MASK_INT: we poll
                hdr[6..8].copy_from_slice(&(SLOTS as u16).to_le_bytes()); // head: all slots free
            }
            self.write_region(off, &hdr)?;
            for i in 0..SLOTS {
                let buf = BUF_OFF + ((ring * SLOTS + i) as u64) * BUF_SIZE as u64;
                self.write_desc_at(off, i, 0, 0, BUF_SIZE, buf as u32)?;
            }
        }
        Ok(raw)
    }

    fn file(&self) -> Result<&File, String> {
        self.region.as_ref().ok_or_else(|| "no region".to_string())
    }

    fn write_desc_at(
        &self,
        ring_off: u64,
        slot: u32,
        flags: u16,
        region: u16,
        len: u32,
        off: u32,
    ) -> Result<(), String> {
        let mut d = [0u8; 16];
        d[0..2].copy_from_slice(&flags.to_le_bytes());
        d[2..4].copy_from_slice(&region.to_le_bytes());
        d[4..8].copy_from_slice(&len.to_le_bytes());
        d[8..12].copy_from_slice(&off.to_le_bytes());
        let at = ring_off + 128 + 16 * (slot % SLOTS) as u64;
        self.file()?.write_all_at(&d, at).map_err(|e| e.to_string())
    }

    /// Writes C2S descriptor `slot` (mod ring size).
    pub fn write_c2s_desc(
        &self,
        slot: u32,
        flags: u16,
        region: u16,
        len: u32,
        off: u32,
    ) -> Result<(), String> {
        self.write_desc_at(0, slot, flags, region, len, off)
    }

    /// Writes bytes into the region (e.g. a frame into a buffer).
    pub fn write_region(&self, off: u64, bytes: &[u8]) -> Result<(), String> {
        self.file()?
            .write_all_at(bytes, off)
            .map_err(|e| e.to_string())
    }

    /// Offset of the C2S ring's buffer for `slot`.
    pub fn c2s_buf(slot: u32) -> u64 {
        BUF_OFF + (slot % SLOTS) as u64 * BUF_SIZE as u64
    }

    pub fn set_c2s_head(&self, head: u16) -> Result<(), String> {
        self.write_region(6, &head.to_le_bytes())
    }

    pub fn c2s_tail(&self) -> Result<u16, String> {
        let mut b = [0u8; 2];
        self.file()?
            .read_exact_at(&mut b, 64)
            .map_err(|e| e.to_string())?;
        Ok(u16::from_le_bytes(b))
    }

    /// A fresh eventfd for a ring (kept open by the peer).
    pub fn eventfd(&mut self) -> Result<i32, String> {
        let e = EventFd::new().map_err(|e| format!("eventfd: {e}"))?;
        let raw = e.as_raw_fd();
        self.events.push(e);
        Ok(raw)
    }

    /// Full valid handshake with one queue pair: HELLO, INIT, ADD_REGION, 2×ADD_RING, CONNECT.
    pub fn handshake(&mut self, id: u32, name: &str) -> Result<(), String> {
        self.expect(T_HELLO)?;
        self.send_raw(&init_msg(id, "", name), &[])?;
        self.expect(T_ACK)?;
        let fd = self.make_region()?;
        self.send_raw(&add_region_msg(0, REGION_SIZE), &[fd])?;
        self.expect(T_ACK)?;
        let e0 = self.eventfd()?;
        self.send_raw(&add_ring_msg(RING_FLAG_C2S, 0, 0, 0, LOG2), &[e0])?;
        self.expect(T_ACK)?;
        let e1 = self.eventfd()?;
        self.send_raw(&add_ring_msg(0, 0, 0, S2C_RING_OFF as u32, LOG2), &[e1])?;
        self.expect(T_ACK)?;
        self.send_raw(&connect_msg(name), &[])?;
        self.expect(T_CONNECTED)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_memif_h_offsets() {
        let m = init_msg(7, "s", "n");
        assert_eq!(&m[0..2], &[3, 0]);
        assert_eq!(&m[2..4], &[0x00, 0x02]);
        assert_eq!(&m[4..8], &[7, 0, 0, 0]);
        assert_eq!((m[9], m[33]), (b's', b'n'));
        let r = add_ring_msg(1, 2, 3, 0x1234, 10);
        assert_eq!(&r[2..8], &[1, 0, 2, 0, 3, 0]);
        assert_eq!(&r[8..13], &[0x34, 0x12, 0, 0, 10]);
        let g = add_region_msg(1, 0x1_0000_0000);
        assert_eq!(&g[4..12], &[0, 0, 0, 0, 1, 0, 0, 0]);
    }
}
