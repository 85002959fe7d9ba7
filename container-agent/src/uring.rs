//! io_uring for the tap side: one multishot read fed by a ring of provided buffers, and one
//! fixed-buffer write per frame, all submitted with at most one `io_uring_enter` per loop pass.
//! This is the agent's ring layer: it holds all of the agent's `unsafe` except the `TUNSETIFF`
//! ioctl in `tapdev.rs`.
//!
//! Invariants (each `unsafe` block below relies on one of them):
//! - **Memory ownership.** The read buffers, the provided-buffer ring and the write buffers are
//!   page-aligned allocations owned by [`UringTap`] and only ever addressed through raw
//!   pointers (never a Rust reference the kernel could write behind). They are freed only after
//!   every request that can touch them has posted its final completion (see `Drop`); if that
//!   cannot be confirmed within [`DRAIN_TIMEOUT`] they are leaked, never freed.
//! - **Read buffers.** A read buffer is either in the provided-buffer ring (the kernel may fill
//!   it at any time) or in `ready` (the kernel posted its completion and will not touch it until
//!   we put it back). Segs are handed out for `ready` buffers only, and a buffer returns to the
//!   ring only through [`UringTap::rx_consume`], after the caller is done with its Segs (the
//!   shuttle copies them into memif within the same pass).
//! - **Write buffers.** A write slot is either free (only we touch it, through `&mut self`) or
//!   referenced by exactly one in-flight write SQE; it becomes free again only when that SQE's
//!   completion is reaped. No slot is reused while an SQE references it.
//! - **fd lifetime.** The tap is owned by [`UringTap`], so its fd outlives every SQE naming it;
//!   the ring is torn down (read cancelled, writes drained, ring closed) before the tap is given
//!   back or closed.
//! - **Ring tail.** Entries of the provided-buffer ring are written first, then the tail is
//!   published with a release store (the kernel loads it with acquire).
//!
//! Ordering: the single multishot read consumes frames from the tap in order and posts one
//! completion per frame in that order; `ready` keeps that order, so frames reach memif in the
//! order the kernel queued them. When the ring runs out of buffers (memif is behind) the read
//! ends with `ENOBUFS`; frames then wait in the tap's kernel queue (TCP is throttled, not
//! dropped) and the read is re-armed once buffers come back.
use crate::tapdev::{self, Sent, Tap};
use io_uring::{cqueue, opcode, types, IoUring, Probe};
use std::alloc::Layout;
use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use uswitch::shm::Seg;

/// Read buffers in the provided-buffer ring (a power of two).
pub const RX_BUFFERS: u16 = 256;
/// Write slots (two memif bursts).
pub const TX_SLOTS: u16 = 64;
const SQ_ENTRIES: u32 = 128;
const CQ_ENTRIES: u32 = 1024;
const BGID: u16 = 0;
const PAGE: usize = 4096;
/// How long teardown waits for the kernel to finish with our buffers before leaking them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

const TAG_SHIFT: u32 = 32;
const TAG_READ: u64 = 1 << TAG_SHIFT;
const TAG_WRITE: u64 = 2 << TAG_SHIFT;
const TAG_CANCEL: u64 = 3 << TAG_SHIFT;
const TAG_MASK: u64 = !0u64 << TAG_SHIFT;

/// Counters of the ring layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UringStats {
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// Times the multishot read was (re-)armed.
    pub read_arms: u64,
    /// Times it ended because every buffer was held (memif behind).
    pub read_nobufs: u64,
    /// Writes the kernel refused (queue full, interface down): frames dropped.
    pub write_drops: u64,
}

/// Zeroed, page-aligned memory addressed only through raw pointers.
struct RawMem {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl RawMem {
    fn new(len: usize) -> io::Result<RawMem> {
        let len = len.max(1).div_ceil(PAGE) * PAGE;
        let layout = Layout::from_size_align(len, PAGE)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer size"))?;
        // SAFETY: the layout has a non-zero size (at least one page).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(RawMem { ptr, layout })
    }

