//! Split virtqueues (virtio 1.x §2.7): our fast path for vhost-user rings.
//!
//! Layout in frontend memory: descriptor table (16 bytes per entry: `addr u64, len u32,
//! flags u16, next u16`), avail ring (`flags u16, idx u16, ring[size] u16, used_event u16`),
//! used ring (`flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16`).
//!
//! Ordering (we are the device):
//! - consumer side: `avail.idx` is loaded with Acquire, then ring entries and descriptors are
//!   copied out; each copy is validated before use (copy, check, act) because the guest can
//!   rewrite them at any time.
//! - producer side: used entries are written first, then `used.idx` is stored with Release.
//!   Before deciding whether to signal the call eventfd we issue a SeqCst fence, then read
//!   `used_event` (EVENT_IDX) or the avail `NO_INTERRUPT` flag.
//! - we poll, so we ask for no kicks: `used.flags = NO_NOTIFY` without EVENT_IDX; with EVENT_IDX
//!   we never advance `avail_event`, so the guest kicks at most once per 64 Ki buffers.
//!
//! Validation (hostile guest): ring size a power of two ≤ 32768; all three ring parts inside one
//! memory region each, index fields 2-aligned; `avail.idx - last_avail > size` marks the ring
//! broken (stops it, counted once); a head ≥ size, a chain longer than the table, a `next` out of
//! range, a nested or chained INDIRECT, an indirect table not a multiple of 16 bytes, a buffer
//! outside the memory table, a device-writable buffer on a transmit chain (or read-only on a
//! receive chain), or a frame over [`MAX_FRAME`] drop the chain and count `drop_bad_desc`. Such
//! chains are still returned to the guest (used length 0) so the ring keeps moving.
//!
//! Direction names are the guest's: the guest's TX queue (odd index) is what the port receives,
//! its RX queue (even index) is what the port transmits into (with a `virtio_net_hdr`, 12 bytes
//! with VERSION_1 or MRG_RXBUF, else 10; MRG_RXBUF lets one packet span chains and sets
//! `num_buffers`).
use super::features;
use super::mem::GuestMemory;
use crate::port::{Drop, PktReader, PktRef, QueueStats, TxItem, MAX_BURST, MAX_FRAME, MAX_SEGS};
use crate::shm::SegMut;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::sync::Arc;

pub const MAX_QUEUE_SIZE: u16 = 32768;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
const USED_F_NO_NOTIFY: u16 = 1;
const ZERO_HDR: [u8; 12] = [0; 12];

#[derive(Clone, Copy, Debug, Default)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

impl Desc {
    #[inline]
    fn parse(b: &[u8; 16]) -> Desc {
        Desc {
            addr: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

/// A ring as the frontend announced it (frontend-virtual addresses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingAddrs {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

/// Everything needed to start a ring.
pub struct RingSetup {
    pub addrs: RingAddrs,
    /// Next avail index to process (SET_VRING_BASE).
    pub base: u16,
    /// Negotiated virtio features.
    pub features: u64,
    pub call: Option<Arc<File>>,
    /// Started or rebased since the worker last saw it: do not carry indices over.
    pub fresh: bool,
}

/// Outcome of placing one packet in the guest's receive ring.
enum Put {
    Sent,
    NoRoom,
    TooBig,
    Bad,
}

/// One live split ring. Owned by the worker.
pub struct VirtQueue {
    mem: Arc<GuestMemory>,
    size: u16,
    desc_reg: usize,
    desc_off: usize,
    avail_reg: usize,
    avail_off: usize,
    used_reg: usize,
    used_off: usize,
    /// Next avail entry we will consume.
    pub last_avail: u16,
    /// Our copy of used.idx (we are its only writer).
    pub used_idx: u16,
    /// The guest's avail.idx as last loaded and validated (never behind `last_avail`). A
    /// transmit burst that fits in what it already shows skips the load, a cross-core miss
    /// whenever the guest posted meanwhile.
    avail_seen: u16,
    event_idx: bool,
    mrg: bool,
    indirect: bool,
    hdr_len: usize,
    call: Option<Arc<File>>,
    /// Heads taken by the last rx burst, returned by `rx_release`.
    pending: Vec<u16>,
    /// The guest violated the ring protocol; the ring is stopped until restarted.
    pub broken: bool,
    pub fresh: bool,
    /// Call eventfd signals sent.
    pub calls: u64,
}

impl std::fmt::Debug for VirtQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VirtQueue(size {}, avail {}, used {})",
            self.size, self.last_avail, self.used_idx
        )
    }
}

