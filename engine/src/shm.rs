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
    pub const EMPTY: Seg = Seg {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// # Safety
    /// `ptr..ptr+len` must be inside one live mapping for as long as this Seg is used. Public
    /// for ring layers outside the engine that own their buffer memory (uswitch-agent's
    /// io_uring provided buffers).
    pub unsafe fn from_raw(ptr: *const u8, len: u32) -> Seg {
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

    /// Prefetches the cache line holding byte `off` (a hint; nothing when `off` is outside
    /// the segment).
    #[inline]
    pub fn prefetch_at(&self, off: usize) {
        #[cfg(target_arch = "x86_64")]
        if off < self.len as usize {
            // SAFETY: off < len, so the address is inside the segment's live mapping; a
            // prefetch never faults anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch(
                    self.ptr.add(off) as *const i8,
                    std::arch::x86_64::_MM_HINT_T0,
                )
            };
        }
    }

    /// Prefetches the first cache line (a hint; no effect on correctness).
    #[inline]
    pub fn prefetch(&self) {
        self.prefetch_at(0);
    }
}

/// `memmove` of `n` bytes, inline for 16..=64 bytes (minimum-size frames: no call): the
/// first and last 16 or 32 bytes are loaded, then stored (overlapping in the middle), so
/// overlapping ranges are copied correctly too.
///
/// # Safety
/// `src..src+n` must be readable and `dst..dst+n` writable (they may overlap).
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned, write_unaligned};
    // SAFETY (all three arms): every access lies within src..src+n or dst..dst+n
    // (16 <= n: offsets 0 and n-16 with 16 bytes; 32 <= n: 0 and n-32 with 32 bytes); all
    // loads happen before the stores.
    if !(16..=64).contains(&n) {
        unsafe { std::ptr::copy(src, dst, n) };
    } else if n >= 32 {
        unsafe {
            let a = read_unaligned(src as *const [u8; 32]);
            let b = read_unaligned(src.add(n - 32) as *const [u8; 32]);
            write_unaligned(dst as *mut [u8; 32], a);
            write_unaligned(dst.add(n - 32) as *mut [u8; 32], b);
        }
    } else {
        unsafe {
            let a = read_unaligned(src as *const [u8; 16]);
            let b = read_unaligned(src.add(n - 16) as *const [u8; 16]);
            write_unaligned(dst as *mut [u8; 16], a);
            write_unaligned(dst.add(n - 16) as *mut [u8; 16], b);
        }
    }
}

impl SegMut {
    pub const EMPTY: SegMut = SegMut {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

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

    /// Writes exactly `N` bytes at `off`; false (nothing written) when they do not fit. A
    /// fixed-size copy compiles to a few stores straight from registers (descriptor writes):
    /// a `memcpy` call would load the bytes back from the stack right after they were
    /// stored field by field, and that load (store forwarding fails on the size mismatch)
    /// waits for every older store to reach the cache, the packet copy's cache misses
    /// included — which serializes the bursts' misses.
    #[inline]
    pub fn write_array<const N: usize>(&self, off: usize, src: &[u8; N]) -> bool {
        if off.checked_add(N).is_none_or(|end| end > self.len as usize) {
            return false;
        }
        // SAFETY: off + N <= self.len (checked above) inside a live writable mapping
        // (constructor contract); `src` is a distinct array of N bytes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), N) };
        true
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
            unsafe { copy_bytes(src.ptr.add(src_off), self.ptr.add(off), n) };
        }
        n
    }

    /// Prefetches the first cache line for writing (a hint; no effect on correctness): the
    /// line is fetched in an exclusive state, so the copy into it does not stall on a
    /// read-for-ownership from the core that last touched it (the peer).
    #[inline]
    pub fn prefetch_write(&self) {
        self.prefetch_write_at(0);
    }

    /// Like [`SegMut::prefetch_write`] for the cache line holding byte `off` (nothing when
    /// `off` is outside the segment).
    #[inline]
    pub fn prefetch_write_at(&self, off: usize) {
        #[cfg(target_arch = "x86_64")]
        if off < self.len as usize {
            // SAFETY: off < len, so the address is inside the segment's live mapping.
            // `prefetchw` is a hint: it never faults, changes no architectural state (CPUs
            // without PRFCHW execute it as a NOP), touches no stack or flags.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{p}]",
                    p = in(reg) self.ptr.add(off),
                    options(nostack, preserves_flags, readonly)
                )
            };
        }
    }

    /// The same bytes, read-only.
    #[inline]
    pub fn as_seg(&self) -> Seg {
        Seg {
            ptr: self.ptr,
            len: self.len,
        }
    }
}