    fn addr(&self, off: usize) -> *mut u8 {
        debug_assert!(off < self.layout.size());
        self.ptr.as_ptr().wrapping_add(off)
    }
}

impl Drop for RawMem {
    fn drop(&mut self) {
        // SAFETY: ptr/layout are exactly what alloc_zeroed returned; callers drop a RawMem only
        // once the kernel no longer references it (module rule "memory ownership").
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// `struct io_uring_buf`: one provided-buffer ring entry. In entry 0 `resv` is the ring tail.
#[repr(C)]
struct RingBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RingBuf>() == 16);

/// The tap driven through io_uring.
pub struct UringTap {
    // Field order matters only through `Drop`, which tears down explicitly.
    ring: ManuallyDrop<IoUring>,
    rx_mem: ManuallyDrop<RawMem>,
    br_mem: ManuallyDrop<RawMem>,
    tx_mem: ManuallyDrop<RawMem>,
    tap: Option<Tap>,
    slot: usize,
    /// Our copy of the provided-buffer ring tail.
    br_tail: u16,
    /// Completed reads, in order: (buffer id, length).
    ready: VecDeque<(u16, u32)>,
    /// Buffers of empty completions, to put back (capacity RX_BUFFERS: never reallocates).
    recycle: Vec<u16>,
    read_armed: bool,
    tx_free: Vec<u16>,
    tx_inflight: usize,
    tx_fixed: bool,
    fatal: Option<io::Error>,
    stats: UringStats,
}

fn unavailable(what: &str, e: io::Error) -> String {
    let mut s = format!("{what}: {e}");
    if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
        if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
            s.push_str(&format!(" (kernel.io_uring_disabled = {}", v.trim()));
            s.push_str(", or a seccomp profile forbids io_uring)");
        }
    } else if e.raw_os_error() == Some(libc::ENOSYS) {
        s.push_str(" (kernel without io_uring, or a seccomp profile hides it)");
    }
    s
}

impl UringTap {
    /// Sets up the ring for `tap` with buffers of `slot` bytes. On failure the tap comes back
    /// unchanged with the reason, so the caller can fall back to read/write.
    pub fn new(tap: Tap, slot: usize) -> Result<UringTap, (Tap, String)> {
        match Self::setup(slot) {
            Ok(parts) => {
                if let Err(e) = tap.set_nonblocking(false) {
                    return Err((tap, format!("clearing O_NONBLOCK on the tap: {e}")));
                }
                let mut u = parts.into_uring(tap, slot);
                u.arm_read();
                Ok(u)
            }
            Err(reason) => Err((tap, reason)),
        }
    }

