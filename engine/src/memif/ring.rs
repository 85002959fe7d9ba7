//! Access to one memif ring living in a mapped region: header atomics and descriptor copies.
//!
//! A [`Ring`] is only a position (region index, offset, size); every access takes the
//! [`MmapRegion`] it lives in and goes through its bounds-checked accessors, so this module needs
//! no `unsafe` of its own (the aligned `AtomicU16` views come from `shm`).
//!
//! # Ordering rules (non-zero-copy memif, as DPDK `rte_eth_memif.c` does it)
//!
//! head and tail are free-running `u16` counters; slot = counter & (size - 1).
//!
//! - **C2S ring** (client → server). The client produces: it writes packet bytes into the buffer
//!   of `desc[head & mask]`, writes the descriptor (length, NEXT for chains), then
//!   `head.store(Release)`. Free slots = size - (head - tail) with `tail.load(Acquire)`. The
//!   server consumes from its local cursor up to `head.load(Acquire)`, and when done with the
//!   buffers `tail.store(Release)`.
//! - **S2C ring** (server → client). The client hands empty buffers over: it sets each
//!   descriptor's length to the buffer size, then `head.store(Release)`; slots the server may fill
//!   = head - tail. The server produces into `desc[tail & mask]` (capacity = the length the client
//!   set, validated), sets length/flags, then `tail.store(Release)`. The client consumes from its
//!   local cursor up to `tail.load(Acquire)`, then refills (advances head).
//! - Each side only ever stores the counter it owns; it keeps its own copy and never re-reads it
//!   from shared memory (the peer could have scribbled on it). A peer counter whose distance from
//!   ours exceeds the ring size is a protocol violation ([`Ring::distance`] reports it).
//! - Descriptors written by the peer are **copied out, then checked, then used**
//!   ([`Ring::read_desc`] returns a local copy; [`check_desc`] validates it against the regions).
//! - Interrupts: after producing into a ring whose flags lack `MASK_INT`, the producer writes 1 to
//!   the ring's eventfd, once per burst. A polling consumer sets `MASK_INT` in the rings it
//!   consumes.
use crate::memif::wire::{
    Desc, COOKIE, DESC_SIZE, RING_COOKIE_OFF, RING_DESC_OFF, RING_FLAGS_OFF, RING_HEAD_OFF,
    RING_TAIL_OFF,
};
use crate::shm::{MmapRegion, Seg, SegMut};
use std::sync::atomic::{AtomicU16, Ordering};

/// Largest ring accepted from a peer (log2): 16384 slots, the same limit as our config.
pub const MAX_LOG2_RING: u8 = 14;

/// Position of one ring inside a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    pub region: u16,
    off: usize,
    log2: u8,
}

impl Ring {
    /// Checks that a ring of `1 << log2` descriptors at `off` lies inside `region` and that its
    /// header words are suitably aligned; None otherwise.
    pub fn new(region_idx: u16, region: &MmapRegion, off: usize, log2: u8) -> Option<Ring> {
        if log2 == 0 || log2 > MAX_LOG2_RING || off & 7 != 0 {
            return None;
        }
        let bytes = crate::memif::wire::ring_bytes(log2);
        region.seg(off, bytes)?;
        let r = Ring {
            region: region_idx,
            off,
            log2,
        };
        // Alignment of the atomics (the mapping itself is page aligned, so this holds, but the
        // accessors check again).
        r.head(region)?;
        r.tail(region)?;
        r.flags_word(region)?;
        Some(r)
    }

    #[inline]
    pub fn size(&self) -> u32 {
        1u32 << self.log2
    }
    #[inline]
    pub fn log2(&self) -> u8 {
        self.log2
    }
    #[inline]
    pub fn offset(&self) -> usize {
        self.off
    }
    #[inline]
    fn mask(&self) -> u16 {
        (self.size() - 1) as u16
    }

