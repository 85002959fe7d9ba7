//! The batch port interface every port type implements, and packet references.
//!
//! Buffer ownership (one owner per packet):
//! - `rx_burst(q, out)` fills `out` with [`PktRef`]s pointing into the port's *receive* buffers.
//!   Those buffers stay owned by the receiving port and stay untouched by it until
//!   `rx_release(q)`, which hands every slot returned by the last `rx_burst` back to the peer.
//! - `tx_burst(q, pkts, items)` copies each selected packet (with its VLAN edit) into the port's
//!   own transmit buffers: the one copy a packet gets. A packet that does not fit (no free slot,
//!   no buffer) is dropped and counted by the transmitting port; `tx_burst` never blocks.
//! - The dataplane calls, per rx queue: `rx_burst`, then any number of `tx_burst`s on *other*
//!   ports (or the same port, other queue), then `rx_release`. Nothing else runs in between.
//! - `poll_control` does the port's control-plane work (accept/connect, handshakes, timers). It is
//!   called by the same worker thread, never between `rx_burst` and `rx_release`, so a port may
//!   remap or unmap memory there; only when the port's `control_interest` asks for it (its fds
//!   are ready, or it says so).
use crate::shm::{Seg, SegMut};
use serde::{Deserialize, Serialize};

/// Most segments (chained buffers) one packet may have; longer chains are dropped as bad.
pub const MAX_SEGS: usize = 16;
/// Largest burst a port is asked for.
pub const MAX_BURST: usize = 256;
/// Largest frame accepted (jumbo 9000 + headers).
pub const MAX_FRAME: u32 = 9216;

/// A received packet: up to [`MAX_SEGS`] segments of the receiving port's buffers.
#[derive(Clone, Copy)]
pub struct PktRef {
    len: u32,
    nsegs: u16,
    /// Receive queue the packet came from (for tx queue selection).
    pub queue: u16,
    segs: [Seg; MAX_SEGS],
}

impl Default for PktRef {
    fn default() -> Self {
        PktRef {
            len: 0,
            nsegs: 0,
            queue: 0,
            segs: [Seg::EMPTY; MAX_SEGS],
        }
    }
}

impl PktRef {
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
        self.nsegs = 0;
    }
    /// Makes this a one-segment packet of `s` from queue `queue` (the receive fast path).
    #[inline]
    pub fn set_single(&mut self, s: Seg, queue: u16) {
        self.segs[0] = s;
        self.nsegs = 1;
        self.len = s.len();
        self.queue = queue;
    }
    /// The only segment of a one-segment packet, None otherwise.
    #[inline]
    pub fn single(&self) -> Option<&Seg> {
        if self.nsegs == 1 {
            Some(&self.segs[0])
        } else {
            None
        }
    }
    /// Appends a segment; false when the chain is already [`MAX_SEGS`] long.
    #[inline]
    pub fn push_seg(&mut self, s: Seg) -> bool {
        if self.nsegs as usize >= MAX_SEGS {
            return false;
        }
        self.segs[self.nsegs as usize] = s;
        self.nsegs += 1;
        self.len += s.len();
        true
    }
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    #[inline]
    pub fn segs(&self) -> &[Seg] {
        &self.segs[..self.nsegs as usize]
    }
    /// Copies the first bytes of the packet (up to `out.len()`) across segments; returns count.
    #[inline]
    pub fn read_head(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        for s in self.segs() {
            if n == out.len() {
                break;
            }
            n += s.read(0, &mut out[n..]);
        }
        n
    }
}

/// VLAN change applied while copying a packet to an output port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VlanEdit {
    #[default]
    Keep,
    /// Insert an 802.1Q tag (TPID 0x8100) with this TCI after the MAC addresses.
    Push(u16),
    /// Remove the 4-byte 802.1Q tag after the MAC addresses.
    Pop,
}

/// One packet to transmit: index into the rx burst plus its edit.
#[derive(Clone, Copy, Debug, Default)]
pub struct TxItem {
    pub idx: u16,
    pub edit: VlanEdit,
}

/// Streams the bytes of a packet with a [`VlanEdit`] applied, into destination buffers.
/// Transmitters call [`PktReader::fill`] once per destination buffer until [`PktReader::done`].
pub struct PktReader<'a> {
    pkt: &'a PktRef,
    edit: VlanEdit,
    /// Output bytes produced so far.
    out_pos: u32,
    out_len: u32,
    tag: [u8; 4],
}

