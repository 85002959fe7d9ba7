//! An in-memory [`Port`] for unit tests, integration tests and benches.
//!
//! A [`FakePort`] lives in the dataplane worker like any port; its [`FakeHandle`] stays with
//! the test to inject frames, read what the port transmitted (VLAN edits applied, exactly the
//! bytes a peer would see), and switch the link up or down. Like a real port:
//! - received frames are copied into the port's own buffers (a [`HeapBuf`], chained in
//!   `seg_size` pieces, so multi-segment packets are exercised) and stay untouched until
//!   `rx_release`;
//! - transmit copies each packet once through [`PktReader`];
//! - link changes take effect in `poll_control` (counted as connects / disconnects); a down
//!   port receives nothing and drops what it is asked to send (counted as `drop_no_buffer`).
//!
//! It also checks the dataplane's side of the port contract: `rx_burst` twice without
//! `rx_release`, `poll_control` or a release while nothing is outstanding are counted as
//! [`FakeHandle::contract_violations`].
//!
//! Bench modes: [`FakePort::set_replay`] makes every `rx_burst` return the same prepared frames
//! without copying or locking, and [`FakePort::set_capture`]`(false)` makes transmit copy into a
//! scratch buffer and count only. Tests use the default (queue + capture), which takes a mutex
//! per burst: fine for a fake, never done by real ports.
use crate::port::{
    PktReader, PktRef, Port, PortInfo, PortStats, QueueStats, TxItem, MAX_BURST, MAX_FRAME,
};
use crate::shm::HeapBuf;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Bytes reserved per received packet (a maximum frame, rounded up).
const SLOT_BYTES: usize = 10 * 1024;

#[derive(Default)]
struct Shared {
    link: AtomicBool,
    rx: Mutex<VecDeque<Vec<u8>>>,
    /// Frames queued in `rx` (read without locking by an idle `rx_burst`).
    rx_pending: AtomicUsize,
    tx: Mutex<Vec<Vec<u8>>>,
    tx_packets: AtomicU64,
    violations: AtomicU64,
    polls: AtomicU64,
    dropped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test thread that panicked while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The test's side of a [`FakePort`]. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct FakeHandle(Arc<Shared>);

impl FakeHandle {
    /// Queues a frame for the port to receive.
    pub fn inject(&self, frame: &[u8]) {
        lock(&self.0.rx).push_back(frame.to_vec());
        self.0.rx_pending.fetch_add(1, Ordering::Release);
    }
    /// Frames queued but not yet received by the port.
    pub fn pending_rx(&self) -> usize {
        self.0.rx_pending.load(Ordering::Acquire)
    }
    /// Takes the frames the port transmitted so far (capture mode).
    pub fn take_tx(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *lock(&self.0.tx))
    }
    /// Packets transmitted since creation (any mode).
    pub fn tx_packets(&self) -> u64 {
        self.0.tx_packets.load(Ordering::Relaxed)
    }
    /// Link state the port will adopt at its next `poll_control`.
    pub fn set_link(&self, up: bool) {
        self.0.link.store(up, Ordering::Release);
    }
    /// Times the dataplane broke the port contract (see the module doc).
    pub fn contract_violations(&self) -> u64 {
        self.0.violations.load(Ordering::Relaxed)
    }
    /// Times `poll_control` ran.
    pub fn polls(&self) -> u64 {
        self.0.polls.load(Ordering::Relaxed)
    }
    /// The port itself was dropped (removed from the switch, or the switch stopped).
    pub fn port_dropped(&self) -> bool {
        self.0.dropped.load(Ordering::Acquire)
    }
}

/// Builds an Ethernet frame of `len` bytes (at least the header; padded with a counting
/// pattern): `dst`, `src`, an 802.1Q tag when `vlan` is set, ethertype 0x0800.
pub fn frame(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(18));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let mut k = 0u8;
    while f.len() < len {
        f.push(k);
        k = k.wrapping_add(1);
    }
    f
}

/// A locally administered unicast MAC `02:00:00:00:hi:lo` for tests.
pub fn mac(n: u16) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0, 0, 0, b[0], b[1]]
}

/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

pub struct FakePort {
    name: String,
    shared: Arc<Shared>,
    up: bool,
    seg_size: usize,
    rxbuf: HeapBuf,
    /// An rx burst is outstanding (not yet released).
    outstanding: bool,
    /// Replay frames: buffer and frame lengths (PktRefs are not `Send`, so they are rebuilt).
    replay: Option<(HeapBuf, Vec<usize>)>,
    capture: bool,
    scratch: HeapBuf,
    stats: QueueStats,
    connects: u64,
    disconnects: u64,
}

