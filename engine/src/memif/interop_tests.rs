//! Manual interop harness against a real memif peer (DPDK testpmd, VPP, libmemif).
//!
//! `#[ignore]`d; run with environment variables, e.g.:
//! ```text
//! MEMIF_SOCKET=/tmp/x.sock MEMIF_ROLE=server MEMIF_SECS=14 MEMIF_TX_LEN=0 \
//!   cargo test -p uswitch-engine --release dpdk_interop -- --ignored --nocapture
//! dpdk-testpmd --no-pci --file-prefix memifhelper -m 256 --lcores 0@1,1@1 \
//!   --vdev net_memif0,role=client,socket=/tmp/x.sock,id=0,socket-abstract=no \
//!   -- --forward-mode=txonly --auto-start --stats-period 3
//! ```
//! It polls the port, receives and releases everything, and when `MEMIF_TX_LEN` > 0 transmits
//! bursts of 32 frames of that length (at most `MEMIF_TX_COUNT` in all); it prints the port
//! counters once a second. Other knobs: `MEMIF_ROLE=client`, `MEMIF_QUEUES`, `MEMIF_ID`,
//! `MEMIF_SECRET`, `MEMIF_RING` (log2), `MEMIF_BSIZE`.
//!
//! Notes from running it against DPDK 22.11 (Debian `dpdk`):
//! - DPDK's vdev defaults to an abstract socket; filesystem paths need `socket-abstract=no`.
//! - A DPDK *server* answers "ID not found" until testpmd has started the port; our client
//!   counts that as a control error and retries with backoff.
//! - testpmd `txonly` with chained packets (`--txpkts=2000,2000,2000,2000,1000` or
//!   `--mbuf-size=10240 --txpkts=9000`) overruns the C2S ring when the receiver falls behind:
//!   head ran thousands of slots past our tail (seen: head 33600 and 43520 with tail 0). One
//!   cause is visible in DPDK's copy path: a chain may start with one free slot fewer than it
//!   needs, the u16 free count wraps, and from then on it never waits. DPDK's own memif server
//!   shows the same traffic as frames averaging ~8975 bytes instead of 9000. We report it as a
//!   protocol violation and disconnect, as intended. Jumbo frames in the other direction (our
//!   tx, testpmd rxonly) arrive exactly.
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
        max_ring_size: None,
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
