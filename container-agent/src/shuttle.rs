//! Moving frames between the tap and the memif port, in bursts.
//!
//! Buffer ownership:
//! - memif → tap: `rx_burst` lends us the peer's buffers; each frame is copied once into the
//!   staging buffer (segments of a chained frame are joined there), written to the tap, and all
//!   slots go back with one `rx_release` per burst.
//! - tap → memif: up to [`BURST`] frames are read into our own slots (one `HeapBuf`, slot size
//!   MTU + headers), then one `tx_burst` copies them into memif buffers. A frame the port cannot
//!   take (link down, ring full) is dropped and counted by the port, as a full NIC queue would.
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
    pub counters: TapCounters,
}

impl<P: Port> Shuttle<P> {
    /// Slots hold MTU + Ethernet header + one VLAN tag (rounded to 64 bytes).
    pub fn new(port: P, tap: Tap, mtu: u16) -> Shuttle<P> {
        let slot = ((usize::from(mtu) + 18 + 63) & !63).min(MAX_FRAME as usize);
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
            // Unsent frames are counted as drops by the port.
            self.port.tx_burst(0, &self.tx_pkts[..n], &self.items[..n]);
        }
        Ok(n)
    }
}
