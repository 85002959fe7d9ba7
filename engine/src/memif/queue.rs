//! memif data path: receive and transmit bursts on one ring each, for both roles.
//!
//! Which counter each side owns (see `ring.rs` for the ordering rules):
//!
//! | queue                 | ring | we load (Acquire) | we store (Release) |
//! |-----------------------|------|-------------------|--------------------|
//! | server rx             | C2S  | head              | tail               |
//! | server tx             | S2C  | head              | tail               |
//! | client rx             | S2C  | tail              | head (refill)      |
//! | client tx             | C2S  | tail              | head               |
//!
//! Buffer ownership: client-role queues know their buffers (region, base offset, size) and
//! rewrite whole descriptors from that knowledge, never trusting offsets read back from shared
//! memory. Server-role queues use the client's buffers: every descriptor is copied out and
//! validated (region, offset + length inside the region, length limits) before use.
//!
//! Hot path: no allocation, no locks; one eventfd write per transmit burst at most (only when the
//! peer did not set MASK_INT). The peer's MASK_INT flag is cached: reloaded with the server-role
//! head (same cache line) and on every control tick ([`TxQueue::refresh_mask`], which also delivers
//! the one interrupt a peer that just unmasked may have missed). Per burst the peer's counter is
//! loaded once and the descriptor array is taken as one checked view ([`Ring::descs`]); an empty
//! ring costs that one load. The common case has fast paths with the same checks and counters as
//! the general ones: rx of a one-descriptor packet (no NEXT) skips the chain loop; tx of an
//! unedited one-segment packet that fits one buffer is one copy and one descriptor write (no
//! [`PktReader`]), done in two passes per chunk of slots (take and validate the descriptors, then
//! copy) until the first packet that needs the general path. A peer counter out of range sets
//! `violation`; the port then disconnects from its control path.
use crate::memif::ring::{check_desc, check_desc_mut, DescTable, Ring};
use crate::memif::wire::{Desc, DESC_FLAG_NEXT, RING_FLAG_MASK_INT};
use crate::port::{Drop, PktReader, PktRef, QueueStats, TxItem, VlanEdit, MAX_FRAME, MAX_SEGS};
use crate::shm::{MmapRegion, Seg, SegMut};
use std::os::fd::OwnedFd;

/// Largest single buffer a server-role queue accepts from a client descriptor.
pub const MAX_PEER_BUFFER: u32 = 65536;
/// Longest chain a server-role queue builds for one packet.
const MAX_TX_CHAIN: usize = 64;
/// How many packets ahead a transmit burst prefetches source and destination buffers.
const TX_AHEAD: u16 = 4;
/// Slots the transmit fast loop takes (validates, prefetches) per pass.
const FAST_CHUNK: usize = 32;

/// Buffers owned by a client-role ring: slot `i` uses `base + (i & mask) * size` in `region`.
#[derive(Debug, Clone, Copy)]
pub struct BufLayout {
    pub region: u16,
    pub base: u32,
    pub size: u32,
}

impl BufLayout {
    #[inline]
    fn desc(&self, ring: &Ring, counter: u16, length: u32, flags: u16) -> Desc {
        let slot = u32::from(counter) & (ring.size() - 1);
        Desc {
            flags,
            region: self.region,
            length,
            offset: self.base + slot * self.size,
            metadata: 0,
        }
    }
}

/// Outcome of placing one packet in a transmit ring.
enum Placed {
    /// Written; its length in bytes.
    Sent(u32),
    /// Dropped for this reason (not counted yet).
    Dropped(Drop),
    /// Dropped and already counted (`PktReader::for_item`).
    Skipped,
}

/// A receive queue.
pub struct RxQueue {
    pub ring: Ring,
    /// Some for the client role (S2C ring, we refill), None for the server role (C2S ring).
    own: Option<BufLayout>,
    /// Next counter to read.
    cursor: u16,
    /// Counter up to which slots were handed back to the peer.
    released: u16,
    /// Client role: our head (slots given to the server up to here).
    refill: u16,
    max_len: u32,
    /// Keeps the ring's interrupt eventfd open while connected.
    _irq: Option<OwnedFd>,
    /// Set when the peer broke the ring protocol (reason); the port disconnects.
    pub violation: Option<&'static str>,
}

