//! How the shuttle talks to the tap: [`TapIo`], with two implementations chosen once at start.
//!
//! - [`crate::uring::UringTap`] (`tap I/O: io_uring`): one multishot read over provided
//!   buffers, fixed-buffer writes, at most one `io_uring_enter` per loop pass (submits the
//!   pass's writes and re-arms the read; when idle it is also the wait).
//! - [`RwTap`] (`tap I/O: read/write`): non-blocking `read`/`write`, one syscall per frame,
//!   `epoll` on the tap and the signalfd for idle waits. Used when io_uring is unavailable
//!   (`io_uring_disabled` sysctl, a seccomp profile: `EPERM`/`ENOSYS`, an old kernel) or forced.
//!
//! Contract shared by both: frames are offered in the order the kernel queued them; a frame
//! stays "ready" (its Seg valid) until `rx_consume` covers it, so frames memif refused are
//! offered again on the next pass before anything new; `send_with` never blocks.
use crate::tapdev::{Sent, Tap};
use crate::uring::UringTap;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;
use uswitch::port::MAX_FRAME;
use uswitch::shm::{HeapBuf, Seg};

/// Frames per burst in each direction.
pub const BURST: usize = 32;

/// Buffer size for one frame: MTU + Ethernet header + one VLAN tag, rounded to 64 bytes.
pub fn slot_size(mtu: u16) -> usize {
    let frame = usize::from(mtu) + 18;
    ((frame + 63) & !63).min(MAX_FRAME as usize)
}

/// What the loop does after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Submit what is queued and go on (busy phase).
    No,
    /// Short idle pause (tens of µs).
    Short(Duration),
    /// Long idle wait; returns early on tap activity.
    Long(Duration),
}

/// Which implementation the operator asked for (`--tap-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TapIoMode {
    /// io_uring when the kernel allows it, else read/write.
    Auto,
    /// io_uring or fail.
    Uring,
    /// Plain read/write with epoll.
    Rw,
}

pub trait TapIo {
    /// "io_uring" or "read/write".
    const KIND: &'static str;
    fn tap(&self) -> &Tap;
    /// Picks up frames the kernel queued on the tap; returns how many are ready.
    fn poll_rx(&mut self) -> io::Result<usize>;
    /// The `i`-th ready frame (valid until `rx_consume` covers it).
    fn rx_seg(&self, i: usize) -> Seg;
    /// Done with the first `n` ready frames.
    fn rx_consume(&mut self, n: usize);
    /// Frames `send_with` can take now.
    fn tx_room(&self) -> usize;
    /// Sends one frame that `fill` writes into the buffer (returns its length).
    fn send_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> io::Result<Sent>;
    /// End of a pass (see [`Wait`]).
    fn flush(&mut self, wait: Wait) -> io::Result<()>;
    /// Writes the kernel refused after they were queued (io_uring completes them later).
    fn late_drops(&self) -> u64;
    /// One line of implementation counters for the stats log.
    fn stats_line(&self) -> String;
    fn into_tap(self) -> Tap;
}

impl TapIo for UringTap {
    const KIND: &'static str = "io_uring";
    fn tap(&self) -> &Tap {
        UringTap::tap(self)
    }
    #[inline]
    fn poll_rx(&mut self) -> io::Result<usize> {
        UringTap::poll_rx(self)
    }
    #[inline]
    fn rx_seg(&self, i: usize) -> Seg {
        UringTap::rx_seg(self, i)
    }
    #[inline]
    fn rx_consume(&mut self, n: usize) {
        UringTap::rx_consume(self, n)
    }
    #[inline]
    fn tx_room(&self) -> usize {
        UringTap::tx_room(self)
    }
    #[inline]
    fn send_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> io::Result<Sent> {
        UringTap::send_with(self, fill)
    }
    #[inline]
    fn flush(&mut self, wait: Wait) -> io::Result<()> {
        match wait {
            Wait::No => UringTap::flush(self, None),
            Wait::Short(d) | Wait::Long(d) => UringTap::flush(self, Some(d)),
        }
    }
    fn late_drops(&self) -> u64 {
        self.stats().write_drops
    }
    fn stats_line(&self) -> String {
        let s = self.stats();
        format!(
            "io_uring enters={} read_arms={} read_nobufs={} write_drops={}",
            s.enters, s.read_arms, s.read_nobufs, s.write_drops
        )
    }
    fn into_tap(self) -> Tap {
        UringTap::into_tap(self)
    }
}