impl VirtQueue {
    /// Validates the ring addresses against the memory table and starts the ring at `base`.
    pub fn new(mem: Arc<GuestMemory>, s: &RingSetup) -> Result<VirtQueue, String> {
        let size = s.addrs.size;
        if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() {
            return Err(format!(
                "ring size {size} is not a power of two in 1..=32768"
            ));
        }
        let n = u64::from(size);
        let (desc_reg, desc_off) = mem.find_uva(s.addrs.desc, 16 * n).ok_or_else(|| {
            format!(
                "descriptor table {:#x} is outside the memory table",
                s.addrs.desc
            )
        })?;
        let (avail_reg, avail_off) = mem.find_uva(s.addrs.avail, 6 + 2 * n).ok_or_else(|| {
            format!(
                "avail ring {:#x} is outside the memory table",
                s.addrs.avail
            )
        })?;
        let (used_reg, used_off) = mem
            .find_uva(s.addrs.used, 6 + 8 * n)
            .ok_or_else(|| format!("used ring {:#x} is outside the memory table", s.addrs.used))?;
        let am = mem.map(avail_reg);
        let um = mem.map(used_reg);
        let nz = n as usize;
        let aligned = am.atomic_u16(avail_off).is_some()
            && am.atomic_u16(avail_off + 2).is_some()
            && am.atomic_u16(avail_off + 4 + 2 * nz).is_some()
            && um.atomic_u16(used_off).is_some()
            && um.atomic_u16(used_off + 2).is_some()
            && (used_off & 3) == 0;
        if !aligned {
            return Err("avail or used ring is misaligned".into());
        }
        let event_idx = s.features & features::EVENT_IDX != 0;
        let mut q = VirtQueue {
            mem,
            size,
            desc_reg,
            desc_off,
            avail_reg,
            avail_off,
            used_reg,
            used_off,
            last_avail: s.base,
            used_idx: s.base,
            avail_seen: s.base,
            event_idx,
            mrg: s.features & features::MRG_RXBUF != 0,
            indirect: s.features & features::INDIRECT_DESC != 0,
            hdr_len: if s.features & (features::VERSION_1 | features::MRG_RXBUF) != 0 {
                12
            } else {
                10
            },
            call: s.call.clone(),
            pending: Vec::with_capacity(MAX_BURST),
            broken: false,
            fresh: s.fresh,
            calls: 0,
        };
        // The used index in memory wins (a frontend reconnecting to a running ring).
        let cur = q.used_atomic(2).load(Ordering::Acquire);
        if cur != s.base {
            tracing::debug!(
                base = s.base,
                used = cur,
                "vring base differs from used.idx; using used.idx"
            );
            q.last_avail = cur;
            q.used_idx = cur;
            q.avail_seen = cur;
        }
        q.used_atomic(0).store(
            if event_idx { 0 } else { USED_F_NO_NOTIFY },
            Ordering::Release,
        );
        Ok(q)
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Index state for diagnostics: (guest avail.idx, our last_avail, our used_idx, broken).
    pub fn indices(&self) -> (u16, u16, u16, bool) {
        let avail = self.avail_atomic(2).load(Ordering::Acquire);
        (avail, self.last_avail, self.used_idx, self.broken)
    }

    /// Takes over the indices of the ring this one replaces (same ring, new memory or fds).
    pub fn carry_from(&mut self, old: &VirtQueue) {
        self.last_avail = old.last_avail;
        self.used_idx = old.used_idx;
        self.avail_seen = old.last_avail;
        self.calls = old.calls;
    }

    // --- ring field access (offsets were validated in `new`; the fallbacks are unreachable) ---

    #[inline]
    fn avail_atomic(&self, off: usize) -> &AtomicU16 {
        static DUMMY: AtomicU16 = AtomicU16::new(0);
        self.mem
            .map(self.avail_reg)
            .atomic_u16(self.avail_off + off)
            .unwrap_or(&DUMMY)
    }

    #[inline]
    fn used_atomic(&self, off: usize) -> &AtomicU16 {
        static DUMMY: AtomicU16 = AtomicU16::new(0);
        self.mem
            .map(self.used_reg)
            .atomic_u16(self.used_off + off)
            .unwrap_or(&DUMMY)
    }

    #[inline]
    fn avail_entry(&self, idx: u16) -> u16 {
        let slot = usize::from(idx & (self.size - 1));
        let b = self
            .mem
            .map(self.avail_reg)
            .seg(self.avail_off + 4 + 2 * slot, 2)
            .and_then(|s| s.read_array::<2>(0))
            .unwrap_or([0xff; 2]);
        u16::from_le_bytes(b)
    }

    #[inline]
    fn write_used(&self, idx: u16, id: u16, len: u32) {
        let slot = usize::from(idx & (self.size - 1));
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&u32::from(id).to_le_bytes());
        e[4..].copy_from_slice(&len.to_le_bytes());
        if let Some(s) = self
            .mem
            .map(self.used_reg)
            .seg_mut(self.used_off + 4 + 8 * slot, 8)
        {
            // Fixed size: stores straight from registers (see `SegMut::write_array`).
            s.write_array(0, &e);
        }
    }

