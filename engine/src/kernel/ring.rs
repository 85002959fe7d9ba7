//! The AF_PACKET rings: a TPACKET_V3 block-based receive ring and a TPACKET_V3 frame-based
//! transmit ring, in one `mmap` of the packet socket (rx ring first, tx ring after it).
//!
//! [`RingMap`] is the only code here that dereferences pointers. Everything else treats the
//! mapping as shared memory written by the kernel:
//!
//! - **Ownership word.** A receive block belongs to us while its `block_status` has
//!   `TP_STATUS_USER`; we load it with `Acquire` (so the block's contents written by the kernel
//!   before it set the bit are visible) and hand the block back by storing `TP_STATUS_KERNEL`
//!   with `Release` (so all our reads and the VLAN/checksum rewrites we did in the block happen
//!   before the kernel reuses it). A transmit frame is ours while its `tp_status` is
//!   `TP_STATUS_AVAILABLE` (or `WRONG_FORMAT`); we fill it, then store `TP_STATUS_SEND_REQUEST`
//!   with `Release`; the kernel sets it back to `AVAILABLE` when the skb is freed.
//! - **Copy, check, use.** Block and packet headers are copied out of the mapping and every
//!   offset and length in them (`offset_to_first_pkt`, `blk_len`, `tp_next_offset`, `tp_mac`,
//!   `tp_snaplen`, the virtio-net header's `csum_start`/`csum_offset`) is checked against the
//!   block before any byte is used. A bad block or packet header is dropped and counted as
//!   `drop_bad_desc` (the rest of that block is skipped); it never panics or reads outside the
//!   mapping.
//! - **Frames that do not fit** (truncated by the kernel: `tp_snaplen < tp_len`, or longer than
//!   the port's frame size allows) are dropped and counted as `drop_no_buffer`, on rx and tx.
//! - **Order.** Blocks are consumed strictly in ring order and tx frames are filled strictly in
//!   ring order (the kernel's `tpacket_snd` walks the ring in order and stops at the first frame
//!   that is not `SEND_REQUEST`; skipping one would strand every frame behind it).
//! - **Holding.** Packets of one `rx_burst` may come from several blocks; every block the burst
//!   touched stays ours until `rx_release`, which returns all fully read blocks (a block read
//!   only partly stays ours until a later burst finishes it). A burst that returns nothing holds
//!   nothing.
//! - **Virtio-net header.** The socket has `PACKET_VNET_HDR`: each received frame is preceded by
//!   a 10-byte `virtio_net_hdr`, each transmitted frame by one we write. On rx it tells us when
//!   the kernel left a checksum to be filled in (`NEEDS_CSUM`, e.g. UDP/TCP from a local veth
//!   peer with tx checksum offload); we complete it in software, as `skb_checksum_help` would.
//!   On tx we set `hdr_len` to the whole frame, which makes the kernel copy the frame into the
//!   skb instead of attaching the ring page (zero copy would let a frame be overwritten while a
//!   receiving socket on the same host still holds its skb).
//! - **VLAN tags.** The kernel strips an 802.1Q/802.1ad tag into the packet header
//!   (`TP_STATUS_VLAN_VALID`); we put it back into the frame (moving the MAC addresses 4 bytes
//!   towards the header, into the gap the kernel leaves) so the bridge sees the frame as sent.
use crate::port::{Drop, PktReader, PktRef, QueueStats, TxItem};
use crate::shm::{Seg, SegMut};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// `sizeof(struct tpacket_block_desc)`; the first packet of a block starts at or after it.
pub const BLOCK_HDR_LEN: usize = 48;
const _: () = assert!(std::mem::size_of::<libc::tpacket_block_desc>() == BLOCK_HDR_LEN);
/// `sizeof(struct tpacket3_hdr)`.
pub const PKT_HDR_LEN: usize = 48;
const _: () = assert!(std::mem::size_of::<libc::tpacket3_hdr>() == PKT_HDR_LEN);
/// `TPACKET3_HDRLEN`: the packet header plus the `sockaddr_ll` the kernel writes after it.
pub const TPACKET3_HDRLEN: usize = libc::TPACKET3_HDRLEN;
const _: () = assert!(TPACKET3_HDRLEN == 68);
/// `sizeof(struct virtio_net_hdr)`.
pub const VNET_HDR_LEN: usize = 10;
/// Where a tx frame's data (our virtio-net header, then the Ethernet frame) starts:
/// `TPACKET3_HDRLEN - sizeof(sockaddr_ll)`, as `tpacket_parse_header` computes it.
pub const TX_DATA_OFF: usize = TPACKET3_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();
const _: () = assert!(TX_DATA_OFF == 48);
/// Ring overhead per frame: the largest frame a `frame_size` slot carries is
/// `frame_size - FRAME_OVERHEAD`.
pub const FRAME_OVERHEAD: u32 = (TX_DATA_OFF + VNET_HDR_LEN) as u32;
const ETH_HLEN: u32 = 14;
const VLAN_HLEN: u32 = 4;
const MAC_LEN: usize = 12;