/// Plain heap memory handing out Segs: for tests, benches and in-process fakes.
/// Segs from it must not outlive it (same contract as a mapping).
pub struct HeapBuf {
    buf: Box<[u8]>,
}

impl HeapBuf {
    pub fn new(len: usize) -> Self {
        HeapBuf {
            buf: vec![0u8; len].into_boxed_slice(),
        }
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
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Mapped shared regions (memif memory).
//
// Additional rules:
// - A [`MmapRegion`] owns its mapping and its fd; both go away on Drop (munmap, close).
// - Peer-supplied regions are mapped only after `fstat` shows the file is at least as large as
//   the size the peer announced. A peer that later shrinks an unsealed file can still make us
//   fault (SIGBUS); memfds we create are sealed against shrinking (F_SEAL_SHRINK).
// - [`MmapRegion::atomic_u16`] hands out atomics over shared memory only at 2-byte aligned,
//   in-bounds offsets; everything else is copied in or out through Segs.
// ---------------------------------------------------------------------------------------------

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU16;

const HUGEPAGE: usize = 2 << 20;
const HUGETLBFS_DIR: &str = "/dev/hugepages";
const HUGEPAGES_FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

/// Where a region we allocated lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A 2 MiB-page file on hugetlbfs (unlinked right after creation).
    Hugetlbfs,
    /// A sealed memfd with ordinary 4 KiB pages.
    Memfd4k,
}

impl Backing {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backing::Hugetlbfs => "hugetlbfs",
            Backing::Memfd4k => "memfd-4k",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("region size {0} is invalid")]
    BadSize(u64),
    #[error("peer region file is {actual} bytes, smaller than the announced {announced}")]
    TooSmall { announced: u64, actual: u64 },
    #[error("{what}: {err}")]
    Sys {
        what: &'static str,
        err: std::io::Error,
    },
}

fn sys(what: &'static str) -> ShmError {
    ShmError::Sys {
        what,
        err: std::io::Error::last_os_error(),
    }
}

