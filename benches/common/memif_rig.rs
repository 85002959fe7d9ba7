//! The in-process memif rig shared by the criterion benches (`benches/hotpath.rs`) and the
//! instruction-count workload (`examples/icount.rs`): port configs, socket paths, link
//! bring-up, ready-made transmit sets and a drain loop. Included with `#[path]` by both.
use std::time::{Duration, Instant};
use uswitch::bridge::Switch;
use uswitch::config::{MemifConfig, MemifMode, MemifRole};
use uswitch::memif::MemifPort;
use uswitch::port::{PktRef, Port, TxItem, VlanEdit};
use uswitch::shm::HeapBuf;

pub fn memif_cfg(socket: &str, role: MemifRole) -> MemifConfig {
    MemifConfig {
        socket: socket.to_string(),
        role,
        id: 0,
        secret: None,
        queues: 1,
        ring_size: 10,
        max_ring_size: None,
        buffer_size: 2048,
        mode: MemifMode::Ethernet,
    }
}

pub fn sock(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!("uswitch-bench-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.to_string_lossy().into_owned()
}

/// Polls `ports` (and the switch's control tick, when given) until every port is up.
pub fn bring_up(sw: Option<&mut Switch>, ports: &mut [&mut MemifPort]) {
    let t0 = Instant::now();
    let mut sw = sw;
    loop {
        let now = Instant::now();
        let mut up = true;
        if let Some(sw) = sw.as_deref_mut() {
            up &= sw.control_tick(now, 1);
        }
        for p in ports.iter_mut() {
            p.poll_control(now);
            up &= p.link_up();
        }
        if up {
            if let Some(sw) = sw {
                // One more tick so the switch samples every link as up.
                sw.control_tick(Instant::now(), 1);
            }
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "memif links did not come up"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Frames in a heap buffer with PktRefs and Keep items, ready for `tx_burst`.
pub struct TxSet {
    _buf: HeapBuf,
    pub pkts: Vec<PktRef>,
    pub items: Vec<TxItem>,
}

pub fn tx_set(frames: &[Vec<u8>]) -> TxSet {
    let mut buf = HeapBuf::new(frames.len() * 2048);
    let mut pkts = vec![PktRef::default(); frames.len()];
    for (k, f) in frames.iter().enumerate() {
        buf.bytes_mut()[k * 2048..k * 2048 + f.len()].copy_from_slice(f);
        pkts[k].push_seg(buf.seg(k * 2048, f.len()).expect("in buffer"));
    }
    let items = (0..frames.len())
        .map(|i| TxItem {
            idx: i as u16,
            edit: VlanEdit::Keep,
        })
        .collect();
    TxSet {
        _buf: buf,
        pkts,
        items,
    }
}

/// Receives and releases everything pending on queue 0; returns the packet count.
pub fn drain(p: &mut MemifPort, scratch: &mut [PktRef]) -> usize {
    let mut total = 0;
    loop {
        let n = p.rx_burst(0, scratch);
        if n == 0 {
            return total;
        }
        total += n;
        p.rx_release(0);
    }
}