// Field offsets (block descriptor, tpacket3_hdr, virtio_net_hdr).
const BLK_STATUS: usize = 8;
const BLK_NUM_PKTS: usize = 12;
const BLK_FIRST: usize = 16;
const BLK_LEN: usize = 20;
const PH_NEXT: usize = 0;
const PH_SNAPLEN: usize = 12;
const PH_LEN: usize = 16;
const PH_STATUS: usize = 20;
const PH_MAC: usize = 24;
const PH_VLAN_TCI: usize = 32;
const PH_VLAN_TPID: usize = 36;
const VNET_F_NEEDS_CSUM: u8 = 1;

/// The mapping of both rings. Owns it; `munmap` on drop.
pub struct RingMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one port, which the single dataplane worker owns; RingMap
// has no interior sharing of its own (the kernel is the only other party).
unsafe impl Send for RingMap {}

impl RingMap {
    /// Maps `len` bytes of the packet socket's rings (`PACKET_RX_RING` + `PACKET_TX_RING`
    /// must be set up first).
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<RingMap> {
        Self::mmap(fd.as_raw_fd(), libc::MAP_SHARED | libc::MAP_POPULATE, len)
    }

    /// Anonymous zeroed memory with the same interface (tests drive the ring logic over it).
    pub fn anonymous(len: usize) -> std::io::Result<RingMap> {
        Self::mmap(-1, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, len)
    }

    fn mmap(fd: libc::c_int, flags: libc::c_int, len: usize) -> std::io::Result<RingMap> {
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL); no Rust object aliases it.
        // The result is checked for MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RingMap {
            ptr: p as *mut u8,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn in_bounds(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    #[inline]
    fn atomic_u32(&self, off: usize) -> Option<&AtomicU32> {
        if !off.is_multiple_of(4) || !self.in_bounds(off, 4) {
            return None;
        }
        // SAFETY: in bounds and 4-byte aligned (the mapping is page aligned); AtomicU32 has
        // the layout of u32 and every bit pattern is valid. The reference lives no longer than
        // &self, i.e. than the mapping.
        Some(unsafe { &*(self.ptr.add(off) as *const AtomicU32) })
    }

    /// Ownership word at `off` (`Acquire`); None when out of bounds or unaligned.
    #[inline]
    pub fn load_status(&self, off: usize) -> Option<u32> {
        self.atomic_u32(off).map(|a| a.load(Ordering::Acquire))
    }

    /// Writes the ownership word at `off` (`Release`); false when out of bounds or unaligned.
    #[inline]
    pub fn store_status(&self, off: usize, v: u32) -> bool {
        self.atomic_u32(off)
            .map(|a| a.store(v, Ordering::Release))
            .is_some()
    }

    /// Copies `N` bytes at `off` out of the mapping.
    #[inline]
    pub fn read<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if !self.in_bounds(off, N) {
            return None;
        }
        let mut out = [0u8; N];
        // SAFETY: off..off+N is inside the mapping (checked); `out` is a distinct local.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), out.as_mut_ptr(), N) };
        Some(out)
    }