/// A shared-memory mapping (read/write, MAP_SHARED) together with the fd backing it.
pub struct MmapRegion {
    ptr: *mut u8,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the region is a plain shared mapping plus an fd; nothing in it is tied to the creating
// thread. Concurrent access from the peer process is the protocol's business (atomics for
// indices, copies for everything else), and within this process a region has one owner (a port,
// moved into the dataplane worker).
unsafe impl Send for MmapRegion {}
// SAFETY: every `&self` method only reads the immutable ptr/len/fd or hands out bounds-checked
// Segs / atomics. Bytes behind the mapping are already written concurrently by the peer process,
// so a second thread of ours holding `&MmapRegion` (vhost-user: the control thread keeps an `Arc`
// of the memory table the worker uses) adds no new kind of access.
unsafe impl Sync for MmapRegion {}

fn hugetlbfs_has_pages(pages: usize) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    let Ok(dir) = std::ffi::CString::new(HUGETLBFS_DIR) else {
        return false;
    };
    // SAFETY: dir is a valid C string; st is a properly sized out-buffer.
    let rc = unsafe { libc::statfs(dir.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: statfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    if st.f_type != libc::HUGETLBFS_MAGIC {
        return false;
    }
    std::fs::read_to_string(HUGEPAGES_FREE)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .is_some_and(|free| free >= pages)
}

impl MmapRegion {
    /// Allocates a new shared region of at least `size` bytes: on hugetlbfs when it is mounted at
    /// `/dev/hugepages` and has enough free 2 MiB pages (size rounded up to 2 MiB), else a memfd.
    /// The memory is zeroed. `name` only labels the file / memfd.
    pub fn alloc(size: usize, name: &str) -> Result<(MmapRegion, Backing), ShmError> {
        if size == 0 || size > isize::MAX as usize / 2 {
            return Err(ShmError::BadSize(size as u64));
        }
        let huge_len = size.div_ceil(HUGEPAGE) * HUGEPAGE;
        if hugetlbfs_has_pages(huge_len / HUGEPAGE) {
            match Self::alloc_hugetlbfs(huge_len, name) {
                Ok(r) => return Ok((r, Backing::Hugetlbfs)),
                Err(e) => tracing::debug!("hugetlbfs allocation failed, using memfd: {e}"),
            }
        }
        Ok((Self::alloc_memfd(size, name)?, Backing::Memfd4k))
    }

    fn alloc_hugetlbfs(len: usize, name: &str) -> Result<MmapRegion, ShmError> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let clean: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = format!(
            "{HUGETLBFS_DIR}/uswitch-{clean}-{}-{seq}",
            std::process::id()
        );
        let cpath = std::ffi::CString::new(path).map_err(|_| ShmError::BadSize(len as u64))?;
        // SAFETY: cpath is a valid C string; the returned fd is checked below.
        let raw = unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if raw < 0 {
            return Err(sys("open hugetlbfs file"));
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: cpath is valid; the file stays alive through `fd`.
        unsafe { libc::unlink(cpath.as_ptr()) };
        // SAFETY: fd is valid.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(sys("ftruncate hugetlbfs file"));
        }
        Self::map(fd, len)
    }

    fn alloc_memfd(size: usize, name: &str) -> Result<MmapRegion, ShmError> {
        let cname = std::ffi::CString::new(format!("uswitch-{}", name.replace('\0', "")))
            .map_err(|_| ShmError::BadSize(size as u64))?;
        // SAFETY: cname is a valid C string; the returned fd is checked below.
        let raw = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(sys("memfd_create"));
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: fd is valid.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(sys("ftruncate memfd"));
        }
        // SAFETY: fd is a valid memfd created with MFD_ALLOW_SEALING.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } != 0 {
            return Err(sys("seal memfd"));
        }
        Self::map(fd, size)
    }

    /// Maps a region received from the peer. Fails cleanly when `size` is zero, absurd, or
    /// larger than the file behind `fd`.
    pub fn from_fd(fd: OwnedFd, size: u64) -> Result<MmapRegion, ShmError> {
        if size == 0 || size > (isize::MAX as u64) / 2 {
            return Err(ShmError::BadSize(size));
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fd is valid; st is a properly sized out-buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
            return Err(sys("fstat peer region"));
        }
        // SAFETY: fstat returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        let actual = st.st_size.max(0) as u64;
        if actual < size {
            return Err(ShmError::TooSmall {
                announced: size,
                actual,
            });
        }
        Self::map(fd, size as usize)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<MmapRegion, ShmError> {
        // SAFETY: a fresh MAP_SHARED mapping at a kernel-chosen address; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys("mmap region"));
        }
        Ok(MmapRegion {
            ptr: p as *mut u8,
            len,
            fd,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn check(&self, off: usize, len: usize) -> bool {
        matches!(off.checked_add(len), Some(end) if end <= self.len) && len <= u32::MAX as usize
    }

    /// A checked read-only view of `off..off+len`, or None when outside the region.
    #[inline]
    pub fn seg(&self, off: usize, len: usize) -> Option<Seg> {
        if !self.check(off, len) {
            return None;
        }
        // SAFETY: range checked against the live mapping just above.
        Some(unsafe { Seg::from_raw(self.ptr.add(off), len as u32) })
    }

    /// A checked writable view of `off..off+len`, or None when outside the region. Takes
    /// `&self`: the memory is shared with the peer anyway and only ever copied into.
    #[inline]
    pub fn seg_mut(&self, off: usize, len: usize) -> Option<SegMut> {
        if !self.check(off, len) {
            return None;
        }
        // SAFETY: range checked against the live, writable mapping just above.
        Some(unsafe { SegMut::from_raw(self.ptr.add(off), len as u32) })
    }

    /// An atomic view of the `u16` at `off` (ring head/tail/flags), or None when out of bounds
    /// or misaligned.
    #[inline]
    pub fn atomic_u16(&self, off: usize) -> Option<&AtomicU16> {
        if !self.check(off, 2)
            || (self.ptr as usize + off) & (std::mem::align_of::<AtomicU16>() - 1) != 0
        {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as `&self`;
        // AtomicU16 has the same layout as u16 and all bit patterns are valid. The peer writes
        // these locations too, which is exactly what atomic access is for.
        Some(unsafe { &*(self.ptr.add(off) as *const AtomicU16) })
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no Seg from this region is in use
        // (module rule: owners release all Segs before dropping the region). The fd closes after.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

impl std::fmt::Debug for MmapRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MmapRegion({} bytes, fd {})",
            self.len,
            self.fd.as_raw_fd()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// File descriptors handed to us by the kernel (accept, SCM_RIGHTS). Taking ownership of a raw
// fd is the other unsafe operation memif needs; it lives here so the socket code stays safe.
// ---------------------------------------------------------------------------------------------

/// Accepts one connection on a non-blocking listener; `Ok(None)` when none is pending. The new
/// socket is non-blocking and close-on-exec.
pub fn accept_owned(listener: BorrowedFd<'_>) -> std::io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{accept4, SockFlag};
    match accept4(
        listener.as_raw_fd(),
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    ) {
        // SAFETY: accept4 just returned this fd; nothing else owns it.
        Ok(raw) => Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) })),
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One datagram received by [`recv_owned`].
pub struct Received {
    /// Bytes of the datagram (0 = orderly shutdown by the peer).
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// File descriptors passed with SCM_RIGHTS, now owned by us (extra ones close on drop).
    pub fds: Vec<OwnedFd>,
}

/// Receives one SEQPACKET datagram with any SCM_RIGHTS fds; `Ok(None)` when nothing is pending.
pub fn recv_owned(sock: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<Option<Received>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = match recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raws) = c {
                for raw in raws {
                    // SAFETY: the kernel installed these fds in our table for this message;
                    // nothing else refers to them.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    Ok(Some(Received {
        len: msg.bytes,
        truncated,
        fds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `copy_from` equals `copy_within` for every length around the inline sizes, for
    /// disjoint and overlapping (both directions) ranges.
    #[test]
    fn copy_from_is_a_memmove() {
        for n in 0..=80usize {
            for (so, dof) in [(0, 100), (0, 5), (5, 0), (3, 3), (0, 31), (40, 8)] {
                let mut h = HeapBuf::new(256);
                for (i, b) in h.bytes_mut().iter_mut().enumerate() {
                    *b = i as u8 ^ 0x5a;
                }
                let mut want = h.bytes_mut().to_vec();
                want.copy_within(so..so + n, dof);
                let src = h.seg(so, n).unwrap();
                let dst = h.seg_mut(dof, n).unwrap();
                assert_eq!(dst.copy_from(0, &src, 0, n), n);
                assert_eq!(h.bytes_mut().to_vec(), want, "n {n} src {so} dst {dof}");
            }
        }
    }

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

    #[test]
    fn mmap_region_alloc_and_remap() {
        let (r, backing) = MmapRegion::alloc(10_000, "test").unwrap();
        assert!(r.len() >= 10_000);
        assert!(matches!(backing, Backing::Memfd4k | Backing::Hugetlbfs));
        let w = r.seg_mut(100, 4).unwrap();
        assert_eq!(w.write(0, &[9, 8, 7, 6]), 4);
        assert!(r.seg(r.len() - 1, 2).is_none());
        assert!(r.atomic_u16(1).is_none());
        assert!(r.atomic_u16(r.len() - 1).is_none());
        r.atomic_u16(6)
            .unwrap()
            .store(0xabcd, std::sync::atomic::Ordering::Release);

        // Map the same memory a second time through a dup of the fd, as a peer would.
        let dup = r.fd().try_clone_to_owned().unwrap();
        let len = r.len() as u64;
        let peer = MmapRegion::from_fd(dup, len).unwrap();
        let mut out = [0u8; 4];
        peer.seg(100, 4).unwrap().read(0, &mut out);
        assert_eq!(out, [9, 8, 7, 6]);
        assert_eq!(
            peer.atomic_u16(6)
                .unwrap()
                .load(std::sync::atomic::Ordering::Acquire),
            0xabcd
        );

        // Announced size larger than the file: clean error.
        let dup = r.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            MmapRegion::from_fd(dup, len + 1),
            Err(ShmError::TooSmall { .. })
        ));
        let dup = r.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            MmapRegion::from_fd(dup, 0),
            Err(ShmError::BadSize(0))
        ));
    }

    #[test]
    fn fixed_size_writes_stay_inside_the_segment() {
        let (r, _) = MmapRegion::alloc(4096, "t").unwrap();
        let w = r.seg_mut(64, 16).unwrap();
        assert!(w.write_array(0, &[7u8; 16]));
        assert!(w.write_array(8, &[5u8; 8]));
        // One byte past the end, and an offset whose end overflows: refused, nothing written.
        assert!(!w.write_array(9, &[1u8; 8]));
        assert!(!w.write_array(usize::MAX - 3, &[1u8; 8]));
        let mut out = [0u8; 18];
        r.seg(63, 18).unwrap().read(0, &mut out);
        assert_eq!(out[0], 0);
        assert_eq!(&out[1..9], &[7u8; 8]);
        assert_eq!(&out[9..17], &[5u8; 8]);
        assert_eq!(out[17], 0);
        // Prefetch hints never fault, inside or outside the segment.
        w.prefetch_write();
        w.prefetch_write_at(15);
        w.prefetch_write_at(16);
        w.as_seg().prefetch_at(15);
        w.as_seg().prefetch_at(1 << 40);
        SegMut::EMPTY.prefetch_write();
    }
}