/// A transmit queue.
pub struct TxQueue {
    pub ring: Ring,
    own: Option<BufLayout>,
    /// Our producer counter (head for C2S, tail for S2C).
    counter: u16,
    /// The peer's counter as last loaded (and validated): S2C head for the server role, C2S
    /// tail for the client role. It only moves forward, so room computed from it is never
    /// more than the real room; it is reloaded only when a burst needs more than that.
    peer_seen: u16,
    irq: Option<OwnedFd>,
    /// The peer's MASK_INT flag as last loaded (it polls: no eventfd write needed). The flag
    /// shares the ring's first cache line with the head the client writes on every refill,
    /// so it is loaded only with the peer's counter (`reload_room`) and at every control
    /// tick (`refresh_mask`), not per burst. Starts false: signal until seen masked.
    peer_masked: bool,
    /// Packets were published without a signal because of a cached `peer_masked`: if the
    /// peer turns out unmasked at the next refresh, it gets its signal then (at most one
    /// control tick, about 1 ms, late).
    unsignaled: bool,
    /// Set when the peer broke the ring protocol (reason); the port disconnects.
    pub violation: Option<&'static str>,
}

impl RxQueue {
    /// Server role: consume a C2S ring. `start` is the ring's tail at connect time.
    pub fn server(ring: Ring, start: u16, irq: Option<OwnedFd>) -> RxQueue {
        RxQueue {
            ring,
            own: None,
            cursor: start,
            released: start,
            refill: 0,
            max_len: MAX_PEER_BUFFER,
            _irq: irq,
            violation: None,
        }
    }

    /// Client role: consume an S2C ring whose buffers we own; call [`RxQueue::refill`] once
    /// connected to hand all of them to the server.
    pub fn client(ring: Ring, bufs: BufLayout, irq: Option<OwnedFd>) -> RxQueue {
        RxQueue {
            ring,
            own: Some(bufs),
            cursor: 0,
            released: 0,
            refill: 0,
            max_len: bufs.size,
            _irq: irq,
            violation: None,
        }
    }

    /// Client role: gives every slot we are not holding back to the server (desc length =
    /// buffer size), then publishes head.
    pub fn refill(&mut self, regions: &[MmapRegion]) {
        let Some(bufs) = self.own else { return };
        let Some(r) = regions.get(usize::from(self.ring.region)) else {
            return;
        };
        let target = self.released.wrapping_add(self.ring.size() as u16);
        // ring.size() may be 65536 >> 2 at most (log2 <= 14), so the u16 cast is exact.
        if self.refill == target {
            return;
        }
        while self.refill != target {
            let d = bufs.desc(&self.ring, self.refill, bufs.size, 0);
            self.ring.write_desc(r, self.refill, &d);
            self.refill = self.refill.wrapping_add(1);
        }
        self.ring.store_head(r, self.refill);
    }

