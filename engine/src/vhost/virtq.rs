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
//! memory region each (checked once in `VirtQueue::new`, which keeps validated pointers to
//! them), the descriptor table and avail ring 2-aligned, the used ring 4-aligned;
//! `avail.idx - last_avail > size` (checked at every load of avail.idx) marks the ring
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
/// A 12-byte receive header for a packet in one chain (`num_buffers` = 1).
const ONE_BUF_HDR: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

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
    /// Descriptor table: `16 * size` bytes, 2-aligned, inside a mapping of `mem` (checked in
    /// `new`).
    desc: *const u8,
    /// Avail ring: `6 + 2 * size` bytes, 2-aligned, inside a mapping of `mem`.
    avail: *const u8,
    /// Used ring: `6 + 8 * size` bytes, 4-aligned, inside a mapping of `mem`.
    used: *mut u8,
    /// The guest's avail.idx as last loaded (validated then: at most `size` ahead of
    /// `last_avail`). Entries below it are taken without loading avail.idx again.
    avail_shadow: u16,
    /// Region of the last guest buffer translated (a hint; every translation is checked).
    region_hint: usize,
    /// Next avail entry we will consume.
    pub last_avail: u16,
    /// Our copy of used.idx (we are its only writer).
    pub used_idx: u16,
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