const MAC_LEN: u32 = 12;

impl<'a> PktReader<'a> {
    /// None when the edit cannot apply (Pop on a packet shorter than 16 bytes, Push on one
    /// shorter than 12).
    #[inline]
    pub fn new(pkt: &'a PktRef, edit: VlanEdit) -> Option<Self> {
        let (out_len, tag) = match edit {
            VlanEdit::Keep => (pkt.len, [0; 4]),
            VlanEdit::Push(tci) => {
                if pkt.len < MAC_LEN {
                    return None;
                }
                (pkt.len + 4, [0x81, 0x00, (tci >> 8) as u8, tci as u8])
            }
            VlanEdit::Pop => {
                if pkt.len < MAC_LEN + 4 {
                    return None;
                }
                (pkt.len - 4, [0; 4])
            }
        };
        Some(PktReader {
            pkt,
            edit,
            out_pos: 0,
            out_len,
            tag,
        })
    }

    /// The reader for one transmit item, or None after counting why it cannot be sent: an index
    /// outside the burst (`no_buffer`), or a VLAN edit on a runt frame (`no_route`).
    #[inline]
    pub fn for_item(pkts: &'a [PktRef], it: &TxItem, st: &mut QueueStats) -> Option<Self> {
        let Some(pkt) = pkts.get(usize::from(it.idx)) else {
            st.count_drop(Drop::NoBuffer, 1);
            return None;
        };
        let rd = PktReader::new(pkt, it.edit);
        if rd.is_none() {
            st.count_drop(Drop::NoRoute, 1);
        }
        rd
    }

    /// Length of the packet as it will be sent.
    #[inline]
    pub fn out_len(&self) -> u32 {
        self.out_len
    }
    #[inline]
    pub fn done(&self) -> bool {
        self.out_pos >= self.out_len
    }

    /// Maps an output position to a source position (None = inside the pushed tag).
    #[inline]
    fn src_pos(&self, out: u32) -> Option<u32> {
        match self.edit {
            VlanEdit::Keep => Some(out),
            VlanEdit::Push(_) if out < MAC_LEN => Some(out),
            VlanEdit::Push(_) if out < MAC_LEN + 4 => None,
            VlanEdit::Push(_) => Some(out - 4),
            VlanEdit::Pop if out < MAC_LEN => Some(out),
            VlanEdit::Pop => Some(out + 4),
        }
    }

    /// Copies the next bytes into `dst[dst_off..]`; returns the number written.
    pub fn fill(&mut self, dst: &SegMut, dst_off: usize) -> usize {
        let mut written = 0usize;
        let cap = (dst.len() as usize).saturating_sub(dst_off);
        // Fast path: a whole unedited one-segment packet that fits (one copy, no loop).
        if let (VlanEdit::Keep, 0, Some(src)) = (self.edit, self.out_pos, self.pkt.single()) {
            if src.len() == self.out_len && self.out_len as usize <= cap {
                // Both lengths were checked, so the whole packet is copied.
                self.out_pos = self.out_len;
                return dst.copy_from(dst_off, src, 0, self.out_len as usize);
            }
        }
        while written < cap && !self.done() {
            let room = cap - written;
            match self.src_pos(self.out_pos) {
                None => {
                    let t = (self.out_pos - MAC_LEN) as usize;
                    let n = dst.write(dst_off + written, &self.tag[t..4.min(t + room)]);
                    written += n;
                    self.out_pos += n as u32;
                }
                Some(src) => {
                    // Bytes until the next edit boundary in output space.
                    let boundary = match self.edit {
                        VlanEdit::Keep => self.out_len,
                        _ if self.out_pos < MAC_LEN => MAC_LEN,
                        _ => self.out_len,
                    };
                    let want = ((boundary - self.out_pos) as usize).min(room);
                    // Find the segment holding `src`.
                    let mut base = 0u32;
                    let mut copied = 0usize;
                    for s in self.pkt.segs() {
                        if src < base + s.len() {
                            let so = (src - base) as usize;
                            copied = dst.copy_from(dst_off + written, s, so, want);
                            break;
                        }
                        base += s.len();
                    }
                    if copied == 0 {
                        // Source shorter than declared: stop rather than loop.
                        self.out_pos = self.out_len;
                        break;
                    }
                    written += copied;
                    self.out_pos += copied as u32;
                }
            }
        }
        written
    }
}