    /// Receives up to `out.len()` packets (see `Port::rx_burst`).
    pub fn burst(
        &mut self,
        q: u16,
        regions: &[MmapRegion],
        out: &mut [PktRef],
        st: &mut QueueStats,
    ) -> usize {
        if self.violation.is_some() {
            return 0;
        }
        let Some(r) = regions.get(usize::from(self.ring.region)) else {
            return 0;
        };
        // The peer's counter: head for a C2S ring, tail for an S2C ring.
        let limit = if self.own.is_some() {
            self.ring.load_tail(r)
        } else {
            self.ring.load_head(r)
        };
        if limit == self.cursor {
            // Nothing new (the idle poll: one load of the peer's counter). Our cursor is never
            // behind `released`, so the peer's counter equal to it is in range.
            return 0;
        }
        let Some(published) = self.ring.distance(self.released, limit) else {
            self.violation = Some("peer ring counter further than the ring size from ours");
            return 0;
        };
        if self.own.is_some() {
            // The server may not fill more slots than we gave it.
            let given = self.refill.wrapping_sub(self.released);
            if published > given {
                self.violation = Some("server filled more S2C slots than the client gave it");
                return 0;
            }
        }
        let mut avail = limit.wrapping_sub(self.cursor);
        if avail > published {
            // Our cursor is ahead of the peer's counter: it moved backwards.
            self.violation = Some("peer ring counter moved backwards");
            return 0;
        }
        let Some(descs) = self.ring.descs(r) else {
            return 0;
        };
        // Fetch the burst's descriptor lines at once (a hint): they were just written by the
        // peer's core, and the reads below would otherwise miss one line after another.
        descs.prefetch(
            self.cursor,
            avail.min(u16::try_from(out.len()).unwrap_or(u16::MAX)),
            false,
        );
        // A single buffer longer than this is dropped (the chain path's frame limit).
        let single_max = self.max_len.min(MAX_FRAME);
        let mut n = 0usize;
        let mut bytes = 0u64;
        let mut bad_descs = 0u64;
        while n < out.len() && avail > 0 {
            let d = descs.get(self.cursor);
            if !d.has_next() {
                // Fast path: a one-descriptor packet (the common case).
                self.cursor = self.cursor.wrapping_add(1);
                avail -= 1;
                match check_desc(&d, regions, single_max) {
                    Some(seg) if d.length > 0 => {
                        // The frame was written by the peer's core: start fetching its first
                        // line now, so the forwarding decision and the copy find it arriving.
                        seg.prefetch();
                        out[n].set_single(seg, q);
                        bytes += u64::from(d.length);
                        n += 1;
                    }
                    _ => bad_descs += 1,
                }
                continue;
            }
            let start = self.cursor;
            let pkt = &mut out[n];
            pkt.clear();
            pkt.queue = q;
            let mut bad = false;
            let mut used = 0u16;
            let complete = loop {
                if used == avail {
                    break false;
                }
                let d = descs.get(self.cursor.wrapping_add(used));
                used += 1;
                match check_desc(&d, regions, self.max_len) {
                    Some(seg) if !bad => {
                        if !pkt.push_seg(seg) {
                            bad = true;
                        }
                    }
                    Some(_) => {}
                    None => bad = true,
                }
                if !d.has_next() {
                    break true;
                }
            };
            if !complete {
                if u32::from(used) < self.ring.size() {
                    // The rest of the chain is not published yet; wait for it.
                    break;
                }
                // A chain as long as the ring can never complete.
                bad = true;
            }
            self.cursor = start.wrapping_add(used);
            avail -= used;
            if bad || pkt.is_empty() || pkt.len() > MAX_FRAME || pkt.segs().len() > MAX_SEGS {
                bad_descs += 1;
                continue;
            }
            bytes += u64::from(pkt.len());
            n += 1;
        }
        st.rx_packets += n as u64;
        st.rx_bytes += bytes;
        if bad_descs > 0 {
            st.count_drop(Drop::BadDesc, bad_descs);
        }
        if n == 0 {
            // Only bad descriptors were consumed: the dataplane calls `release` only after a
            // non-empty burst, so hand those slots back now or the peer's ring stalls.
            self.release(regions);
        }
        n
    }

    /// Hands the slots read so far back to the peer (see `Port::rx_release`).
    pub fn release(&mut self, regions: &[MmapRegion]) {
        if self.cursor == self.released {
            return;
        }
        self.released = self.cursor;
        if self.own.is_some() {
            self.refill(regions);
        } else if let Some(r) = regions.get(usize::from(self.ring.region)) {
            self.ring.store_tail(r, self.released);
        }
    }

    /// Marks the ring as polled: the producer need not signal our eventfd.
    pub fn mask_interrupts(&self, regions: &[MmapRegion]) {
        if let Some(r) = regions.get(usize::from(self.ring.region)) {
            let f = self.ring.flags(r);
            self.ring.store_flags(r, f | RING_FLAG_MASK_INT);
        }
    }
}

impl TxQueue {
    /// Server role: produce into an S2C ring; `start` is the ring's tail at connect time.
    pub fn server(ring: Ring, start: u16, irq: Option<OwnedFd>) -> TxQueue {
        TxQueue {
            ring,
            own: None,
            counter: start,
            peer_seen: start,
            irq,
            peer_masked: false,
            unsignaled: false,
            violation: None,
        }
    }

    /// Client role: produce into a C2S ring with our own buffers.
    pub fn client(ring: Ring, bufs: BufLayout, irq: Option<OwnedFd>) -> TxQueue {
        TxQueue {
            ring,
            own: Some(bufs),
            counter: 0,
            peer_seen: 0,
            irq,
            peer_masked: false,
            unsignaled: false,
            violation: None,
        }
    }