    #[inline]
    fn head<'r>(&self, r: &'r MmapRegion) -> Option<&'r AtomicU16> {
        r.atomic_u16(self.off + RING_HEAD_OFF)
    }
    #[inline]
    fn tail<'r>(&self, r: &'r MmapRegion) -> Option<&'r AtomicU16> {
        r.atomic_u16(self.off + RING_TAIL_OFF)
    }
    #[inline]
    fn flags_word<'r>(&self, r: &'r MmapRegion) -> Option<&'r AtomicU16> {
        r.atomic_u16(self.off + RING_FLAGS_OFF)
    }

    /// Writes a fresh header: cookie, flags, head = tail = 0 (client side, before ADD_RING).
    pub fn init_header(&self, r: &MmapRegion, flags: u16) {
        if let Some(s) = r.seg_mut(self.off + RING_COOKIE_OFF, 4) {
            s.write(0, &COOKIE.to_le_bytes());
        }
        self.store_flags(r, flags);
        self.store_head(r, 0);
        self.store_tail(r, 0);
    }

    pub fn cookie(&self, r: &MmapRegion) -> u32 {
        let mut b = [0u8; 4];
        if let Some(s) = r.seg(self.off + RING_COOKIE_OFF, 4) {
            s.read(0, &mut b);
        }
        u32::from_le_bytes(b)
    }

    #[inline]
    pub fn flags(&self, r: &MmapRegion) -> u16 {
        self.flags_word(r).map_or(0, |a| a.load(Ordering::Relaxed))
    }
    pub fn store_flags(&self, r: &MmapRegion, v: u16) {
        if let Some(a) = self.flags_word(r) {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// `head.load(Acquire)`: pairs with the producer's release store.
    #[inline]
    pub fn load_head(&self, r: &MmapRegion) -> u16 {
        self.head(r).map_or(0, |a| a.load(Ordering::Acquire))
    }
    /// `tail.load(Acquire)`.
    #[inline]
    pub fn load_tail(&self, r: &MmapRegion) -> u16 {
        self.tail(r).map_or(0, |a| a.load(Ordering::Acquire))
    }
    /// `head.store(Release)`: publishes the descriptors and bytes written before it.
    #[inline]
    pub fn store_head(&self, r: &MmapRegion, v: u16) {
        if let Some(a) = self.head(r) {
            a.store(v, Ordering::Release);
        }
    }
    /// `tail.store(Release)`.
    #[inline]
    pub fn store_tail(&self, r: &MmapRegion, v: u16) {
        if let Some(a) = self.tail(r) {
            a.store(v, Ordering::Release);
        }
    }

    /// `to - from` as free-running counters, or None when it exceeds the ring size (a peer
    /// counter out of range: protocol violation).
    #[inline]
    pub fn distance(&self, from: u16, to: u16) -> Option<u16> {
        let d = to.wrapping_sub(from);
        if u32::from(d) > self.size() {
            None
        } else {
            Some(d)
        }
    }

    #[inline]
    fn desc_off(&self, counter: u16) -> usize {
        self.off + RING_DESC_OFF + DESC_SIZE * usize::from(counter & self.mask())
    }

    /// The whole descriptor array as one checked view, taken once per burst; descriptors are
    /// then read and written by slot through [`DescTable`] (one bounds check per access on a
    /// view whose size is a multiple of the slot stride, instead of a region lookup each).
    #[inline]
    pub fn descs(&self, r: &MmapRegion) -> Option<DescTable> {
        let seg = r.seg_mut(self.off + RING_DESC_OFF, DESC_SIZE << self.log2)?;
        Some(DescTable {
            seg,
            mask: self.mask(),
        })
    }

    /// Copies the descriptor for `counter` out of shared memory.
    #[inline]
    pub fn read_desc(&self, r: &MmapRegion, counter: u16) -> Desc {
        r.seg(self.desc_off(counter), DESC_SIZE)
            .and_then(|s| s.read_array::<DESC_SIZE>(0))
            .map_or_else(Desc::default, |b| Desc::from_bytes(&b))
    }

    /// Writes the whole descriptor for `counter`.
    #[inline]
    pub fn write_desc(&self, r: &MmapRegion, counter: u16, d: &Desc) {
        if let Some(s) = r.seg_mut(self.desc_off(counter), DESC_SIZE) {
            s.write_array(0, &d.to_bytes());
        }
    }
}

/// The descriptor array of one ring (see [`Ring::descs`]); valid while its region is mapped,
/// i.e. within one burst.
#[derive(Clone, Copy)]
pub struct DescTable {
    seg: SegMut,
    mask: u16,
}

impl DescTable {
    /// Copies the descriptor for `counter` out of shared memory.
    #[inline]
    pub fn get(&self, counter: u16) -> Desc {
        let off = DESC_SIZE * usize::from(counter & self.mask);
        match self.seg.as_seg().read_array::<DESC_SIZE>(off) {
            Some(b) => Desc::from_bytes(&b),
            None => Desc::default(),
        }
    }
    /// Prefetches the descriptors for `counter..counter + n` (a hint: one prefetch per cache
    /// line, wrapping at the end of the array), for reading, or with `write` in an exclusive
    /// state for descriptors this side is about to rewrite (the peer's core last wrote them:
    /// without it every rewritten line is a read-for-ownership that stalls the store buffer).
    #[inline]
    pub fn prefetch(&self, counter: u16, n: u16, write: bool) {
        const PER_LINE: u16 = (64 / DESC_SIZE) as u16;
        let mut k = 0u16;
        while k < n {
            let c = counter.wrapping_add(k);
            let off = DESC_SIZE * usize::from(c & self.mask);
            if write {
                self.seg.prefetch_write_at(off);
            } else {
                self.seg.as_seg().prefetch_at(off);
            }
            // Next line start (slots are line-aligned in groups of PER_LINE).
            k += PER_LINE - (c % PER_LINE);
        }
    }
    /// Writes the whole descriptor for `counter`.
    #[inline]
    pub fn put(&self, counter: u16, d: &Desc) {
        let off = DESC_SIZE * usize::from(counter & self.mask);
        self.seg.write_array(off, &d.to_bytes());
    }
}

/// Validates a descriptor copy against the regions: region index, `offset + length` inside the
/// region, `length <= max_len`. Returns the buffer's bytes (exactly `length` long).
#[inline]
pub fn check_desc(d: &Desc, regions: &[MmapRegion], max_len: u32) -> Option<Seg> {
    if d.length > max_len {
        return None;
    }
    regions
        .get(usize::from(d.region))?
        .seg(d.offset as usize, d.length as usize)
}

/// Like [`check_desc`] but for a buffer we are about to write into.
#[inline]
pub fn check_desc_mut(d: &Desc, regions: &[MmapRegion], max_len: u32) -> Option<SegMut> {
    if d.length > max_len {
        return None;
    }
    regions
        .get(usize::from(d.region))?
        .seg_mut(d.offset as usize, d.length as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memif::wire::{ring_bytes, DESC_FLAG_NEXT};

    fn region(len: usize) -> MmapRegion {
        MmapRegion::alloc(len, "ringtest").unwrap().0
    }

    #[test]
    fn ring_must_fit_and_align() {
        let r = region(ring_bytes(4) + 64);
        assert!(Ring::new(0, &r, 0, 4).is_some());
        assert!(Ring::new(0, &r, 4, 4).is_none(), "misaligned");
        assert!(Ring::new(0, &r, r.len() - 64, 4).is_none(), "past the end");
        assert!(Ring::new(0, &r, 0, 0).is_none());
        assert!(Ring::new(0, &r, 0, 15).is_none());
        assert!(Ring::new(0, &r, usize::MAX - 8, 4).is_none());
    }

    #[test]
    fn header_and_descs_roundtrip() {
        let r = region(ring_bytes(3));
        let ring = Ring::new(0, &r, 0, 3).unwrap();
        ring.init_header(&r, 1);
        assert_eq!(ring.cookie(&r), COOKIE);
        assert_eq!(ring.flags(&r), 1);
        let d = Desc {
            flags: DESC_FLAG_NEXT,
            region: 0,
            length: 60,
            offset: 512,
            metadata: 7,
        };
        ring.write_desc(&r, 9, &d); // slot 1
        assert_eq!(ring.read_desc(&r, 1), d);
        assert_eq!(ring.read_desc(&r, 0xFFF9), d, "0xFFF9 & 7 == 1");
        // The per-burst table view reads and writes the same slots.
        let t = ring.descs(&r).unwrap();
        assert_eq!(t.get(0xFFF9), d);
        let d2 = Desc { length: 61, ..d };
        t.put(2, &d2);
        assert_eq!(ring.read_desc(&r, 10), d2);
        assert_eq!(t.get(7), ring.read_desc(&r, 7), "last slot");
    }

    /// Producer/consumer across the u16 wrap: head/tail start near 65535 and run past it.
    #[test]
    fn wraparound_at_u16_overflow() {
        let log2 = 4u8;
        let bufs_off = ring_bytes(log2).next_multiple_of(64);
        let regions = vec![region(bufs_off + 16 * 64)];
        let r = &regions[0];
        let ring = Ring::new(0, r, 0, log2).unwrap();
        ring.init_header(r, 0);
        let start: u16 = 65530;
        ring.store_head(r, start);
        ring.store_tail(r, start);
        let (mut prod, mut cons) = (start, start);
        let mut sent = 0u32;
        let mut got = 0u32;
        while got < 100 {
            // Producer: fill what is free.
            let tail = ring.load_tail(r);
            let used = ring.distance(tail, prod).unwrap();
            let free = ring.size() as u16 - used;
            for _ in 0..free.min(5) {
                let slot = usize::from(prod & 15);
                let d = Desc {
                    flags: 0,
                    region: 0,
                    length: 4,
                    offset: (bufs_off + slot * 64) as u32,
                    metadata: 0,
                };
                r.seg_mut(d.offset as usize, 4)
                    .unwrap()
                    .write(0, &sent.to_le_bytes());
                ring.write_desc(r, prod, &d);
                prod = prod.wrapping_add(1);
                sent += 1;
            }
            ring.store_head(r, prod);
            // Consumer.
            let head = ring.load_head(r);
            let n = ring.distance(cons, head).unwrap();
            for _ in 0..n.min(3) {
                let d = ring.read_desc(r, cons);
                let s = check_desc(&d, &regions, 64).unwrap();
                let mut b = [0u8; 4];
                s.read(0, &mut b);
                assert_eq!(u32::from_le_bytes(b), got);
                got += 1;
                cons = cons.wrapping_add(1);
            }
            ring.store_tail(r, cons);
        }
        assert!(prod < start, "counters wrapped");
        // A peer head 17 ahead of our tail in a 16-slot ring is a violation.
        assert!(ring.distance(cons, cons.wrapping_add(17)).is_none());
        assert_eq!(ring.distance(65535, 1), Some(2));
    }

    #[test]
    fn check_desc_rejects_out_of_bounds() {
        let regions = vec![region(8192)];
        let len = regions[0].len() as u32;
        let ok = Desc {
            region: 0,
            offset: 0,
            length: 100,
            ..Default::default()
        };
        assert!(check_desc(&ok, &regions, 2048).is_some());
        assert!(check_desc(&Desc { region: 1, ..ok }, &regions, 2048).is_none());
        assert!(check_desc(
            &Desc {
                offset: len - 50,
                ..ok
            },
            &regions,
            2048
        )
        .is_none());
        assert!(check_desc(
            &Desc {
                offset: u32::MAX,
                ..ok
            },
            &regions,
            2048
        )
        .is_none());
        assert!(check_desc(&Desc { length: 4000, ..ok }, &regions, 2048).is_none());
        assert!(check_desc_mut(
            &Desc {
                length: u32::MAX,
                ..ok
            },
            &regions,
            u32::MAX
        )
        .is_none());
    }
}
