//! Manual interop harness against a real memif peer (DPDK testpmd, VPP, libmemif).
//!
//! `#[ignore]`d; run with environment variables, e.g.:
//! ```text
//! MEMIF_SOCKET=/tmp/x.sock MEMIF_ROLE=server MEMIF_SECS=10 MEMIF_TX_LEN=0 \
//!   cargo test -p uswitch-engine --release dpdk_interop -- --ignored --nocapture
//! ```
//! It polls the port, receives and releases everything, and when `MEMIF_TX_LEN` > 0 transmits
//! bursts of 32 frames of that length (at most `MEMIF_TX_COUNT` in all); it prints the port counters once a second.
use crate::config::{MemifConfig, MemifMode, MemifRole};
use crate::memif::MemifPort;
use crate::port::{PktRef, Port, TxItem, VlanEdit};
use crate::shm::HeapBuf;
use std::time::{Duration, Instant};

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

#[test]
#[ignore]
fn dpdk_interop() {
    let socket = env(
        "MEMIF_SOCKET",
        "/tmp/uswitch-memif-interop.sock".to_string(),
    );
    let role = if env("MEMIF_ROLE", "server".to_string()) == "client" {
        MemifRole::Client
    } else {
        MemifRole::Server
    };
    let cfg = MemifConfig {
        socket,
        role,
        id: env("MEMIF_ID", 0),
        secret: std::env::var("MEMIF_SECRET").ok(),
        queues: env("MEMIF_QUEUES", 1),
        ring_size: env("MEMIF_RING", 10),
        buffer_size: env("MEMIF_BSIZE", 2048),
        mode: MemifMode::Ethernet,
    };
    let secs: u64 = env("MEMIF_SECS", 10);
    let tx_len: usize = env("MEMIF_TX_LEN", 0);
    // Stop transmitting after this many packets (0 = no limit).
    let tx_count: u64 = env("MEMIF_TX_COUNT", 0);
    let mut port = MemifPort::new("uswitch0", &cfg).expect("create memif port");

    // One frame: broadcast dst, locally administered src, IPv4 ethertype, patterned payload.
    let mut frame = HeapBuf::new(tx_len.max(64));
    for (i, b) in frame.bytes_mut().iter_mut().enumerate() {
        *b = i as u8;
    }
    frame.bytes_mut()[..14].copy_from_slice(&[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
    ]);
    let mut pkts = vec![PktRef::default(); 32];
    for p in &mut pkts {
        p.push_seg(frame.seg(0, tx_len.max(1)).unwrap());
    }
    let items: Vec<TxItem> = (0..32)
        .map(|i| TxItem {
            idx: i as u16,
            edit: VlanEdit::Keep,
        })
        .collect();
    let mut rx = vec![PktRef::default(); 256];

    let t0 = Instant::now();
    let mut last_print = t0;
    let mut last_ctl = t0;
    let mut max_rx_len = 0u32;
    while t0.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if now - last_ctl >= Duration::from_millis(1) {
            port.poll_control(now);
            last_ctl = now;
        }
        for q in 0..port.rx_queues() {
            let n = port.rx_burst(q, &mut rx);
            for p in &rx[..n] {
                max_rx_len = max_rx_len.max(p.len());
            }
            port.rx_release(q);
        }
        let sent = port.stats().total.tx_packets;
        if tx_len > 0 && port.link_up() && (tx_count == 0 || sent < tx_count) {
            let want = if tx_count == 0 {
                32
            } else {
                (tx_count - sent).min(32) as usize
            };
            for q in 0..port.tx_queues() {
                port.tx_burst(q, &pkts, &items[..want]);
            }
        }
        if now - last_print >= Duration::from_secs(1) {
            last_print = now;
            let s = port.stats();
            eprintln!(
                "t={:>3}s link={} rx={} rx_bytes={} max_rx_len={} tx={} drop_ring_full={} \
                 drop_bad_desc={} connects={} disconnects={} control_errors={} last={:?}",
                t0.elapsed().as_secs(),
                s.link_up,
                s.total.rx_packets,
                s.total.rx_bytes,
                max_rx_len,
                s.total.tx_packets,
                s.total.drop_ring_full,
                s.total.drop_bad_desc,
                s.connects,
                s.disconnects,
                s.control_errors,
                s.last_disconnect_reason
            );
        }
        if !port.link_up() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    eprintln!(
        "info: {}",
        serde_json::to_string(&port.info()).unwrap_or_default()
    );
    eprintln!(
        "final: {}",
        serde_json::to_string(&port.stats()).unwrap_or_default()
    );
}