    /// Copies `pkts[item.idx]` for each item into the ring (see `Port::tx_burst`).
    pub fn burst(
        &mut self,
        regions: &[MmapRegion],
        pkts: &[PktRef],
        items: &[TxItem],
        st: &mut QueueStats,
    ) -> usize {
        if self.violation.is_some() {
            st.count_drop(Drop::RingFull, items.len() as u64);
            return 0;
        }
        let Some(r) = regions.get(usize::from(self.ring.region)) else {
            return 0;
        };
        // Slots we may fill: C2S: size - (head - tail); S2C: head - tail. The peer's counter
        // is a cross-core cache miss each time it is loaded: use the last value while it
        // leaves room for the whole burst.
        let mut room = self.room(self.peer_seen);
        // Whether the peer's counter was loaded in this burst (a stale one may still be used).
        let mut fresh = false;
        if room.is_none_or(|n| usize::from(n) < items.len()) {
            room = self.reload_room(r);
            fresh = true;
        }
        let Some(mut room) = room else {
            self.violation = Some("peer ring counter further than the ring size from ours");
            st.count_drop(Drop::RingFull, items.len() as u64);
            return 0;
        };
        let Some(descs) = self.ring.descs(r) else {
            return 0;
        };
        // Prefetch (hints only): the descriptors for the slots this burst fills; the fast loop
        // then prefetches its destination buffers a chunk at a time, the general loop the
        // source and destination TX_AHEAD packets ahead, so the cross-core cache misses of the
        // copies overlap instead of stalling one by one.
        let fill = room.min(u16::try_from(items.len()).unwrap_or(u16::MAX));
        // Server role: the client's descriptors are read, then rewritten (length, flags);
        // client role: ours are only written.
        descs.prefetch(self.counter, fill, true);
        // The common case in two tight passes per chunk; it stops at the first packet it does
        // not handle, which the loop below then places.
        let (mut sent, mut bytes) =
            self.burst_fast(descs, regions, pkts, &items[..usize::from(fill)]);
        room -= sent as u16;
        let items = &items[sent..];
        if items.is_empty() {
            return self.publish(r, sent, bytes, st);
        }
        let fill = fill - sent as u16;
        for k in 0..fill.min(TX_AHEAD) {
            self.prefetch_slot(descs, regions, pkts, items, k);
        }
        for (i, it) in items.iter().enumerate() {
            if (i as u16) < fill.saturating_sub(TX_AHEAD) {
                // One slot per packet (the common case); a wrong guess only wastes the hint.
                self.prefetch_slot(descs, regions, pkts, items, i as u16 + TX_AHEAD);
            }
            let mut placed = self.place(r, descs, regions, pkts, it, &mut room, st);
            if matches!(placed, Placed::Dropped(Drop::RingFull)) && !fresh {
                // The room came from a stale peer counter (enough for one slot per packet,
                // not for chains): load it once before dropping. `place` wrote nothing.
                fresh = true;
                match self.reload_room(r) {
                    Some(n) if n > room => {
                        room = n;
                        placed = self.place(r, descs, regions, pkts, it, &mut room, st);
                    }
                    Some(_) => {}
                    None => {
                        self.violation =
                            Some("peer ring counter further than the ring size from ours");
                    }
                }
            }
            match placed {
                Placed::Sent(b) => {
                    bytes += u64::from(b);
                    sent += 1;
                }
                Placed::Dropped(why) => st.count_drop(why, 1),
                Placed::Skipped => {}
            }
            if self.violation.is_some() {
                st.count_drop(Drop::RingFull, (items.len() - i - 1) as u64);
                break;
            }
        }
        self.publish(r, sent, bytes, st)
    }

    /// Ends a burst: counts `sent` packets of `bytes`, publishes our counter and signals the
    /// peer (unless it masked interrupts, as last seen) when anything was sent. Returns `sent`.
    #[inline]
    fn publish(&mut self, r: &MmapRegion, sent: usize, bytes: u64, st: &mut QueueStats) -> usize {
        st.tx_packets += sent as u64;
        st.tx_bytes += bytes;
        if sent > 0 {
            match self.own {
                Some(_) => self.ring.store_head(r, self.counter),
                None => self.ring.store_tail(r, self.counter),
            }
            if self.peer_masked {
                self.unsignaled = true;
            } else {
                self.signal();
            }
        }
        sent
    }