    #[inline]
    fn read_desc(&self, i: u16) -> Option<Desc> {
        let s = self
            .mem
            .map(self.desc_reg)
            .seg(self.desc_off + 16 * usize::from(i), 16)?;
        s.read_array::<16>(0).map(|b| Desc::parse(&b))
    }

    /// Walks the chain starting at `head`, calling `f` for every buffer descriptor (indirect
    /// tables expanded). False when the chain is malformed or `f` refused a descriptor.
    #[inline]
    fn walk(&self, head: u16, mut f: impl FnMut(&Desc) -> bool) -> bool {
        if head >= self.size {
            return false;
        }
        let Some(mut d) = self.read_desc(head) else {
            return false;
        };
        if d.flags & DESC_F_INDIRECT != 0 {
            if !self.indirect || d.flags & DESC_F_NEXT != 0 || d.len == 0 || d.len % 16 != 0 {
                return false;
            }
            let n = d.len / 16;
            if n > u32::from(MAX_QUEUE_SIZE) {
                return false;
            }
            let Some(table) = self.mem.gpa_seg(d.addr, d.len) else {
                return false;
            };
            let (mut i, mut steps) = (0u32, 0u32);
            loop {
                let Some(b) = table.read_array::<16>(i as usize * 16) else {
                    return false;
                };
                let e = Desc::parse(&b);
                if e.flags & DESC_F_INDIRECT != 0 || !f(&e) {
                    return false;
                }
                steps += 1;
                if e.flags & DESC_F_NEXT == 0 {
                    return true;
                }
                if steps >= n || u32::from(e.next) >= n {
                    return false;
                }
                i = u32::from(e.next);
            }
        }
        let mut steps = 0u32;
        loop {
            if d.flags & DESC_F_INDIRECT != 0 || !f(&d) {
                return false;
            }
            steps += 1;
            if d.flags & DESC_F_NEXT == 0 {
                return true;
            }
            if steps >= u32::from(self.size) || d.next >= self.size {
                return false;
            }
            match self.read_desc(d.next) {
                Some(nd) => d = nd,
                None => return false,
            }
        }
    }

    /// Entries the guest made available, or None (and the ring marked broken) when the guest's
    /// index is more than a ring ahead of ours.
    #[inline]
    fn available(&mut self) -> Option<u16> {
        let idx = self.avail_atomic(2).load(Ordering::Acquire);
        let n = idx.wrapping_sub(self.last_avail);
        if n > self.size {
            self.broken = true;
            return None;
        }
        self.avail_seen = idx;
        Some(n)
    }

