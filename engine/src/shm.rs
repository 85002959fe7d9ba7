//! Shared memory: the one place that dereferences raw pointers into mapped memory.
//!
//! Rules this module enforces:
//! - A [`Seg`] / [`SegMut`] is created only from a live mapping (or a [`HeapBuf`]) after its
//!   `offset + len` was checked against that mapping's size; every access through it is clamped
//!   to `len`, so code above this module cannot read or write outside a mapping.
//! - Segs carry no lifetime (they sit in per-burst arrays owned by the dataplane). The owner of
//!   the mapping (a port) must not unmap it while Segs from it are in use: the dataplane worker is
//!   single-threaded and calls `rx_release` before any control work that could unmap.
//! - Shared memory is also written by the peer. We only ever copy bytes in or out with
//!   `ptr::copy_nonoverlapping`; we never form `&[u8]` over peer-writable memory, and never trust
//!   what we read for anything but packet bytes (descriptors are copied out and checked by the ring layer).
#![allow(clippy::len_without_is_empty)]

/// Read-only view of `len` bytes of mapped memory (a packet buffer or part of one).
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    ptr: *const u8,
    len: u32,
}

/// Writable view of `len` bytes of mapped memory (a tx buffer).
#[derive(Clone, Copy, Debug)]
pub struct SegMut {
    ptr: *mut u8,
    len: u32,
}

impl Seg {
    pub const EMPTY: Seg = Seg { ptr: std::ptr::null(), len: 0 };

    /// # Safety
    /// `ptr..ptr+len` must be inside one live mapping for as long as this Seg is used.
    pub(crate) unsafe fn from_raw(ptr: *const u8, len: u32) -> Seg {
        Seg { ptr, len }
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Copies bytes `off..` into `dst`; returns how many were copied (clamped to both ends).
    #[inline]
    pub fn read(&self, off: usize, dst: &mut [u8]) -> usize {
        let avail = (self.len as usize).saturating_sub(off);
        let n = avail.min(dst.len());
        if n > 0 {
            // SAFETY: off + n <= self.len, and the Seg's range is inside a live mapping
            // (constructor contract); dst is a distinct local slice of at least n bytes.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), n) };
        }
        n
    }

    /// Copies exactly `N` bytes from `off`, or None when the segment is shorter. A fixed-size
    /// copy compiles to a few moves instead of a `memcpy` call (packet header reads).
    #[inline]
    pub fn read_array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off.checked_add(N)? > self.len as usize {
            return None;
        }
        let mut out = [0u8; N];
        // SAFETY: off + N <= self.len (checked above) inside a live mapping (constructor
        // contract); `out` is a distinct local array of N bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), out.as_mut_ptr(), N) };
        Some(out)
    }

    /// Prefetches the first cache line (a hint; no effect on correctness).
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        if !self.ptr.is_null() {
            // SAFETY: prefetch never faults, even on a bad address.
            unsafe {
                std::arch::x86_64::_mm_prefetch(self.ptr as *const i8, std::arch::x86_64::_MM_HINT_T0)
            };
        }
    }
}

impl SegMut {
    pub const EMPTY: SegMut = SegMut { ptr: std::ptr::null_mut(), len: 0 };

    /// # Safety
    /// `ptr..ptr+len` must be inside one live writable mapping for as long as this SegMut is used.
    pub(crate) unsafe fn from_raw(ptr: *mut u8, len: u32) -> SegMut {
        SegMut { ptr, len }
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Writes `src` at `off`; returns bytes written (clamped to the segment).
    #[inline]
    pub fn write(&self, off: usize, src: &[u8]) -> usize {
        let avail = (self.len as usize).saturating_sub(off);
        let n = avail.min(src.len());
        if n > 0 {
            // SAFETY: off + n <= self.len inside a live writable mapping (constructor contract).
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), n) };
        }
        n
    }

    /// Copies `n` bytes from `src[src_off..]` to `self[off..]`, clamped to both segments;
    /// returns bytes copied. Overlap is impossible for distinct buffers; if a hostile peer
    /// points two descriptors at the same bytes, `copy` (memmove) keeps it defined.
    #[inline]
    pub fn copy_from(&self, off: usize, src: &Seg, src_off: usize, n: usize) -> usize {
        let n = n
            .min((self.len as usize).saturating_sub(off))
            .min((src.len as usize).saturating_sub(src_off));
        if n > 0 {
            // SAFETY: both ranges were clamped to their segments, which lie in live mappings.
            unsafe { std::ptr::copy(src.ptr.add(src_off), self.ptr.add(off), n) };
        }
        n
    }

    /// The same bytes, read-only.
    #[inline]
    pub fn as_seg(&self) -> Seg {
        Seg { ptr: self.ptr, len: self.len }
    }
}

/// Plain heap memory handing out Segs: for tests, benches and in-process fakes.
/// Segs from it must not outlive it (same contract as a mapping).
pub struct HeapBuf {
    buf: Box<[u8]>,
}

impl HeapBuf {
    pub fn new(len: usize) -> Self {
        HeapBuf { buf: vec![0u8; len].into_boxed_slice() }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    /// A checked view of `off..off+len`, or None when outside the buffer.
    pub fn seg(&self, off: usize, len: usize) -> Option<Seg> {
        let end = off.checked_add(len)?;
        if end > self.buf.len() || len > u32::MAX as usize {
            return None;
        }
        // SAFETY: range checked against the buffer just above.
        Some(unsafe { Seg::from_raw(self.buf.as_ptr().add(off), len as u32) })
    }
    pub fn seg_mut(&mut self, off: usize, len: usize) -> Option<SegMut> {
        let end = off.checked_add(len)?;
        if end > self.buf.len() || len > u32::MAX as usize {
            return None;
        }
        // SAFETY: range checked against the buffer just above.
        Some(unsafe { SegMut::from_raw(self.buf.as_mut_ptr().add(off), len as u32) })
    }
}

/// The CPU timestamp counter (x86_64 `rdtsc`), for cycle accounting in the worker; elsewhere
/// nanoseconds since the first call. Lives here because this module holds the crate's `unsafe`.
#[inline]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects and is available on every x86_64 CPU.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segs_are_clamped() {
        let mut h = HeapBuf::new(64);
        assert!(h.seg(60, 8).is_none());
        assert!(h.seg(usize::MAX, 2).is_none());
        let w = h.seg_mut(8, 8).unwrap();
        assert_eq!(w.write(4, &[1, 2, 3, 4, 5, 6]), 4);
        let r = h.seg(0, 16).unwrap();
        let mut out = [0u8; 32];
        assert_eq!(r.read(0, &mut out), 16);
        assert_eq!(&out[12..16], &[1, 2, 3, 4]);
        assert_eq!(r.read(20, &mut out), 0);
    }

    #[test]
    fn read_array_is_checked() {
        let mut h = HeapBuf::new(32);
        h.bytes_mut()[10] = 7;
        let s = h.seg(8, 20).unwrap();
        assert_eq!(s.read_array::<4>(0), Some([0, 0, 7, 0]));
        assert_eq!(s.read_array::<20>(0).map(|a| a[2]), Some(7));
        assert_eq!(s.read_array::<21>(0), None);
        assert_eq!(s.read_array::<4>(17), None);
        assert_eq!(s.read_array::<1>(usize::MAX), None);
    }
}