impl FakePort {
    /// A port with its link up, queue + capture mode, 2048-byte receive segments.
    pub fn new(name: &str) -> (FakePort, FakeHandle) {
        let shared = Arc::new(Shared::default());
        shared.link.store(true, Ordering::Release);
        let port = FakePort {
            name: name.to_string(),
            shared: shared.clone(),
            up: true,
            seg_size: 2048,
            rxbuf: HeapBuf::new(MAX_BURST * SLOT_BYTES),
            outstanding: false,
            replay: None,
            capture: true,
            scratch: HeapBuf::new(MAX_FRAME as usize + 4),
            stats: QueueStats::default(),
            connects: 0,
            disconnects: 0,
        };
        (port, FakeHandle(shared))
    }

    /// Size of the receive segments a frame is split into (clamped to 1..=SLOT_BYTES). A
    /// frame needing more than `MAX_SEGS` segments is dropped as a bad descriptor.
    pub fn set_seg_size(&mut self, n: usize) {
        self.seg_size = n.clamp(1, SLOT_BYTES);
    }

    /// Capture transmitted frames for [`FakeHandle::take_tx`] (default) or just count them.
    pub fn set_capture(&mut self, on: bool) {
        self.capture = on;
    }

    /// Every `rx_burst` returns these frames (up to the burst size), without consuming them.
    /// Frames longer than a slot are cut. Empty list = back to queue mode.
    pub fn set_replay(&mut self, frames: &[Vec<u8>]) {
        if frames.is_empty() {
            self.replay = None;
            return;
        }
        let frames = &frames[..frames.len().min(MAX_BURST)];
        let mut buf = HeapBuf::new(frames.len() * SLOT_BYTES);
        let mut lens = Vec::with_capacity(frames.len());
        for (k, f) in frames.iter().enumerate() {
            let len = f.len().min(SLOT_BYTES);
            buf.bytes_mut()[k * SLOT_BYTES..k * SLOT_BYTES + len].copy_from_slice(&f[..len]);
            lens.push(len);
        }
        self.replay = Some((buf, lens));
    }

    /// Makes `p` the packet at `buf[base..base + len]` as a chain of `seg`-byte segments;
    /// false when it would need more than `MAX_SEGS` of them.
    fn chain(p: &mut PktRef, buf: &HeapBuf, base: usize, len: usize, seg: usize) -> bool {
        p.clear();
        p.queue = 0;
        let mut off = 0;
        while off < len {
            let n = seg.min(len - off);
            match buf.seg(base + off, n) {
                Some(s) if p.push_seg(s) => off += n,
                _ => return false,
            }
        }
        true
    }

    fn violation(&self) {
        self.shared.violations.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for FakePort {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Release);
    }
}

impl Port for FakePort {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll_control(&mut self, _now: std::time::Instant) {
        self.shared.polls.fetch_add(1, Ordering::Relaxed);
        if self.outstanding {
            self.violation();
        }
        let up = self.shared.link.load(Ordering::Acquire);
        if up != self.up {
            self.up = up;
            if up {
                self.connects += 1;
            } else {
                self.disconnects += 1;
            }
        }
    }

    fn link_up(&self) -> bool {
        self.up
    }
    fn rx_queues(&self) -> usize {
        usize::from(self.up)
    }
    fn tx_queues(&self) -> usize {
        usize::from(self.up)
    }

    fn rx_burst(&mut self, q: usize, out: &mut [PktRef]) -> usize {
        if !self.up || q != 0 {
            return 0;
        }
        if self.outstanding {
            self.violation();
        }
        let mut n = 0;
        if let Some((buf, lens)) = &self.replay {
            for (k, &len) in lens.iter().enumerate().take(out.len()) {
                if Self::chain(&mut out[n], buf, k * SLOT_BYTES, len, self.seg_size) {
                    n += 1;
                } else {
                    self.stats.drop_bad_desc += 1;
                }
            }
        } else if self.shared.rx_pending.load(Ordering::Acquire) > 0 {
            let mut rx = lock(&self.shared.rx);
            while n < out.len().min(MAX_BURST) {
                let Some(f) = rx.pop_front() else { break };
                self.shared.rx_pending.fetch_sub(1, Ordering::Release);
                if f.is_empty() || f.len() > MAX_FRAME as usize {
                    self.stats.drop_bad_desc += 1;
                    continue;
                }
                let base = n * SLOT_BYTES;
                self.rxbuf.bytes_mut()[base..base + f.len()].copy_from_slice(&f);
                if Self::chain(&mut out[n], &self.rxbuf, base, f.len(), self.seg_size) {
                    n += 1;
                } else {
                    self.stats.drop_bad_desc += 1;
                }
            }
        }
        for p in &out[..n] {
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += u64::from(p.len());
        }
        self.outstanding = n > 0;
        n
    }