    /// Nothing fails after a registration succeeded (a failed fixed-buffer registration only
    /// switches to plain writes), so an error here leaves the kernel referencing nothing.
    fn setup(slot: usize) -> Result<Parts, String> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_clamp()
            .build(SQ_ENTRIES)
            .map_err(|e| unavailable("io_uring_setup", e))?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err("kernel io_uring lacks EXT_ARG/NODROP (needs Linux 5.11+)".into());
        }
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| unavailable("io_uring probe", e))?;
        for (code, name) in [
            (opcode::ReadMulti::CODE, "READ_MULTISHOT (Linux 6.7+)"),
            (opcode::Write::CODE, "WRITE"),
            (opcode::WriteFixed::CODE, "WRITE_FIXED"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("kernel io_uring has no {name}"));
            }
        }
        let nbuf = usize::from(RX_BUFFERS);
        let rx_mem = RawMem::new(nbuf * slot).map_err(|e| format!("read buffers: {e}"))?;
        let br_mem = RawMem::new(nbuf * std::mem::size_of::<RingBuf>())
            .map_err(|e| format!("buffer ring: {e}"))?;
        let tx_mem =
            RawMem::new(usize::from(TX_SLOTS) * slot).map_err(|e| format!("write buffers: {e}"))?;
        // SAFETY: br_mem is a page-aligned, zeroed allocation of RX_BUFFERS entries that lives
        // until after the ring is closed (memory ownership rule; Drop unregisters first).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                br_mem.addr(0) as u64,
                RX_BUFFERS,
                BGID,
                0,
            )
        }
        .map_err(|e| unavailable("registering the provided-buffer ring", e))?;
        let iov = libc::iovec {
            iov_base: tx_mem.addr(0).cast(),
            iov_len: usize::from(TX_SLOTS) * slot,
        };
        // SAFETY: tx_mem lives until after the ring is closed; the kernel pins its pages.
        let tx_fixed = match unsafe { ring.submitter().register_buffers(&[iov]) } {
            Ok(()) => true,
            Err(e) => {
                // E.g. RLIMIT_MEMLOCK in a container: plain writes work as well.
                tracing::debug!("io_uring: fixed write buffers unavailable ({e}); plain writes");
                false
            }
        };
        Ok(Parts {
            ring,
            rx_mem,
            br_mem,
            tx_mem,
            tx_fixed,
        })
    }

    pub fn tap(&self) -> &Tap {
        self.tap.as_ref().expect("tap present until into_tap")
    }

    pub fn stats(&self) -> UringStats {
        self.stats
    }

    /// Puts buffer `bid` at the ring's tail (published by [`Self::publish_tail`]).
    fn ring_put(&mut self, bid: u16) {
        let idx = usize::from(self.br_tail & (RX_BUFFERS - 1));
        let e = self.br_mem.addr(idx * std::mem::size_of::<RingBuf>()) as *mut RingBuf;
        let addr = self.rx_mem.addr(usize::from(bid) * self.slot) as u64;
        // SAFETY: `e` is entry `idx` of our ring allocation (in bounds, aligned to 16). The
        // kernel reads only entries between its head and the published tail, and this one is
        // past the tail until publish_tail; `resv` (the tail, in entry 0) is not written here.
        unsafe {
            std::ptr::addr_of_mut!((*e).addr).write(addr);
            std::ptr::addr_of_mut!((*e).len).write(self.slot as u32);
            std::ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.br_tail = self.br_tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        let p = self.br_mem.addr(14) as *mut u16;
        // SAFETY: bytes 14..16 of entry 0 are the ring tail (struct io_uring_buf_ring), aligned
        // to 2 and inside our allocation; the kernel only loads it, atomically.
        let tail = unsafe { AtomicU16::from_ptr(p) };
        tail.store(self.br_tail, Ordering::Release);
    }

    fn arm_read(&mut self) {
        let fd = types::Fd(self.tap().fd());
        let sqe = opcode::ReadMulti::new(fd, 0, BGID)
            .build()
            .user_data(TAG_READ);
        // SAFETY: the read only writes into provided buffers of group BGID, which live until
        // teardown (memory ownership rule); the tap fd outlives the request (fd lifetime rule).
        if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
            self.read_armed = true;
            self.stats.read_arms += 1;
        }
    }

    /// Reaps completions (no syscall). Returns the number of frames ready.
    pub fn poll_rx(&mut self) -> io::Result<usize> {
        let mut recycle = std::mem::take(&mut self.recycle);
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let ud = cqe.user_data();
            let res = cqe.result();
            let flags = cqe.flags();
            match ud & TAG_MASK {
                TAG_READ => {
                    // The kernel only hands back ids we provided; anything else is ignored
                    // rather than turned into an address.
                    if let Some(bid) = cqueue::buffer_select(flags).filter(|&b| b < RX_BUFFERS) {
                        if res > 0 {
                            self.ready.push_back((bid, res as u32));
                        } else {
                            recycle.push(bid);
                        }
                    }
                    if !cqueue::more(flags) {
                        self.read_armed = false;
                        match -res {
                            libc::ENOBUFS => self.stats.read_nobufs += 1,
                            e if res < 0
                                && e != libc::ECANCELED
                                && e != libc::EAGAIN
                                && e != libc::EINTR =>
                            {
                                self.fatal = Some(io::Error::from_raw_os_error(e));
                            }
                            _ => {}
                        }
                    }
                }
                TAG_WRITE => {
                    let slot = (ud & !TAG_MASK) as u16;
                    if slot < TX_SLOTS {
                        self.tx_free.push(slot);
                        self.tx_inflight = self.tx_inflight.saturating_sub(1);
                    }
                    if res < 0 {
                        match tapdev::write_error(io::Error::from_raw_os_error(-res)) {
                            Ok(_) => self.stats.write_drops += 1,
                            Err(e) => self.fatal = Some(e),
                        }
                    }
                }
                _ => {}
            }
        }
        drop(cq);
        if !recycle.is_empty() {
            for &bid in &recycle {
                self.ring_put(bid);
            }
            self.publish_tail();
            recycle.clear();
        }
        self.recycle = recycle;
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(self.ready.len()),
        }
    }

    /// The `i`-th ready frame. Valid until [`Self::rx_consume`] returns its buffer.
    #[inline]
    pub fn rx_seg(&self, i: usize) -> Seg {
        let (bid, len) = self.ready[i];
        let p = self.rx_mem.addr(usize::from(bid) * self.slot);
        // SAFETY: buffer `bid` is in `ready`: the kernel finished writing it (its completion was
        // reaped) and will not write it again before rx_consume puts it back in the ring; the
        // allocation lives as long as `self`; `len` <= slot (the kernel never reads more than the
        // buffer length we provided).
        unsafe { Seg::from_raw(p, len.min(self.slot as u32)) }
    }

    /// Gives the first `n` ready buffers back to the kernel.
    pub fn rx_consume(&mut self, n: usize) {
        let n = n.min(self.ready.len());
        if n == 0 {
            return;
        }
        for _ in 0..n {
            if let Some((bid, _)) = self.ready.pop_front() {
                self.ring_put(bid);
            }
        }
        self.publish_tail();
    }

    /// Free write slots.
    #[inline]
    pub fn tx_room(&self) -> usize {
        self.tx_free.len()
    }

    /// Queues one frame for the tap: `fill` writes it into a free slot and returns its length.
    /// The write is submitted by the next [`Self::flush`].
    #[inline]
    pub fn send_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> io::Result<Sent> {
        let Some(slot) = self.tx_free.pop() else {
            return Ok(Sent::Dropped);
        };
        let base = self.tx_mem.addr(usize::from(slot) * self.slot);
        // SAFETY: the slot was free, so no SQE references it (write buffer rule); it lies inside
        // tx_mem; `&mut self` makes this the only reference for the duration of `fill`.
        let buf = unsafe { std::slice::from_raw_parts_mut(base, self.slot) };
        let len = fill(buf).min(self.slot) as u32;
        let fd = types::Fd(self.tap().fd());
        let ud = TAG_WRITE | u64::from(slot);
        let sqe = if self.tx_fixed {
            opcode::WriteFixed::new(fd, base, len, 0).build()
        } else {
            opcode::Write::new(fd, base, len).build()
        }
        .user_data(ud);
        // SAFETY: the slot stays allocated and untouched by us until this SQE's completion is
        // reaped (it is off the free list until then); with WRITE_FIXED it lies inside
        // registered buffer 0; the tap fd outlives the request.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.tx_free.push(slot);
            return Ok(Sent::Dropped);
        }
        self.tx_inflight += 1;
        Ok(Sent::Ok)
    }

    /// End of a loop pass: re-arms the read if it ended and buffers are back, then at most one
    /// `io_uring_enter`: submit what is queued, and with `wait` sleep until a completion
    /// arrives or `wait` passes. No syscall when there is nothing to submit and no wait.
    pub fn flush(&mut self, wait: Option<Duration>) -> io::Result<()> {
        if !self.read_armed && self.ready.len() < usize::from(RX_BUFFERS) {
            self.arm_read();
        }
        let pending = !self.ring.submission().is_empty();
        let res = match wait {
            Some(d) if self.ring.completion().is_empty() => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            _ if pending => self.ring.submit(),
            _ => return Ok(()),
        };
        self.stats.enters += 1;
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Cancels the read and waits until no request references our buffers. False when the
    /// kernel did not confirm within [`DRAIN_TIMEOUT`].
    fn drain(&mut self) -> bool {
        if self.read_armed {
            let sqe = opcode::AsyncCancel::new(TAG_READ)
                .build()
                .user_data(TAG_CANCEL);
            // SAFETY: a cancel request references no memory.
            let _ = unsafe { self.ring.submission().push(&sqe) };
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.read_armed || self.tx_inflight > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            // Frames still arriving are dropped; errors do not matter any more.
            let _ = self.poll_rx();
            let n = self.ready.len();
            self.rx_consume(n);
            if self.read_armed {
                // The cancel may have raced with a re-arm; cancel again.
                let sqe = opcode::AsyncCancel::new(TAG_READ)
                    .build()
                    .user_data(TAG_CANCEL);
                // SAFETY: a cancel request references no memory.
                let _ = unsafe { self.ring.submission().push(&sqe) };
            }
        }
        true
    }

    /// Tears the ring down (see `Drop`) and gives the tap back, blocking again.
    pub fn into_tap(mut self) -> Tap {
        self.teardown();
        let tap = self.tap.take().expect("tap present until into_tap");
        let _ = tap.set_nonblocking(true);
        tap
    }

    fn teardown(&mut self) {
        if self.tap.is_none() {
            return; // already done
        }
        let drained = self.drain();
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        if self.tx_fixed {
            let _ = self.ring.submitter().unregister_buffers();
        }
        // SAFETY: each ManuallyDrop field is dropped exactly once, here (teardown runs once:
        // `tap` is taken right after, and Drop skips teardown when it is gone). The ring closes
        // first, so the kernel holds no reference to the memory freed after it.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if drained {
            // SAFETY: as above; every request that could touch these buffers has completed.
            unsafe {
                ManuallyDrop::drop(&mut self.rx_mem);
                ManuallyDrop::drop(&mut self.br_mem);
                ManuallyDrop::drop(&mut self.tx_mem);
            }
        } else {
            tracing::error!("io_uring did not confirm the end of tap I/O; leaking its buffers");
        }
    }
}