    /// Copies `src` into the mapping at `off`; false (nothing written) when out of bounds.
    #[inline]
    pub fn write(&self, off: usize, src: &[u8]) -> bool {
        if !self.in_bounds(off, src.len()) {
            return false;
        }
        // SAFETY: off..off+len is inside the mapping (checked); `src` is ordinary memory that
        // cannot overlap a mapping we own exclusively through `self`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) };
        true
    }

    /// Moves `n` bytes from `src` to `dst` inside the mapping (ranges may overlap).
    #[inline]
    pub fn move_within(&self, src: usize, dst: usize, n: usize) -> bool {
        if !self.in_bounds(src, n) || !self.in_bounds(dst, n) {
            return false;
        }
        // SAFETY: both ranges are inside the mapping (checked); `copy` allows overlap.
        unsafe { std::ptr::copy(self.ptr.add(src), self.ptr.add(dst), n) };
        true
    }

    /// A read-only view of `off..off+len`.
    #[inline]
    pub fn seg(&self, off: usize, len: usize) -> Option<Seg> {
        if !self.in_bounds(off, len) || len > u32::MAX as usize {
            return None;
        }
        // SAFETY: range checked against the mapping; the port keeps the mapping alive while
        // Segs from it are in use (they live from rx_burst to rx_release; unmapping happens
        // only in poll_control or drop, never in between).
        Some(unsafe { Seg::from_raw(self.ptr.add(off), len as u32) })
    }

    /// A writable view of `off..off+len`.
    #[inline]
    pub fn seg_mut(&self, off: usize, len: usize) -> Option<SegMut> {
        if !self.in_bounds(off, len) || len > u32::MAX as usize {
            return None;
        }
        // SAFETY: as in `seg`; tx frames are written only while we own them (status checked).
        Some(unsafe { SegMut::from_raw(self.ptr.add(off), len as u32) })
    }
}

impl std::ops::Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no Seg from it outlives the port
        // (see `seg`).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

#[inline]
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
#[inline]
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

/// Ring geometry as set with `PACKET_RX_RING` / `PACKET_TX_RING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub rx_block_size: usize,
    pub rx_blocks: usize,
    pub tx_frame_size: usize,
    pub tx_frames: usize,
    /// Bytes per tx ring block (frames never straddle blocks).
    pub tx_block_size: usize,
}

/// Bytes of each ring.
pub const RX_RING_BYTES: usize = 4 << 20;
pub const TX_RING_BYTES: usize = 4 << 20;
const MIN_RX_BLOCK: usize = 128 << 10;
const TX_BLOCK: usize = 64 << 10;

impl Geometry {
    /// Rings for `frame_size` (a power of two 2048..=65536): 4 MiB of rx blocks of at least
    /// 128 KiB (and 4 frames), 4 MiB of tx frames.
    pub fn for_frame_size(frame_size: u32) -> Geometry {
        let fs = frame_size as usize;
        let rx_block_size = MIN_RX_BLOCK.max(4 * fs);
        let tx_block_size = TX_BLOCK.max(fs);
        Geometry {
            rx_block_size,
            rx_blocks: RX_RING_BYTES / rx_block_size,
            tx_frame_size: fs,
            tx_frames: TX_RING_BYTES / fs,
            tx_block_size,
        }
    }
    pub fn rx_bytes(&self) -> usize {
        self.rx_block_size * self.rx_blocks
    }
    pub fn tx_bytes(&self) -> usize {
        self.tx_frame_size * self.tx_frames
    }
    /// Largest frame (Ethernet header to end, VLAN tag included) one slot carries.
    pub fn max_frame(&self) -> u32 {
        self.tx_frame_size as u32 - FRAME_OVERHEAD
    }
}

/// One's-complement sum of `seg[off..off+n]` as 16-bit big-endian words, added to `sum`.
fn csum_add(seg: &Seg, off: usize, n: usize, mut sum: u64) -> Option<u64> {
    let mut buf = [0u8; 256];
    let mut pos = 0usize;
    while pos < n {
        let want = (n - pos).min(buf.len());
        let got = seg.read(off + pos, &mut buf[..want]);
        if got != want {
            return None;
        }
        let mut i = 0;
        while i + 1 < got {
            sum += u64::from(u16::from_be_bytes([buf[i], buf[i + 1]]));
            i += 2;
        }
        if got % 2 == 1 {
            // Only the final chunk can be odd (chunks are even-sized): pad with zero.
            sum += u64::from(buf[got - 1]) << 8;
        }
        pos += got;
    }
    Some(sum)
}

fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reader of the TPACKET_V3 receive ring. Blocks live at `i * block_size` in the map.
pub struct RxRing {
    block_size: usize,
    blocks: usize,
    /// Oldest block we hold (not yet returned to the kernel).
    first: usize,
    /// Blocks held: `first .. first + held` (the last one is being read).
    held: usize,
    /// Packets of the block being read that are still to be looked at.
    left: u32,
    /// Block-relative offset of the next packet header, and the block's used length.
    next_off: usize,
    blk_len: usize,
    max_frame: u32,
}

impl RxRing {
    pub fn new(g: &Geometry) -> RxRing {
        RxRing {
            block_size: g.rx_block_size,
            blocks: g.rx_blocks,
            first: 0,
            held: 0,
            left: 0,
            next_off: 0,
            blk_len: 0,
            max_frame: g.max_frame(),
        }
    }

    /// Blocks currently held (for tests and port info).
    pub fn held(&self) -> usize {
        self.held
    }

    #[inline]
    fn base(&self, block: usize) -> usize {
        block * self.block_size
    }

    /// Takes the next block when the kernel has closed it. Validates its header; a bad one is
    /// counted and taken with no packets (so it is returned at the next release).
    fn acquire_next(&mut self, map: &RingMap, st: &mut QueueStats) -> bool {
        if self.held == self.blocks {
            return false;
        }
        let idx = (self.first + self.held) % self.blocks;
        let base = self.base(idx);
        let Some(status) = map.load_status(base + BLK_STATUS) else {
            return false;
        };
        if status & libc::TP_STATUS_USER == 0 {
            return false;
        }
        self.held += 1;
        let Some(h) = map.read::<BLOCK_HDR_LEN>(base) else {
            self.left = 0;
            st.count_drop(Drop::BadDesc, 1);
            return true;
        };
        let num = u32_at(&h, BLK_NUM_PKTS);
        let first = u32_at(&h, BLK_FIRST) as usize;
        let blk_len = u32_at(&h, BLK_LEN) as usize;
        let ok = blk_len <= self.block_size
            && (num == 0 || (first >= BLOCK_HDR_LEN && first + PKT_HDR_LEN <= blk_len));
        if ok {
            self.left = num;
            self.next_off = first;
            self.blk_len = blk_len;
        } else {
            self.left = 0;
            st.count_drop(Drop::BadDesc, u64::from(num.max(1)));
        }
        true
    }

    /// Receives up to `out.len()` packets (see `Port::rx_burst`). Counts rx and drops in `st`.
    pub fn burst(&mut self, map: &RingMap, out: &mut [PktRef], st: &mut QueueStats) -> usize {
        let mut n = 0;
        while n < out.len() {
            if self.held == 0 || self.left == 0 {
                if !self.acquire_next(map, st) {
                    break;
                }
                continue;
            }
            let block = (self.first + self.held - 1) % self.blocks;
            if let Some(seg) = self.next_packet(map, block, st) {
                let p = &mut out[n];
                p.clear();
                p.queue = 0;
                p.push_seg(seg);
                st.rx_packets += 1;
                st.rx_bytes += u64::from(seg.len());
                n += 1;
            }
        }
        if n == 0 {
            self.release(map);
        }
        n
    }