/// Why a packet was dropped. Counted per queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    NoBuffer,
    RingFull,
    BadDesc,
    NoRoute,
}

/// Counters of one queue (hot path: plain u64s owned by the worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// No free buffer to receive into / transmit from.
    pub drop_no_buffer: u64,
    /// Transmit ring had no free slot.
    pub drop_ring_full: u64,
    /// Descriptor from the peer failed validation (region, offset, length, chain).
    pub drop_bad_desc: u64,
    /// Bridge found no destination (VLAN not allowed, no port, dst is the ingress port).
    pub drop_no_route: u64,
}

impl QueueStats {
    #[inline]
    pub fn count_drop(&mut self, why: Drop, n: u64) {
        match why {
            Drop::NoBuffer => self.drop_no_buffer += n,
            Drop::RingFull => self.drop_ring_full += n,
            Drop::BadDesc => self.drop_bad_desc += n,
            Drop::NoRoute => self.drop_no_route += n,
        }
    }
    pub fn add(&mut self, o: &QueueStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.drop_no_buffer += o.drop_no_buffer;
        self.drop_ring_full += o.drop_ring_full;
        self.drop_bad_desc += o.drop_bad_desc;
        self.drop_no_route += o.drop_no_route;
    }
}

/// A port's counters and state as the control API reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    pub link_up: bool,
    /// Sum over queues.
    pub total: QueueStats,
    pub queues: Vec<QueueStats>,
    /// Control-plane errors (bad messages, protocol violations, failed handshakes).
    pub control_errors: u64,
    /// Times the link came up.
    pub connects: u64,
    /// Times the link went down (peer left, crashed, or was disconnected).
    pub disconnects: u64,
    /// Last reason the link went down, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_disconnect_reason: Option<String>,
}

/// Descriptive, non-counter information about a port (type-specific fields in `details`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    /// "memif", later "vhost-user", "kernel", "dpdk".
    pub kind: String,
    pub link_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_version: Option<String>,
    /// Type-specific details, e.g. memif role, socket, queues, ring size, memory backing
    /// ("hugetlbfs" or "memfd-4k").
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// A port of the switch. Owned by the dataplane worker (hence `Send`, never shared).
pub trait Port: Send {
    fn name(&self) -> &str;
    /// Control-plane work (accept, handshake, reconnect backoff). Called every ~1 ms by the
    /// worker, never between `rx_burst` and `rx_release`. Must not block.
    fn poll_control(&mut self, now: std::time::Instant);
    /// What the worker must watch before calling `poll_control`: push the fds whose
    /// readability (or hang-up/error) means there is control work, and return true when the port
    /// needs `poll_control` at this tick regardless (timers, handshakes, pending output, an
    /// error found by the data path). The worker polls every port's fds with ONE `poll(2)` per
    /// control tick and calls `poll_control` only on ports that returned true or have a ready fd.
    /// The default (no fds, always true) keeps the call on every tick.
    fn control_interest<'a>(&'a self, fds: &mut Vec<std::os::fd::BorrowedFd<'a>>) -> bool {
        let _ = fds;
        true
    }
    /// Housekeeping the data path leaves to the control tick (about every 1 ms, every port,
    /// whatever `control_interest` said; after `poll_control`): e.g. reloading peer flags that
    /// are too expensive to load per burst. Cheap, never blocks. Default: nothing.
    fn tick(&mut self) {}
    fn link_up(&self) -> bool;
    /// Queues currently usable for rx (0 when down).
    fn rx_queues(&self) -> usize;
    /// Queues currently usable for tx (0 when down).
    fn tx_queues(&self) -> usize;
    /// Receives up to `out.len()` packets from rx queue `q`. Bad descriptors are skipped (and
    /// released) and counted. Returns 0 when the link is down or `q` is out of range. A burst
    /// that returns 0 must hold no slots (the dataplane calls `rx_release` only after a
    /// non-empty burst).
    fn rx_burst(&mut self, q: usize, out: &mut [PktRef]) -> usize;
    /// Returns the slots of the last `rx_burst` on `q` to the peer.
    fn rx_release(&mut self, q: usize);
    /// Copies `pkts[item.idx]` for each item into tx queue `q`; returns packets sent. Unsent
    /// ones are counted as drops (ring full / no buffer). `q` is taken modulo `tx_queues()`.
    fn tx_burst(&mut self, q: usize, pkts: &[PktRef], items: &[TxItem]) -> usize;
    fn stats(&self) -> PortStats;
    fn clear_stats(&mut self);
    fn info(&self) -> PortInfo;
    /// Counts packets the bridge dropped for lack of a route, against rx queue `q`.
    fn count_no_route(&mut self, q: usize, n: u64);
}