    fn rx_release(&mut self, _q: usize) {
        if !self.outstanding {
            self.violation();
        }
        self.outstanding = false;
    }

    fn tx_burst(&mut self, _q: usize, pkts: &[PktRef], items: &[TxItem]) -> usize {
        if !self.up {
            self.stats.drop_no_buffer += items.len() as u64;
            return 0;
        }
        let mut captured = Vec::new();
        let mut sent = 0;
        for it in items {
            let Some(mut r) = pkts
                .get(usize::from(it.idx))
                .and_then(|p| PktReader::new(p, it.edit))
            else {
                self.stats.drop_bad_desc += 1;
                continue;
            };
            let len = r.out_len() as usize;
            let Some(dst) = self.scratch.seg_mut(0, len) else {
                self.stats.drop_no_buffer += 1;
                continue;
            };
            let mut off = 0;
            while !r.done() {
                let k = r.fill(&dst, off);
                if k == 0 {
                    break;
                }
                off += k;
            }
            if self.capture {
                captured.push(self.scratch.bytes()[..off].to_vec());
            }
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += off as u64;
            sent += 1;
        }
        if !captured.is_empty() {
            lock(&self.shared.tx).append(&mut captured);
        }
        self.shared
            .tx_packets
            .fetch_add(sent as u64, Ordering::Relaxed);
        sent
    }

    fn stats(&self) -> PortStats {
        PortStats {
            name: self.name.clone(),
            link_up: self.up,
            total: self.stats,
            queues: vec![self.stats],
            control_errors: 0,
            connects: self.connects,
            disconnects: self.disconnects,
            last_disconnect_reason: None,
        }
    }

    fn clear_stats(&mut self) {
        self.stats = QueueStats::default();
    }

    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            kind: "fake".into(),
            link_up: self.up,
            ..PortInfo::default()
        }
    }

    fn count_no_route(&mut self, _q: usize, n: u64) {
        self.stats.drop_no_route += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::VlanEdit;

    #[test]
    fn rx_tx_roundtrip_with_edits_and_chains() {
        let (mut a, ha) = FakePort::new("a");
        a.set_seg_size(7);
        let frame: Vec<u8> = (0..100u8).collect();
        ha.inject(&frame);
        ha.inject(&[]);
        let mut burst = vec![PktRef::default(); 8];
        assert_eq!(a.rx_burst(0, &mut burst), 1);
        assert_eq!(burst[0].segs().len(), 15);
        let items = [
            TxItem {
                idx: 0,
                edit: VlanEdit::Keep,
            },
            TxItem {
                idx: 0,
                edit: VlanEdit::Push(5),
            },
            TxItem {
                idx: 9,
                edit: VlanEdit::Keep,
            },
        ];
        assert_eq!(a.tx_burst(0, &burst, &items), 2);
        a.rx_release(0);
        let tx = ha.take_tx();
        assert_eq!(tx[0], frame);
        assert_eq!(&tx[1][12..16], &[0x81, 0, 0, 5]);
        assert_eq!(tx[1].len(), 104);
        let s = a.stats();
        assert_eq!(
            (
                s.total.rx_packets,
                s.total.tx_packets,
                s.total.drop_bad_desc
            ),
            (1, 2, 2)
        );
        assert_eq!(ha.contract_violations(), 0);
        a.rx_release(0);
        assert_eq!(ha.contract_violations(), 1);
    }

    #[test]
    fn link_down_blocks_traffic() {
        let (mut a, ha) = FakePort::new("a");
        ha.set_link(false);
        assert!(a.link_up(), "takes effect in poll_control");
        a.poll_control(std::time::Instant::now());
        assert!(!a.link_up());
        ha.inject(&[0u8; 60]);
        let mut burst = vec![PktRef::default(); 8];
        assert_eq!(a.rx_burst(0, &mut burst), 0);
        assert_eq!(a.tx_burst(0, &burst, &[TxItem::default()]), 0);
        assert_eq!(a.stats().total.drop_no_buffer, 1);
        assert_eq!(a.stats().disconnects, 1);
    }

    #[test]
    fn replay_mode_repeats() {
        let (mut a, _ha) = FakePort::new("a");
        a.set_replay(&[vec![1u8; 64], vec![2u8; 64]]);
        let mut burst = vec![PktRef::default(); 1];
        for _ in 0..3 {
            assert_eq!(a.rx_burst(0, &mut burst), 1);
            a.rx_release(0);
        }
        assert_eq!(a.stats().total.rx_packets, 3);
    }
}