// SAFETY: the raw ring pointers point into mappings owned by `mem` (an Arc, itself Send + Sync);
// they are only dereferenced through `&self`/`&mut self` of the queue, by whichever single
// thread owns it (built by the control thread, then moved to the worker). Guest-shared memory is
// accessed with atomics for indices and copies for everything else, as in `crate::shm`.
unsafe impl Send for VirtQueue {}

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
        let nz = n as usize;
        // Whole ranges, checked once: every later ring access is at an offset below these
        // lengths (slots are masked with `size - 1`).
        let am = mem.map(avail_reg);
        let um = mem.map(used_reg);
        // The whole of each part, checked once: every later access is at an offset below these
        // lengths (slots are masked with `size - 1`). The atomic views check 2-alignment.
        let dm = mem.map(desc_reg);
        let desc = dm
            .atomic_u16(desc_off)
            .filter(|_| dm.seg(desc_off, 16 * nz).is_some());
        let ok = am.seg(avail_off, 6 + 2 * nz).is_some()
            && um.seg(used_off, 6 + 8 * nz).is_some()
            && (used_off & 3) == 0;
        let avail = am.atomic_u16(avail_off).filter(|_| ok);
        let used = um.atomic_u16(used_off).filter(|_| ok);
        let (Some(desc), Some(avail), Some(used)) = (desc, avail, used) else {
            return Err("a ring part is misaligned or outside its mapping".into());
        };
        let desc = desc as *const AtomicU16 as *const u8;
        let avail = avail as *const AtomicU16 as *const u8;
        let used = used as *const AtomicU16 as *mut u8;
        let event_idx = s.features & features::EVENT_IDX != 0;
        let mut q = VirtQueue {
            mem,
            size,
            desc,
            avail,
            used,
            avail_shadow: s.base,
            region_hint: 0,
            last_avail: s.base,
            used_idx: s.base,
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
            q.avail_shadow = cur;
            q.used_idx = cur;
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
        self.avail_shadow = old.last_avail;
        self.used_idx = old.used_idx;
        self.calls = old.calls;
    }

    // --- ring field access: `avail`, `used` and `desc` cover their whole ring part (checked in
    // `new`), and every offset below is inside it ---

    /// The avail-ring u16 at byte `off` (`off` even, `off + 2 <= 6 + 2 * size`).
    #[inline]
    fn avail_atomic(&self, off: usize) -> &AtomicU16 {
        debug_assert!(off & 1 == 0 && off + 2 <= 6 + 2 * usize::from(self.size));
        // SAFETY: `avail` is 2-aligned and the `6 + 2 * size` bytes after it lie in a mapping
        // owned by `self.mem` (both checked in `new`); callers pass even offsets inside that
        // range (constants, or `4 + 2 * slot` with slot < size, or `4 + 2 * size`). AtomicU16
        // has u16's layout; the guest writes these words too, which is what atomics are for.
        unsafe { &*(self.avail.add(off) as *const AtomicU16) }
    }

    /// The used-ring u16 at byte `off` (0 = flags, 2 = idx).
    #[inline]
    fn used_atomic(&self, off: usize) -> &AtomicU16 {
        debug_assert!(off == 0 || off == 2);
        // SAFETY: `used` is 4-aligned and its `6 + 8 * size` bytes lie in a mapping owned by
        // `self.mem` (checked in `new`); off is 0 or 2.
        unsafe { &*(self.used.add(off) as *const AtomicU16) }
    }

    #[inline]
    fn avail_entry(&self, idx: u16) -> u16 {
        let slot = usize::from(idx & (self.size - 1));
        self.avail_atomic(4 + 2 * slot).load(Ordering::Relaxed)
    }

    #[inline]
    fn write_used(&self, idx: u16, id: u16, len: u32) {
        let slot = usize::from(idx & (self.size - 1));
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&u32::from(id).to_le_bytes());
        e[4..].copy_from_slice(&len.to_le_bytes());
        // SAFETY: slot < size, so `4 + 8 * slot + 8 <= 6 + 8 * size`: inside the used ring
        // (checked in `new`, writable mapping owned by `self.mem`); `e` is a distinct local.
        // A plain copy, as everything but indices in guest-shared memory.
        unsafe { std::ptr::copy_nonoverlapping(e.as_ptr(), self.used.add(4 + 8 * slot), 8) };
    }

    #[inline]
    fn read_desc(&self, i: u16) -> Option<Desc> {
        if i >= self.size {
            return None;
        }
        let mut b = [0u8; 16];
        // SAFETY: i < size, so `16 * i + 16 <= 16 * size`: inside the descriptor table (checked
        // in `new`, mapping owned by `self.mem`); `b` is a distinct local. Copied out, then
        // parsed and checked by the callers.
        unsafe {
            std::ptr::copy_nonoverlapping(self.desc.add(16 * usize::from(i)), b.as_mut_ptr(), 16)
        };
        Some(Desc::parse(&b))
    }

    /// Prefetches descriptor `i` (a hint; `i` is masked into the table).
    #[inline]
    fn prefetch_desc(&self, i: u16) {
        #[cfg(target_arch = "x86_64")]
        {
            let i = usize::from(i & (self.size - 1));
            // SAFETY: the address is inside the descriptor table (i < size); prefetch never
            // faults and has no effect on memory.
            unsafe {
                std::arch::x86_64::_mm_prefetch(
                    self.desc.add(16 * i) as *const i8,
                    std::arch::x86_64::_MM_HINT_T0,
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
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
                let mut b = [0u8; 16];
                if table.read(i as usize * 16, &mut b) != 16 {
                    return false;
                }
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

    /// Entries the guest made available (at least `want` if it has that many), or None (and
    /// the ring marked broken) when the guest's index is more than a ring ahead of ours.
    ///
    /// avail.idx is loaded (Acquire) only when the index seen last time leaves fewer than
    /// `want` entries: the load usually misses the cache (the guest just wrote that line).
    #[inline]
    fn available(&mut self, want: usize) -> Option<u16> {
        let n = self.avail_shadow.wrapping_sub(self.last_avail);
        if usize::from(n) >= want {
            return Some(n);
        }
        let idx = self.avail_atomic(2).load(Ordering::Acquire);
        let n = idx.wrapping_sub(self.last_avail);
        if n > self.size {
            self.broken = true;
            return None;
        }
        self.avail_shadow = idx;
        Some(n)
    }

    /// Reads one transmit chain (guest → us) into `pkt` (cleared, `queue` set by the caller),
    /// skipping the virtio-net header. `hint`: region of the last buffer translated.
    #[inline]
    fn parse_tx_chain(&self, head: u16, pkt: &mut PktRef, hint: &mut usize) -> bool {
        let mem = &*self.mem;
        let hdr = self.hdr_len as u32;
        // Fast path: header and frame in one descriptor (what virtio_user sends). Same checks
        // as the walk below: read-only buffer inside one region, frame of 1..=MAX_FRAME bytes.
        if head < self.size {
            if let Some(d) = self.read_desc(head) {
                if d.flags & (DESC_F_NEXT | DESC_F_INDIRECT | DESC_F_WRITE) == 0 {
                    if d.len <= hdr || d.len - hdr > MAX_FRAME {
                        return false;
                    }
                    return match mem.gpa_seg_skip(hint, d.addr, d.len, hdr) {
                        Some(s) => {
                            let q = pkt.queue;
                            pkt.set_single(s, q);
                            true
                        }
                        None => false,
                    };
                }
            }
        }
        let mut skip = hdr;
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
            let Some(seg) = mem.gpa_seg_skip(hint, d.addr, d.len, skip.min(d.len)) else {
                return false;
            };
            if skip >= d.len {
                skip -= d.len;
                return true;
            }
            skip = 0;
            pkt.push_seg(seg)
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
        let want = out.len().min(MAX_BURST - self.pending.len());
        let Some(n) = self.available(want) else {
            st.count_drop(Drop::BadDesc, 1);
            tracing::warn!("vhost-user: guest avail index ran ahead of the ring; ring stopped");
            return 0;
        };
        let n = usize::from(n).min(want);
        // Take the burst's heads first and prefetch their descriptors (guest-written lines).
        let first = self.pending.len();
        for i in 0..n {
            let head = self.avail_entry(self.last_avail.wrapping_add(i as u16));
            self.prefetch_desc(head);
            self.pending.push(head);
        }
        self.last_avail = self.last_avail.wrapping_add(n as u16);
        let mut k = 0;
        let mut hint = self.region_hint;
        for i in first..first + n {
            let head = self.pending[i];
            let pkt = &mut out[k];
            pkt.clear();
            pkt.queue = q;
            if self.parse_tx_chain(head, pkt, &mut hint) {
                if let Some(s) = pkt.single() {
                    s.prefetch();
                }
                st.rx_packets += 1;
                st.rx_bytes += u64::from(pkt.len());
                k += 1;
            } else {
                st.count_drop(Drop::BadDesc, 1);
            }
        }
        self.region_hint = hint;
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
        let Some(mut left) = self.available(items.len()) else {
            st.count_drop(Drop::BadDesc, items.len() as u64);
            tracing::warn!("vhost-user: guest avail index ran ahead of the ring; ring stopped");
            return 0;
        };
        self.prefetch_rx_chains(pkts, items, usize::from(left));
        let old = self.used_idx;
        let mut sent = 0;
        let mut reloaded = false;
        for (i, it) in items.iter().enumerate() {
            let Some(mut rd) = PktReader::for_item(pkts, it, st) else {
                continue;
            };
            let out_len = rd.out_len();
            let mut put = self.put_packet(&mut rd, &mut left);
            if matches!(put, Put::NoRoom) && !reloaded {
                // The index seen earlier may be stale (packets spanning several chains): look
                // at avail.idx once more before dropping.
                reloaded = true;
                match self.available(usize::from(self.size)) {
                    Some(n) if n > left => {
                        left = n;
                        rd = match PktReader::for_item(pkts, it, st) {
                            Some(rd) => rd,
                            None => continue,
                        };
                        put = self.put_packet(&mut rd, &mut left);
                    }
                    Some(_) => {}
                    None => {
                        st.count_drop(Drop::BadDesc, (items.len() - i) as u64);
                        tracing::warn!(
                            "vhost-user: guest avail index ran ahead of the ring; ring stopped"
                        );
                        break;
                    }
                }
            }
            match put {
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

    /// Prefetches what filling the next receive chains with `items` will write: the chains'
    /// descriptors first, then (one-descriptor chains) the lines of each buffer the header and
    /// frame will cover, for writing, and the used-ring slots.
    ///
    /// Why: those lines were last written by the guest's core. Stores commit in order, so
    /// without this the first store of every packet into its buffer waited a full cross-core
    /// miss with the rest of the packet's stores queued behind it, one packet after the other
    /// (the hottest instruction of the bridge profile). Issued before any store of the burst,
    /// the ownership requests overlap. Hints only: nothing read here is trusted or kept;
    /// `put_packet` reads and checks every entry and descriptor again.
    #[inline]
    fn prefetch_rx_chains(&self, pkts: &[PktRef], items: &[TxItem], left: usize) {
        let n = items.len().min(left).min(MAX_BURST);
        for j in 0..n {
            self.prefetch_desc(self.avail_entry(self.last_avail.wrapping_add(j as u16)));
        }
        let mut hint = self.region_hint;
        for (j, it) in items[..n].iter().enumerate() {
            let head = self.avail_entry(self.last_avail.wrapping_add(j as u16));
            let Some(d) = self.read_desc(head) else {
                continue;
            };
            if d.flags & (DESC_F_NEXT | DESC_F_INDIRECT | DESC_F_WRITE) != DESC_F_WRITE {
                continue;
            }
            let Some(s) = self.mem.gpa_seg_mut_hint(&mut hint, d.addr, d.len) else {
                continue;
            };
            let frame = pkts
                .get(usize::from(it.idx))
                .map_or(0, |p| p.len() as usize + 4);
            let end = (self.hdr_len + frame).min(s.len() as usize).min(256);
            let mut off = 0;
            while off < end {
                s.prefetch_write_at(off);
                off += 64;
            }
            s.prefetch_write_at(end.saturating_sub(1));
        }
        let mut j = 0;
        while j < n {
            self.prefetch_used(self.used_idx.wrapping_add(j as u16));
            j += 8;
        }
        if n > 0 {
            self.prefetch_used(self.used_idx.wrapping_add(n as u16 - 1));
        }
    }

    /// Prefetches, for writing, the used-ring slot of index `idx` (a hint; masked into the ring).
    #[inline]
    fn prefetch_used(&self, idx: u16) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot = usize::from(idx & (self.size - 1));
            // SAFETY: slot < size, so the address is inside the used ring (checked in `new`).
            // `prefetchw` is a hint: it never faults, changes no architectural state (CPUs
            // without PRFCHW execute it as a NOP), touches no stack or flags.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{p}]",
                    p = in(reg) self.used.add(4 + 8 * slot),
                    options(nostack, preserves_flags, readonly)
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = idx;
    }

    /// Places one packet in as many receive chains as it needs (one without MRG_RXBUF).
    ///
    /// Each chain's used entry is written as soon as the chain is filled, into the used-ring
    /// slots after `used_idx`: the guest reads no slot at or past `used.idx`, so they become
    /// visible only when `publish_used` stores the new index. A packet that does not fit
    /// (`TooBig`) leaves `used_idx`/`last_avail` untouched, so its slots are simply reused.
    fn put_packet(&mut self, rd: &mut PktReader<'_>, left: &mut u16) -> Put {
        let hdr_len = self.hdr_len;
        if *left == 0 {
            return Put::NoRoom;
        }
        // Fast path: the next chain is one writable descriptor with room for header and frame
        // (what virtio_user and Linux post). Anything else takes the general loop below, which
        // starts again at the same avail entry.
        let head = self.avail_entry(self.last_avail);
        if head < self.size {
            if let Some(d) = self.read_desc(head) {
                if d.flags & (DESC_F_NEXT | DESC_F_INDIRECT | DESC_F_WRITE) == DESC_F_WRITE
                    && u64::from(d.len) >= hdr_len as u64 + u64::from(rd.out_len())
                {
                    if let Some(s) = self
                        .mem
                        .gpa_seg_mut_hint(&mut self.region_hint, d.addr, d.len)
                    {
                        // Fixed-size header stores (the length fits: checked above).
                        if hdr_len == 12 {
                            s.write_array(0, &ONE_BUF_HDR);
                        } else {
                            s.write_array::<10>(0, &[0; 10]);
                        }
                        let wrote = hdr_len + rd.fill(&s, hdr_len);
                        self.write_used(self.used_idx, head, wrote as u32);
                        self.used_idx = self.used_idx.wrapping_add(1);
                        self.last_avail = self.last_avail.wrapping_add(1);
                        *left -= 1;
                        return Put::Sent;
                    }
                }
            }
        }
        let mut nch = 0u16;
        let mut cursor = self.last_avail;
        let mut room = *left;
        let mut hdr = SegMut::EMPTY;
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
            let mut hint = self.region_hint;
            let ok = self.walk(head, |d| {
                if d.flags & DESC_F_WRITE == 0 {
                    return false;
                }
                let Some(s) = mem.gpa_seg_mut_hint(&mut hint, d.addr, d.len) else {
                    return false;
                };
                let mut off = 0usize;
                if !have_hdr {
                    if (s.len() as usize) < hdr_len {
                        return false;
                    }
                    s.write(0, &ZERO_HDR[..hdr_len]);
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
            hdr.write(10, &nch.to_le_bytes());
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