/// Test helpers shared by the port types' tests: packets backed by heap memory.
#[cfg(test)]
pub(crate) mod test_util {
    use super::{PktRef, TxItem, VlanEdit};
    use crate::shm::HeapBuf;

    /// Copies `frames` into one heap buffer and returns it with one single-segment [`PktRef`]
    /// per frame (the buffer must outlive the refs).
    pub(crate) fn heap_pkts(frames: &[Vec<u8>]) -> (HeapBuf, Vec<PktRef>) {
        let total: usize = frames.iter().map(|f| f.len()).sum();
        let mut heap = HeapBuf::new(total.max(1));
        let mut off = 0;
        for f in frames {
            heap.bytes_mut()[off..off + f.len()].copy_from_slice(f);
            off += f.len();
        }
        let mut pkts = vec![PktRef::default(); frames.len()];
        let mut off = 0;
        for (p, f) in pkts.iter_mut().zip(frames) {
            assert!(p.push_seg(heap.seg(off, f.len()).unwrap()));
            off += f.len();
        }
        (heap, pkts)
    }

    /// Transmit items `0..n`, unchanged.
    pub(crate) fn keep_items(n: usize) -> Vec<TxItem> {
        (0..n)
            .map(|i| TxItem {
                idx: i as u16,
                edit: VlanEdit::Keep,
            })
            .collect()
    }

    /// Transmits `frames` on `port` queue `q`; returns how many were sent.
    pub(crate) fn send(port: &mut dyn super::Port, q: usize, frames: &[Vec<u8>]) -> usize {
        let (_heap, pkts) = heap_pkts(frames);
        port.tx_burst(q, &pkts, &keep_items(frames.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::HeapBuf;

    fn pkt_from(h: &HeapBuf, splits: &[(usize, usize)]) -> PktRef {
        let mut p = PktRef::default();
        for &(o, l) in splits {
            assert!(p.push_seg(h.seg(o, l).unwrap()));
        }
        p
    }

    fn run(p: &PktRef, edit: VlanEdit, dst_sz: usize) -> Vec<u8> {
        let mut out = HeapBuf::new(4096);
        let mut r = PktReader::new(p, edit).unwrap();
        let mut off = 0;
        while !r.done() {
            let d = out.seg_mut(off, dst_sz).unwrap();
            let n = r.fill(&d, 0);
            assert!(n > 0);
            off += n;
        }
        out.bytes()[..off].to_vec()
    }

    #[test]
    fn reader_push_pop_keep_across_segments() {
        let mut src = HeapBuf::new(256);
        for (i, b) in src.bytes_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        let orig: Vec<u8> = src.bytes()[..100].to_vec();
        for split in [
            vec![(0, 100)],
            vec![(0, 5), (5, 8), (13, 87)],
            vec![(0, 12), (12, 88)],
        ] {
            let p = pkt_from(&src, &split);
            for dst in [7usize, 13, 64, 2048] {
                assert_eq!(run(&p, VlanEdit::Keep, dst), orig);
                let pushed = run(&p, VlanEdit::Push(0x0123), dst);
                let mut want = orig[..12].to_vec();
                want.extend_from_slice(&[0x81, 0, 0x01, 0x23]);
                want.extend_from_slice(&orig[12..]);
                assert_eq!(pushed, want);
                let mut popped = orig[..12].to_vec();
                popped.extend_from_slice(&orig[16..]);
                assert_eq!(run(&p, VlanEdit::Pop, dst), popped);
            }
        }
    }

    #[test]
    fn reader_rejects_short() {
        let src = HeapBuf::new(64);
        let p = pkt_from(&src, &[(0, 10)]);
        assert!(PktReader::new(&p, VlanEdit::Pop).is_none());
        assert!(PktReader::new(&p, VlanEdit::Push(1)).is_none());
        let mut h = [0u8; 18];
        assert_eq!(p.read_head(&mut h), 10);
    }
}
