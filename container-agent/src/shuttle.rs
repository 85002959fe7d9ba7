//! Moving frames between the tap and the memif port, in bursts.
//!
//! Buffer ownership:
//! - memif → tap: `rx_burst` lends us the peer's buffers; each frame is copied once into the
//!   staging buffer (segments of a chained frame are joined there), written to the tap, and all
//!   slots go back with one `rx_release` per burst.
//! - tap → memif: up to [`BURST`] frames are read into our own slots (one `HeapBuf`, slot size
//!   MTU + headers), then one `tx_burst` copies them into memif buffers.
//! - Backpressure: when the memif ring is full (uswitchd is behind), the frames not taken stay
//!   in our slots and are offered again on the next pass before anything new is read from the
//!   tap; meanwhile the kernel queues (and, when its queue is full, throttles TCP) instead of us
//!   dropping. This relies on every frame taking one memif buffer (then `tx_burst` sends a
//!   prefix), so it is on only when a slot fits the port's buffer size. While the link is down
//!   frames are dropped (counted by the port), as a NIC without carrier would.
//!   Note: the port counts each refused attempt in `drop_ring_full`; `retried` here says how
//!   many of those were offered again.
//!
//! Hot path: no allocation, no locks, no logs; counters only. The tap costs one `read`/`write`
//! syscall per frame (a tap has no batch read); see `docs/agent.md` on io_uring.
use crate::tapdev::Tap;
use std::io;
use uswitch::port::{PktRef, Port, TxItem, MAX_FRAME};
use uswitch::shm::HeapBuf;

/// Frames per burst in each direction.
pub const BURST: usize = 32;

/// Counters of the tap side (the memif side counts in the port's own `PortStats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames read from the tap (sent towards uswitch).
    pub from_tap: u64,
    pub from_tap_bytes: u64,
    /// Frames written to the tap (received from uswitch).
    pub to_tap: u64,
    pub to_tap_bytes: u64,
    /// Frames the tap refused (kernel queue full).
    pub to_tap_dropped: u64,
    /// Frames from uswitch longer than the MTU allows (dropped).
    pub oversize: u64,
    /// Frames offered to memif again after a full ring.
    pub retried: u64,
}

pub struct Shuttle<P: Port> {
    pub port: P,
    tap: Tap,
    slot: usize,
    slots: HeapBuf,
    tx_pkts: Vec<PktRef>,
    items: Vec<TxItem>,
    rx_pkts: Vec<PktRef>,
    stage: Vec<u8>,
    /// Slots `pend_from..pend_to` hold frames memif has not taken yet.
    pend_from: usize,
    pend_to: usize,
    /// Retry refused frames (every frame fits one memif buffer).
    retry: bool,
    pub counters: TapCounters,
}

impl<P: Port> Shuttle<P> {
    /// Slots hold MTU + Ethernet header + one VLAN tag (rounded to 64 bytes).
    /// `buffer_size` is the memif buffer size (frames up to it take one buffer).
    pub fn new(port: P, tap: Tap, mtu: u16, buffer_size: u32) -> Shuttle<P> {
        let frame = usize::from(mtu) + 18;
        let slot = ((frame + 63) & !63).min(MAX_FRAME as usize);
        Shuttle {
            port,
            tap,
            slot,
            slots: HeapBuf::new(slot * BURST),
            tx_pkts: vec![PktRef::default(); BURST],
            items: (0..BURST)
                .map(|i| TxItem {
                    idx: i as u16,
                    ..TxItem::default()
                })
                .collect(),
            rx_pkts: vec![PktRef::default(); BURST],
            stage: vec![0u8; slot],
            pend_from: 0,
            pend_to: 0,
            retry: frame <= buffer_size as usize,
            counters: TapCounters::default(),
        }
    }

    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// Gives the tap back (to close it) and the port (to drop it).
    pub fn into_parts(self) -> (P, Tap) {
        (self.port, self.tap)
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
            let n = self.port.rx_burst(q, &mut self.rx_pkts);
            let mut res = Ok(());
            for p in &self.rx_pkts[..n] {
                let len = p.len() as usize;
                if len > self.stage.len() {
                    self.counters.oversize += 1;
                    continue;
                }
                let got = p.read_head(&mut self.stage[..len]);
                match self.tap.send(&self.stage[..got]) {
                    Ok(true) => {
                        self.counters.to_tap += 1;
                        self.counters.to_tap_bytes += got as u64;
                    }
                    Ok(false) => self.counters.to_tap_dropped += 1,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            // Slots go back even when the tap failed.
            self.port.rx_release(q);
            res?;
            moved += n;
        }
        Ok(moved)
    }

    fn tap_to_memif(&mut self) -> io::Result<usize> {
        if self.pend_to > self.pend_from {
            if !self.port.link_up() {
                self.pend_from = 0;
                self.pend_to = 0;
            } else {
                let (a, b) = (self.pend_from, self.pend_to);
                let sent = self.port.tx_burst(0, &self.tx_pkts[..b], &self.items[a..b]);
                self.counters.retried += (b - a) as u64;
                self.pend_from += sent;
                if self.pend_from < self.pend_to {
                    return Ok(sent);
                }
                self.pend_from = 0;
                self.pend_to = 0;
            }
        }
        let mut n = 0;
        while n < BURST {
            let off = n * self.slot;
            let buf = &mut self.slots.bytes_mut()[off..off + self.slot];
            let Some(len) = self.tap.recv(buf)? else {
                break;
            };
            let Some(seg) = self.slots.seg(off, len) else {
                break;
            };
            let p = &mut self.tx_pkts[n];
            p.clear();
            p.push_seg(seg);
            self.counters.from_tap += 1;
            self.counters.from_tap_bytes += len as u64;
            n += 1;
        }
        if n > 0 {
            let sent = self.port.tx_burst(0, &self.tx_pkts[..n], &self.items[..n]);
            if sent < n && self.retry && self.port.link_up() {
                self.pend_from = sent;
                self.pend_to = n;
            }
        }
        Ok(n)
    }
}
