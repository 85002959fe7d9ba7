//! Moving frames between the tap and the memif port, in bursts.
//!
//! Buffer ownership:
//! - memif → tap: `rx_burst` lends us the peer's buffers; each frame is copied once into a tap
//!   write buffer of the [`TapIo`] (segments of a chained frame are joined there), and all
//!   slots go back with one `rx_release` per burst. A burst never asks memif for more frames
//!   than the tap side has room for, so a slow tap leaves frames in the memif ring
//!   (backpressure to uswitchd) instead of dropping them.
//! - tap → memif: the [`TapIo`] holds up to a burst of frames read from the tap in its own
//!   buffers; one `tx_burst` copies them into memif buffers; taken frames are released with
//!   `rx_consume`.
//! - Backpressure: when the memif ring is full (uswitchd is behind), the frames not taken stay
//!   ready and are offered again on the next pass before anything new is read from the tap;
//!   meanwhile the kernel queues (and, when its queue is full, throttles TCP) instead of us
//!   dropping. This relies on every frame taking one memif buffer (then `tx_burst` sends a
//!   prefix), so it is on only when a slot fits the port's buffer size. While the link is down
//!   frames are dropped (counted by the port), as a NIC without carrier would.
//!   Note: the port counts each refused attempt in `drop_ring_full`; `retried` here says how
//!   many of those were offered again.
//!
//! Hot path: no allocation, no locks, no logs; counters only. Syscalls are the [`TapIo`]'s
//! business: one per frame with read/write, at most one per loop pass with io_uring.
use crate::tapdev::Sent;
use crate::tapio::{TapIo, BURST};
use std::io;
use uswitch::port::{PktRef, Port, TxItem};

/// Counters of the tap side (the memif side counts in the port's own `PortStats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames read from the tap (sent towards uswitch).
    pub from_tap: u64,
    pub from_tap_bytes: u64,
    /// Frames written to the tap (received from uswitch).
    pub to_tap: u64,
    pub to_tap_bytes: u64,
    /// Frames the tap refused (kernel queue full, interface down).
    pub to_tap_dropped: u64,
    /// Frames from uswitch longer than the MTU allows (dropped).
    pub oversize: u64,
    /// Frames offered to memif again after a full ring.
    pub retried: u64,
}

pub struct Shuttle<P: Port, T: TapIo> {
    pub port: P,
    pub io: T,
    slot: usize,
    tx_pkts: Vec<PktRef>,
    items: Vec<TxItem>,
    rx_pkts: Vec<PktRef>,
    /// Frames memif refused on the last pass (offered again first).
    held: usize,
    /// Retry refused frames (every frame fits one memif buffer).
    retry: bool,
    pub counters: TapCounters,
}

impl<P: Port, T: TapIo> Shuttle<P, T> {
    /// `slot` is the tap buffer size ([`crate::tapio::slot_size`]); `buffer_size` the memif
    /// buffer size (frames up to it take one buffer; 0 = unknown, no retry).
    pub fn new(port: P, io: T, slot: usize, buffer_size: u32) -> Shuttle<P, T> {
        Shuttle {
            port,
            io,
            slot,
            tx_pkts: vec![PktRef::default(); BURST],
            items: (0..BURST)
                .map(|i| TxItem {
                    idx: i as u16,
                    ..TxItem::default()
                })
                .collect(),
            rx_pkts: vec![PktRef::default(); BURST],
            held: 0,
            retry: slot <= buffer_size as usize,
            counters: TapCounters::default(),
        }
    }

    /// Tap-side counters including drops the I/O layer saw after queueing.
    pub fn tap_counters(&self) -> TapCounters {
        let mut c = self.counters;
        c.to_tap_dropped += self.io.late_drops();
        c
    }

    /// Gives the I/O side back (to close the tap) and the port (to drop it).
    pub fn into_parts(self) -> (P, T) {
        (self.port, self.io)
    }

    /// One burst each way; returns the frames moved. An error is fatal for the tap (e.g. it
    /// was deleted with the pod's netns).
    #[inline]
    pub fn pass(&mut self) -> io::Result<usize> {
        Ok(self.memif_to_tap()? + self.tap_to_memif()?)
    }

    fn memif_to_tap(&mut self) -> io::Result<usize> {
        let mut moved = 0;
        for q in 0..self.port.rx_queues() {
            let room = self.io.tx_room().min(BURST);
            if room == 0 {
                break;
            }
            let n = self.port.rx_burst(q, &mut self.rx_pkts[..room]);
            let mut res = Ok(());
            for p in &self.rx_pkts[..n] {
                let len = p.len() as usize;
                if len > self.slot {
                    self.counters.oversize += 1;
                    continue;
                }
                match self.io.send_with(|buf| p.read_head(&mut buf[..len])) {
                    Ok(Sent::Ok) => {
                        self.counters.to_tap += 1;
                        self.counters.to_tap_bytes += len as u64;
                    }
                    Ok(Sent::Dropped) => self.counters.to_tap_dropped += 1,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            // Slots go back even when the tap failed.
            if n > 0 {
                self.port.rx_release(q);
            }
            res?;
            moved += n;
        }
        Ok(moved)
    }

    fn tap_to_memif(&mut self) -> io::Result<usize> {
        let ready = self.io.poll_rx()?.min(BURST);
        if ready == 0 {
            self.held = 0;
            return Ok(0);
        }
        self.counters.retried += self.held.min(ready) as u64;
        for i in 0..ready {
            let p = &mut self.tx_pkts[i];
            p.clear();
            p.push_seg(self.io.rx_seg(i));
        }
        let sent = self
            .port
            .tx_burst(0, &self.tx_pkts[..ready], &self.items[..ready]);
        let done = if sent < ready && self.retry && self.port.link_up() {
            self.held = ready - sent;
            sent
        } else {
            self.held = 0;
            ready
        };
        self.counters.from_tap += done as u64;
        self.counters.from_tap_bytes += self.tx_pkts[..done]
            .iter()
            .map(|p| u64::from(p.len()))
            .sum::<u64>();
        self.io.rx_consume(done);
        Ok(sent)
    }
}