    /// Parses and checks the packet at `next_off` of `block`, advances past it. Returns the
    /// frame (tag reinserted, checksum completed) or None after counting why it was dropped.
    fn next_packet(&mut self, map: &RingMap, block: usize, st: &mut QueueStats) -> Option<Seg> {
        let base = self.base(block);
        let off = self.next_off;
        let bad = |me: &mut RxRing, st: &mut QueueStats| {
            st.count_drop(Drop::BadDesc, u64::from(me.left));
            me.left = 0;
        };
        if off + PKT_HDR_LEN > self.blk_len {
            bad(self, st);
            return None;
        }
        let Some(h) = map.read::<PKT_HDR_LEN>(base + off) else {
            bad(self, st);
            return None;
        };
        let next = u32_at(&h, PH_NEXT) as usize;
        let snaplen = u32_at(&h, PH_SNAPLEN) as usize;
        let len = u32_at(&h, PH_LEN);
        let status = u32_at(&h, PH_STATUS);
        let mac = usize::from(u16_at(&h, PH_MAC));
        if mac < TPACKET3_HDRLEN + VNET_HDR_LEN || off + mac + snaplen > self.blk_len {
            bad(self, st);
            return None;
        }
        if self.left > 1 {
            if next < PKT_HDR_LEN || off + next + PKT_HDR_LEN > self.blk_len {
                bad(self, st);
                return None;
            }
            self.next_off = off + next;
        }
        self.left -= 1;
        let mac_at = base + off + mac;
        if (snaplen as u32) < len {
            st.count_drop(Drop::NoBuffer, 1);
            return None;
        }
        let Some(vnet) = map.read::<VNET_HDR_LEN>(mac_at - VNET_HDR_LEN) else {
            st.count_drop(Drop::BadDesc, 1);
            return None;
        };
        let (mut start, mut flen) = (mac_at, snaplen);
        let mut shift = 0usize;
        if status & libc::TP_STATUS_VLAN_VALID != 0 {
            // The gap before tp_mac holds at least the virtio-net header (copied above).
            if mac - (VLAN_HLEN as usize) < TPACKET3_HDRLEN || snaplen < MAC_LEN {
                st.count_drop(Drop::BadDesc, 1);
                return None;
            }
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                u16_at(&h, PH_VLAN_TPID)
            } else {
                0x8100
            };
            let tci = u32_at(&h, PH_VLAN_TCI) as u16;
            start = mac_at - VLAN_HLEN as usize;
            let t = tpid.to_be_bytes();
            let c = tci.to_be_bytes();
            if !map.move_within(mac_at, start, MAC_LEN)
                || !map.write(start + MAC_LEN, &[t[0], t[1], c[0], c[1]])
            {
                st.count_drop(Drop::BadDesc, 1);
                return None;
            }
            flen += VLAN_HLEN as usize;
            shift = VLAN_HLEN as usize;
        }
        if flen > self.max_frame as usize {
            st.count_drop(Drop::NoBuffer, 1);
            return None;
        }
        if flen < ETH_HLEN as usize {
            st.count_drop(Drop::BadDesc, 1);
            return None;
        }
        let Some(seg) = map.seg(start, flen) else {
            st.count_drop(Drop::BadDesc, 1);
            return None;
        };
        if vnet[0] & VNET_F_NEEDS_CSUM != 0 {
            let cs = usize::from(u16::from_le_bytes([vnet[6], vnet[7]])) + shift;
            let co = usize::from(u16::from_le_bytes([vnet[8], vnet[9]]));
            if !complete_csum(map, &seg, start, cs, co) {
                st.count_drop(Drop::BadDesc, 1);
                return None;
            }
        }
        Some(seg)
    }

    /// Returns every fully read block to the kernel (see the module rules).
    pub fn release(&mut self, map: &RingMap) {
        while self.held > 0 {
            if self.held == 1 && self.left > 0 {
                break;
            }
            map.store_status(self.base(self.first) + BLK_STATUS, libc::TP_STATUS_KERNEL);
            self.first = (self.first + 1) % self.blocks;
            self.held -= 1;
        }
    }
}

/// Fills in the checksum the kernel left partial: the one's-complement sum over
/// `csum_start..` (whose checksum field already holds the pseudo-header sum) goes to
/// `csum_start + csum_offset`. False when the offsets do not fit the frame.
fn complete_csum(map: &RingMap, seg: &Seg, start: usize, cs: usize, co: usize) -> bool {
    let flen = seg.len() as usize;
    let Some(field) = cs.checked_add(co) else {
        return false;
    };
    if cs >= flen || field + 2 > flen {
        return false;
    }
    let Some(sum) = csum_add(seg, cs, flen - cs, 0) else {
        return false;
    };
    let mut v = csum_fold(sum);
    if v == 0 {
        v = 0xffff; // UDP: 0 means "no checksum"; for TCP both encode zero.
    }
    map.write(start + field, &v.to_be_bytes())
}