/// Non-blocking read/write on the tap fd, epoll for long waits.
pub struct RwTap {
    tap: Tap,
    slot: usize,
    slots: HeapBuf,
    lens: [u32; BURST],
    /// Slots `from..to` hold ready frames.
    from: usize,
    to: usize,
    stage: Vec<u8>,
    poll: Poll,
    events: Events,
    syscalls: u64,
}

impl RwTap {
    /// `wake_fd` (the signalfd) also ends a long wait.
    pub fn new(tap: Tap, slot: usize, wake_fd: RawFd) -> io::Result<RwTap> {
        tap.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let tap_fd = tap.fd();
        poll.registry()
            .register(&mut SourceFd(&tap_fd), Token(0), Interest::READABLE)?;
        poll.registry()
            .register(&mut SourceFd(&wake_fd), Token(1), Interest::READABLE)?;
        Ok(RwTap {
            tap,
            slot,
            slots: HeapBuf::new(slot * BURST),
            lens: [0; BURST],
            from: 0,
            to: 0,
            stage: vec![0u8; slot],
            poll,
            events: Events::with_capacity(4),
            syscalls: 0,
        })
    }
}

impl TapIo for RwTap {
    const KIND: &'static str = "read/write";
    fn tap(&self) -> &Tap {
        &self.tap
    }

    fn poll_rx(&mut self) -> io::Result<usize> {
        if self.to > self.from {
            return Ok(self.to - self.from); // refused frames first
        }
        self.from = 0;
        self.to = 0;
        while self.to < BURST {
            let off = self.to * self.slot;
            let buf = &mut self.slots.bytes_mut()[off..off + self.slot];
            self.syscalls += 1;
            let Some(len) = self.tap.recv(buf)? else {
                break;
            };
            self.lens[self.to] = len as u32;
            self.to += 1;
        }
        Ok(self.to)
    }

    fn rx_seg(&self, i: usize) -> Seg {
        let k = self.from + i;
        self.slots
            .seg(k * self.slot, self.lens[k] as usize)
            .unwrap_or(Seg::EMPTY)
    }

    fn rx_consume(&mut self, n: usize) {
        self.from = (self.from + n).min(self.to);
    }

    fn tx_room(&self) -> usize {
        BURST
    }

    fn send_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> io::Result<Sent> {
        let len = fill(&mut self.stage).min(self.stage.len());
        self.syscalls += 1;
        self.tap.send(&self.stage[..len])
    }

    fn flush(&mut self, wait: Wait) -> io::Result<()> {
        match wait {
            Wait::No => Ok(()),
            Wait::Short(d) => {
                std::thread::sleep(d);
                Ok(())
            }
            Wait::Long(d) => match self.poll.poll(&mut self.events, Some(d)) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
                _ => Ok(()),
            },
        }
    }

    fn late_drops(&self) -> u64 {
        0
    }

    fn stats_line(&self) -> String {
        format!("read/write syscalls={}", self.syscalls)
    }

    fn into_tap(self) -> Tap {
        self.tap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fit_frame_and_tag() {
        assert_eq!(slot_size(1500), 1536);
        assert_eq!(slot_size(9000), 9024);
        assert_eq!(slot_size(9198), MAX_FRAME as usize);
        assert!(slot_size(68) >= 86);
    }
}