impl Drop for UringTap {
    fn drop(&mut self) {
        if self.tap.is_some() {
            self.teardown();
            // the tap (if still here) closes after the ring
        }
    }
}

/// What `setup` built, before the tap is moved in.
struct Parts {
    ring: IoUring,
    rx_mem: RawMem,
    br_mem: RawMem,
    tx_mem: RawMem,
    tx_fixed: bool,
}

impl Parts {
    fn into_uring(self, tap: Tap, slot: usize) -> UringTap {
        let mut u = UringTap {
            ring: ManuallyDrop::new(self.ring),
            rx_mem: ManuallyDrop::new(self.rx_mem),
            br_mem: ManuallyDrop::new(self.br_mem),
            tx_mem: ManuallyDrop::new(self.tx_mem),
            tap: Some(tap),
            slot,
            br_tail: 0,
            ready: VecDeque::with_capacity(usize::from(RX_BUFFERS)),
            recycle: Vec::with_capacity(usize::from(RX_BUFFERS)),
            read_armed: false,
            tx_free: (0..TX_SLOTS).rev().collect(),
            tx_inflight: 0,
            tx_fixed: self.tx_fixed,
            fatal: None,
            stats: UringStats::default(),
        };
        for bid in 0..RX_BUFFERS {
            u.ring_put(bid);
        }
        u.publish_tail();
        u
    }
}