/// Writer of the TPACKET_V3 transmit ring (frames at `tx_base + i * frame_size`).
pub struct TxRing {
    base: usize,
    frame_size: usize,
    frames: usize,
    head: usize,
    max_frame: u32,
    /// Frames the kernel flagged `WRONG_FORMAT` (reclaimed; should stay 0).
    pub rejected: u64,
}

impl TxRing {
    pub fn new(g: &Geometry) -> TxRing {
        TxRing {
            base: g.rx_bytes(),
            frame_size: g.tx_frame_size,
            frames: g.tx_frames,
            head: 0,
            max_frame: g.max_frame(),
            rejected: 0,
        }
    }

    /// Copies each item's packet into the next free frames and marks them for sending.
    /// Returns packets queued; the caller kicks the kernel once when it is > 0. `mtu` bounds
    /// the frame as the interface would (`mtu + 14`, plus 4 for a tagged frame).
    pub fn burst(
        &mut self,
        map: &RingMap,
        pkts: &[PktRef],
        items: &[TxItem],
        mtu: u32,
        st: &mut QueueStats,
    ) -> usize {
        let mut sent = 0;
        for (i, it) in items.iter().enumerate() {
            let f = self.base + self.head * self.frame_size;
            let status = map.load_status(f + PH_STATUS);
            match status {
                Some(libc::TP_STATUS_AVAILABLE) => {}
                Some(s) if s & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) == 0 => {
                    // WRONG_FORMAT (only without PACKET_LOSS) or timestamp bits: ours again.
                    if s & libc::TP_STATUS_WRONG_FORMAT != 0 {
                        self.rejected += 1;
                    }
                }
                _ => {
                    st.count_drop(Drop::RingFull, (items.len() - i) as u64);
                    break;
                }
            }
            let Some(mut rd) = PktReader::for_item(pkts, it, st) else {
                continue;
            };
            let len = rd.out_len();
            if len > self.max_frame || len > mtu + ETH_HLEN + VLAN_HLEN {
                st.count_drop(Drop::NoBuffer, 1);
                continue;
            }
            if len < ETH_HLEN {
                st.count_drop(Drop::BadDesc, 1);
                continue;
            }
            let data = f + TX_DATA_OFF + VNET_HDR_LEN;
            let Some(seg) = map.seg_mut(data, len as usize) else {
                st.count_drop(Drop::NoBuffer, 1);
                continue;
            };
            let mut pos = 0usize;
            while !rd.done() {
                let w = rd.fill(&seg, pos);
                if w == 0 {
                    break;
                }
                pos += w;
            }
            if pos != len as usize {
                st.count_drop(Drop::NoBuffer, 1);
                continue;
            }
            if len > mtu + ETH_HLEN {
                // Only a VLAN-tagged frame may exceed mtu + 14 (by its tag).
                let et = seg.as_seg().read_array::<2>(MAC_LEN);
                if !matches!(et, Some([0x81, 0x00]) | Some([0x88, 0xa8])) {
                    st.count_drop(Drop::NoBuffer, 1);
                    continue;
                }
            }
            // virtio_net_hdr: no offloads; hdr_len = whole frame (the kernel copies it).
            let l = (len as u16).to_le_bytes();
            let mut vnet = [0u8; VNET_HDR_LEN];
            vnet[2] = l[0];
            vnet[3] = l[1];
            let tp_len = (len + VNET_HDR_LEN as u32).to_ne_bytes();
            if !map.write(f + TX_DATA_OFF, &vnet)
                || !map.write(f + PH_NEXT, &0u32.to_ne_bytes())
                || !map.write(f + PH_SNAPLEN, &tp_len)
                || !map.write(f + PH_LEN, &tp_len)
                || !map.store_status(f + PH_STATUS, libc::TP_STATUS_SEND_REQUEST)
            {
                st.count_drop(Drop::NoBuffer, 1);
                continue;
            }
            self.head = (self.head + 1) % self.frames;
            st.tx_packets += 1;
            st.tx_bytes += u64::from(len);
            sent += 1;
        }
        sent
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