    /// Writes the peer's interrupt eventfd (if it gave one); nothing is left unsignaled.
    fn signal(&mut self) {
        self.unsignaled = false;
        if let Some(fd) = &self.irq {
            let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Control tick: reloads the peer's MASK_INT flag; a peer that unmasked since packets
    /// were published unsignaled gets its signal now.
    pub fn refresh_mask(&mut self, regions: &[MmapRegion]) {
        let Some(r) = regions.get(usize::from(self.ring.region)) else {
            return;
        };
        self.load_mask(r);
        if self.unsignaled && !self.peer_masked {
            self.signal();
        }
    }

    /// Loads the peer's MASK_INT flag into `peer_masked`.
    #[inline]
    fn load_mask(&mut self, r: &MmapRegion) {
        self.peer_masked = self.ring.flags(r) & RING_FLAG_MASK_INT != 0;
    }

    /// The transmit fast loop over `items` (at most the room left, so no slot check), both
    /// roles: per chunk of [`FAST_CHUNK`], pass 1 takes the descriptors of the next slots (the
    /// server role copies the client's out and validates them: region, offset + length inside
    /// it, length <= [`MAX_PEER_BUFFER`]; the client role builds its own from the buffer
    /// layout) and prefetches their buffers for writing (the receiving port prefetched the
    /// sources); pass 2 copies each unedited one-segment packet that fits its slot's buffer
    /// and writes the descriptor from the validated copy (never re-read: the client may change
    /// it meanwhile). Stops at the first descriptor or packet it does not handle (bad
    /// descriptor, edit, chain, too long for the buffer), leaving it to the general path,
    /// which counts or places it. Returns (packets sent, bytes); our counter is advanced past
    /// them.
    #[inline]
    fn burst_fast(
        &mut self,
        descs: DescTable,
        regions: &[MmapRegion],
        pkts: &[PktRef],
        items: &[TxItem],
    ) -> (usize, u64) {
        let mut done = 0usize;
        let mut bytes = 0u64;
        let mut slot = [(Desc::default(), SegMut::EMPTY); FAST_CHUNK];
        while done < items.len() {
            let chunk = &items[done..items.len().min(done + FAST_CHUNK)];
            // One loop per role (the role is fixed for the queue's life).
            let ring = &self.ring;
            let ok = match self.own {
                Some(bufs) => take_slots(&mut slot[..chunk.len()], self.counter, regions, |c| {
                    (bufs.desc(ring, c, bufs.size, 0), bufs.size)
                }),
                None => take_slots(&mut slot[..chunk.len()], self.counter, regions, |c| {
                    (descs.get(c), MAX_PEER_BUFFER)
                }),
            };
            let mut k = 0usize;
            while k < ok {
                let it = &chunk[k];
                let Some(src) = pkts
                    .get(usize::from(it.idx))
                    .filter(|_| it.edit == VlanEdit::Keep)
                    .and_then(PktRef::single)
                else {
                    break;
                };
                let (mut d, dst) = slot[k];
                let len = src.len();
                if len > d.length {
                    break;
                }
                put_one(descs, self.counter, &mut d, dst, src);
                self.counter = self.counter.wrapping_add(1);
                bytes += u64::from(len);
                k += 1;
            }
            done += k;
            if k < chunk.len() {
                break;
            }
        }
        (done, bytes)
    }

    /// Loads the peer's counter and returns the room it leaves (remembered when valid).
    #[inline]
    fn reload_room(&mut self, r: &MmapRegion) -> Option<u16> {
        let seen = match self.own {
            Some(_) => self.ring.load_tail(r),
            None => {
                let head = self.ring.load_head(r);
                // Same cache line as the head just loaded: the flag comes for free.
                self.load_mask(r);
                head
            }
        };
        let room = self.room(seen);
        if room.is_some() {
            self.peer_seen = seen;
        }
        room
    }

    /// Places one packet: the one-copy fast path, else a (chained) general write. On success
    /// advances our counter and takes the slots from `room`. A `RingFull` drop writes nothing,
    /// so the packet may be placed again once there is more room.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn place(
        &mut self,
        r: &MmapRegion,
        descs: DescTable,
        regions: &[MmapRegion],
        pkts: &[PktRef],
        it: &TxItem,
        room: &mut u16,
        st: &mut QueueStats,
    ) -> Placed {
        // Fast path: an unedited one-segment packet into one buffer, one copy.
        if let (VlanEdit::Keep, Some(src)) = (
            it.edit,
            pkts.get(usize::from(it.idx)).and_then(PktRef::single),
        ) {
            match self.put_single(descs, regions, src, *room) {
                Ok(()) => {
                    *room -= 1;
                    self.counter = self.counter.wrapping_add(1);
                    return Placed::Sent(src.len());
                }
                Err(None) => {} // needs a chain: the general path below
                Err(Some(why)) => return Placed::Dropped(why),
            }
        }
        let Some(mut rd) = PktReader::for_item(pkts, it, st) else {
            return Placed::Skipped; // counted by `for_item`
        };
        let out_len = rd.out_len();
        let used = match self.own {
            Some(bufs) => self.put_own(r, bufs, &mut rd, *room),
            None => self.put_peer(r, regions, &mut rd, *room),
        };
        match used {
            Ok(u) => {
                *room -= u;
                self.counter = self.counter.wrapping_add(u);
                Placed::Sent(out_len)
            }
            Err(why) => Placed::Dropped(why),
        }
    }

    /// Slots we may fill given the peer's counter `seen`; None when it is further than the
    /// ring size from ours (a protocol violation).
    #[inline]
    fn room(&self, seen: u16) -> Option<u16> {
        match self.own {
            Some(_) => self
                .ring
                .distance(seen, self.counter)
                .map(|used| self.ring.size() as u16 - used),
            None => self.ring.distance(self.counter, seen),
        }
    }

    /// Prefetches the source of `items[k]` and the buffer of the slot `k` after our counter
    /// (for writing). Reads the slot's descriptor like the copy will, so it validates it the
    /// same way; an invalid one is simply not prefetched (the copy path counts it).
    #[inline]
    fn prefetch_slot(
        &self,
        descs: DescTable,
        regions: &[MmapRegion],
        pkts: &[PktRef],
        items: &[TxItem],
        k: u16,
    ) {
        if let Some(src) = items
            .get(usize::from(k))
            .and_then(|it| pkts.get(usize::from(it.idx)))
            .and_then(|p| p.segs().first())
        {
            src.prefetch();
        }
        let c = self.counter.wrapping_add(k);
        let (d, max) = match self.own {
            Some(bufs) => (bufs.desc(&self.ring, c, bufs.size, 0), bufs.size),
            None => (descs.get(c), MAX_PEER_BUFFER),
        };
        if let Some(dst) = check_desc_mut(&d, regions, max) {
            dst.prefetch_write();
        }
    }

    /// One-buffer fast path: copies `src` into the next slot's buffer (ours, or the client's
    /// validated descriptor) and writes its descriptor. `Err(None)`: the packet needs a chain
    /// (nothing written); `Err(Some(why))`: dropped.
    #[inline]
    fn put_single(
        &mut self,
        descs: DescTable,
        regions: &[MmapRegion],
        src: &Seg,
        room: u16,
    ) -> Result<(), Option<Drop>> {
        if room == 0 {
            return Err(Some(Drop::RingFull));
        }
        let len = src.len();
        let (mut d, dst) = match self.own {
            Some(bufs) => {
                if len > bufs.size {
                    return Err(None);
                }
                let d = bufs.desc(&self.ring, self.counter, len, 0);
                let Some(dst) = check_desc_mut(&d, regions, bufs.size) else {
                    return Err(Some(Drop::NoBuffer));
                };
                (d, dst)
            }
            None => {
                // The client's descriptor: its length is the buffer's capacity.
                let d = descs.get(self.counter);
                let Some(dst) = check_desc_mut(&d, regions, MAX_PEER_BUFFER) else {
                    self.violation = Some("descriptor from the client outside its regions");
                    return Err(Some(Drop::BadDesc));
                };
                if d.length < len {
                    // Too small for the packet: the general path chains buffers.
                    return Err(None);
                }
                (d, dst)
            }
        };
        put_one(descs, self.counter, &mut d, dst, src);
        Ok(())
    }

    /// Client role: write into our own buffers, chaining with NEXT. Returns slots used.
    fn put_own(
        &self,
        r: &MmapRegion,
        bufs: BufLayout,
        rd: &mut PktReader,
        room: u16,
    ) -> Result<u16, Drop> {
        let need = rd.out_len().div_ceil(bufs.size).max(1);
        if need > u32::from(room) {
            return Err(Drop::RingFull);
        }
        for k in 0..need as u16 {
            let c = self.counter.wrapping_add(k);
            let mut d = bufs.desc(&self.ring, c, 0, 0);
            let Some(seg) = r.seg_mut(d.offset as usize, bufs.size as usize) else {
                return Err(Drop::NoBuffer);
            };
            d.length = rd.fill(&seg, 0) as u32;
            if k + 1 < need as u16 {
                d.flags = DESC_FLAG_NEXT;
            }
            self.ring.write_desc(r, c, &d);
        }
        Ok(need as u16)
    }

    /// Server role: write into the client's buffers (capacity = the length the client set),
    /// chaining with NEXT. Returns slots used. Descriptors are copied out and validated first;
    /// nothing is written unless the whole packet fits.
    fn put_peer(
        &mut self,
        r: &MmapRegion,
        regions: &[MmapRegion],
        rd: &mut PktReader,
        room: u16,
    ) -> Result<u16, Drop> {
        if room == 0 {
            return Err(Drop::RingFull);
        }
        // Fast path: the packet fits the first buffer (the common case; no chain array).
        let mut first = self.ring.read_desc(r, self.counter);
        let Some(seg) = check_desc_mut(&first, regions, MAX_PEER_BUFFER) else {
            self.violation = Some("descriptor from the client outside its regions");
            return Err(Drop::BadDesc);
        };
        if first.length >= rd.out_len() {
            first.length = rd.fill(&seg, 0) as u32;
            first.flags = 0;
            self.ring.write_desc(r, self.counter, &first);
            return Ok(1);
        }
        let mut chain = [Desc::default(); MAX_TX_CHAIN];
        let mut n = 0usize;
        let mut cap = 0u64;
        while cap < u64::from(rd.out_len()) || n == 0 {
            if n == usize::from(room) || n == MAX_TX_CHAIN {
                return Err(Drop::RingFull);
            }
            let d = self.ring.read_desc(r, self.counter.wrapping_add(n as u16));
            if check_desc_mut(&d, regions, MAX_PEER_BUFFER).is_none() {
                self.violation = Some("descriptor from the client outside its regions");
                return Err(Drop::BadDesc);
            }
            cap += u64::from(d.length);
            chain[n] = d;
            n += 1;
        }
        for (k, d) in chain[..n].iter_mut().enumerate() {
            let Some(seg) = check_desc_mut(d, regions, MAX_PEER_BUFFER) else {
                return Err(Drop::BadDesc);
            };
            d.length = rd.fill(&seg, 0) as u32;
            d.flags = if k + 1 < n { DESC_FLAG_NEXT } else { 0 };
            self.ring
                .write_desc(r, self.counter.wrapping_add(k as u16), d);
        }
        Ok(n as u16)
    }
}

/// Pass 1 of [`TxQueue::burst_fast`]: fills `slots` with the descriptors of the slots from
/// `counter` on (`desc(counter)` gives a slot's descriptor and its buffer size limit), each
/// validated against the regions, and prefetches each buffer for writing. Stops at the first
/// invalid one; returns how many were taken.
#[inline(always)]
fn take_slots(
    slots: &mut [(Desc, SegMut)],
    counter: u16,
    regions: &[MmapRegion],
    desc: impl Fn(u16) -> (Desc, u32),
) -> usize {
    for (k, sl) in slots.iter_mut().enumerate() {
        let (d, max) = desc(counter.wrapping_add(k as u16));
        let Some(dst) = check_desc_mut(&d, regions, max) else {
            return k;
        };
        dst.prefetch_write();
        *sl = (d, dst);
    }
    slots.len()
}

/// Copies `src` into `dst` (a slot's validated buffer, at least `src.len()` long) and writes
/// the slot's descriptor `d` for `counter` as one unchained buffer of that length.
#[inline(always)]
fn put_one(descs: DescTable, counter: u16, d: &mut Desc, dst: SegMut, src: &Seg) {
    let len = src.len();
    dst.copy_from(0, src, 0, len as usize);
    d.length = len;
    d.flags = 0;
    descs.put(counter, d);
}