    /// Prefetch hints for the next `n` chains from `last_avail`: their avail entries, then
    /// (read, or `write` for chains we fill) the head descriptor and, for a one-descriptor
    /// chain, its buffer — lines the guest's core wrote last.
    #[inline]
    fn prefetch_chains(&self, n: u16, write: bool) {
        let dm = self.mem.map(self.desc_reg);
        for k in 0..n {
            let head = self.avail_entry(self.last_avail.wrapping_add(k));
            if head >= self.size {
                continue;
            }
            if let Some(ds) = dm.seg(self.desc_off + 16 * usize::from(head), 16) {
                ds.prefetch();
                if let Some(d) = ds.read_array::<16>(0).map(|b| Desc::parse(&b)) {
                    if d.flags & (DESC_F_NEXT | DESC_F_INDIRECT) == 0 {
                        match (write, self.mem.gpa_seg_mut(d.addr, d.len.min(64))) {
                            (true, Some(b)) => b.prefetch_write(),
                            (false, Some(b)) => b.as_seg().prefetch(),
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    /// Reads one transmit chain (guest → us) into `pkt`, skipping the virtio-net header.
    fn parse_tx_chain(&self, head: u16, pkt: &mut PktRef) -> bool {
        let mem = &*self.mem;
        let mut skip = self.hdr_len as u32;
        let mut total = 0u64;
        let ok = self.walk(head, |d| {
            if d.flags & DESC_F_WRITE != 0 {
                return false;
            }
            total += u64::from(d.len);
            if total > u64::from(MAX_FRAME) + 12 {
                return false;
            }
            if d.len == 0 {
                return true;
            }
            if mem.gpa_seg(d.addr, d.len).is_none() {
                return false;
            }
            if skip >= d.len {
                skip -= d.len;
                return true;
            }
            let seg = mem.gpa_seg(d.addr + u64::from(skip), d.len - skip);
            skip = 0;
            match seg {
                Some(s) => pkt.push_seg(s),
                None => false,
            }
        });
        ok && skip == 0 && !pkt.is_empty() && pkt.len() <= MAX_FRAME
    }

    /// Receives up to `out.len()` packets the guest transmitted; remembers their heads for
    /// [`Self::rx_release`]. Call `rx_release` before the next `rx_burst`.
    pub fn rx_burst(&mut self, q: u16, out: &mut [PktRef], st: &mut QueueStats) -> usize {
        if self.broken {
            return 0;
        }
        // The dataplane calls `rx_release` only after a burst that returned packets: chains
        // still pending here (a burst of only bad chains) go back to the guest now.
        if !self.pending.is_empty() {
            self.rx_release();
        }
        let Some(n) = self.available() else {
            st.count_drop(Drop::BadDesc, 1);
            tracing::warn!("vhost-user: guest avail index ran ahead of the ring; ring stopped");
            return 0;
        };
        let n = usize::from(n)
            .min(out.len())
            .min(MAX_BURST - self.pending.len());
        // n <= MAX_BURST.
        self.prefetch_chains(n as u16, false);
        let mut k = 0;
        for _ in 0..n {
            let head = self.avail_entry(self.last_avail);
            self.last_avail = self.last_avail.wrapping_add(1);
            self.pending.push(head);
            let pkt = &mut out[k];
            pkt.clear();
            pkt.queue = q;
            if self.parse_tx_chain(head, pkt) {
                st.rx_packets += 1;
                st.rx_bytes += u64::from(pkt.len());
                k += 1;
            } else {
                st.count_drop(Drop::BadDesc, 1);
            }
        }
        if k == 0 {
            self.rx_release();
        }
        k
    }

    /// Returns the chains of the last `rx_burst` to the guest (used length 0: nothing written).
    pub fn rx_release(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let old = self.used_idx;
        for i in 0..self.pending.len() {
            self.write_used(self.used_idx, self.pending[i], 0);
            self.used_idx = self.used_idx.wrapping_add(1);
        }
        self.pending.clear();
        self.publish_used(old);
    }

    /// Copies packets into the guest's receive ring. Returns packets sent; the rest are counted.
    pub fn tx_burst(&mut self, pkts: &[PktRef], items: &[TxItem], st: &mut QueueStats) -> usize {
        if self.broken {
            st.count_drop(Drop::RingFull, items.len() as u64);
            return 0;
        }
        // What the last load showed is still available (only we consume); load again only
        // when that is less than one chain per packet.
        let mut left = self.avail_seen.wrapping_sub(self.last_avail);
        if usize::from(left) < items.len() {
            let Some(n) = self.available() else {
                st.count_drop(Drop::BadDesc, items.len() as u64);
                tracing::warn!("vhost-user: guest avail index ran ahead of the ring; ring stopped");
                return 0;
            };
            left = n;
        }
        self.prefetch_chains(
            left.min(u16::try_from(items.len()).unwrap_or(u16::MAX)),
            true,
        );
        let old = self.used_idx;
        let mut sent = 0;
        for (i, it) in items.iter().enumerate() {
            let Some(mut rd) = PktReader::for_item(pkts, it, st) else {
                continue;
            };
            let out_len = rd.out_len();
            match self.put_packet(&mut rd, &mut left) {
                Put::Sent => {
                    sent += 1;
                    st.tx_packets += 1;
                    st.tx_bytes += u64::from(out_len);
                }
                Put::NoRoom => {
                    st.count_drop(Drop::RingFull, (items.len() - i) as u64);
                    break;
                }
                Put::TooBig => st.count_drop(Drop::NoBuffer, 1),
                Put::Bad => st.count_drop(Drop::BadDesc, 1),
            }
        }
        if self.used_idx != old {
            self.publish_used(old);
        }
        sent
    }

    /// Places one packet in as many receive chains as it needs (one without MRG_RXBUF).
    ///
    /// Each chain's used entry is written as soon as the chain is filled, into the used-ring
    /// slots after `used_idx`: the guest reads no slot at or past `used.idx`, so they become
    /// visible only when `publish_used` stores the new index. A packet that does not fit
    /// (`TooBig`) leaves `used_idx`/`last_avail` untouched, so its slots are simply reused.
    fn put_packet(&mut self, rd: &mut PktReader<'_>, left: &mut u16) -> Put {
        let mut nch = 0u16;
        let mut cursor = self.last_avail;
        let mut room = *left;
        let mut hdr = SegMut::EMPTY;
        let hdr_len = self.hdr_len;
        loop {
            if room == 0 {
                return Put::NoRoom;
            }
            let head = self.avail_entry(cursor);
            cursor = cursor.wrapping_add(1);
            room -= 1;
            let mut wrote = 0u32;
            let mut have_hdr = nch > 0;
            let mem = &*self.mem;
            let ok = self.walk(head, |d| {
                if d.flags & DESC_F_WRITE == 0 {
                    return false;
                }
                let Some(s) = mem.gpa_seg_mut(d.addr, d.len) else {
                    return false;
                };
                let mut off = 0usize;
                if !have_hdr {
                    let zeroed = if hdr_len == 12 {
                        s.write_array(0, &ZERO_HDR)
                    } else {
                        s.write_array(0, &[0u8; 10])
                    };
                    if !zeroed {
                        return false;
                    }
                    hdr = s;
                    have_hdr = true;
                    off = hdr_len;
                }
                if !rd.done() {
                    off += rd.fill(&s, off);
                }
                wrote += off as u32;
                true
            });
            self.write_used(
                self.used_idx.wrapping_add(nch),
                head,
                if ok { wrote } else { 0 },
            );
            nch += 1;
            if !ok {
                // Consume every chain touched (length 0) so the ring keeps moving. The heads
                // of the earlier chains are read again from the avail ring (a guest that
                // rewrote them meanwhile only gets its own ids back).
                for i in 0..nch - 1 {
                    let h = self.avail_entry(self.last_avail.wrapping_add(i));
                    self.write_used(self.used_idx.wrapping_add(i), h, 0);
                }
                self.used_idx = self.used_idx.wrapping_add(nch);
                self.last_avail = cursor;
                *left = room;
                return Put::Bad;
            }
            if rd.done() {
                break;
            }
            if !self.mrg || usize::from(nch) == MAX_SEGS {
                return Put::TooBig;
            }
        }
        if hdr_len == 12 {
            hdr.write_array(10, &nch.to_le_bytes());
        }
        self.used_idx = self.used_idx.wrapping_add(nch);
        self.last_avail = cursor;
        *left = room;
        Put::Sent
    }

    /// Publishes used.idx and signals the guest if it asked for it.
    fn publish_used(&mut self, old: u16) {
        let new = self.used_idx;
        self.used_atomic(2).store(new, Ordering::Release);
        let Some(call) = &self.call else { return };
        fence(Ordering::SeqCst);
        let want = if self.event_idx {
            let ev = self
                .avail_atomic(4 + 2 * usize::from(self.size))
                .load(Ordering::Acquire);
            new.wrapping_sub(ev).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            self.avail_atomic(0).load(Ordering::Acquire) & AVAIL_F_NO_INTERRUPT == 0
        };
        if want {
            let _ = (&**call).write(&1u64.to_ne_bytes());
            self.calls += 1;
        }
    }
}

/// The queues of one negotiated device, as the worker uses them. Ring `2q` is the guest's RX
/// (our tx) of pair `q`, ring `2q+1` its TX (our rx).
#[derive(Debug, Default)]
pub struct Device {
    pub rings: Vec<Option<VirtQueue>>,
    pub features: u64,
}

impl Device {
    /// Leading queue pairs with both rings live.
    pub fn active_pairs(&self) -> usize {
        self.rings
            .chunks(2)
            .take_while(|p| p.len() == 2 && p[0].is_some() && p[1].is_some())
            .count()
    }
}
