//! Tests of [`Endpoint`] against in-process uswitch memif servers: buffer ownership under
//! zero-copy forwarding, and exact delivery through a copying switch.
use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use uswitch::config::{MemifConfig, MemifMode, MemifRole};
use uswitch::memif::MemifPort;
use uswitch::port::{PktRef, Port, TxItem, MAX_BURST};

/// An in-process uswitch memif "switch": two server ports, everything from one copied to
/// the other, polled by a thread until the flag drops.
fn switch(names: [String; 2], stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let cfg = |s: &str| MemifConfig {
        socket: s.to_string(),
        role: MemifRole::Server,
        id: 0,
        secret: None,
        queues: 1,
        ring_size: 10,
        max_ring_size: None,
        buffer_size: 2048,
        mode: MemifMode::Ethernet,
    };
    let mut ports = [
        MemifPort::new("a", &cfg(&names[0])).unwrap(),
        MemifPort::new("b", &cfg(&names[1])).unwrap(),
    ];
    std::thread::spawn(move || {
        let mut pkts = vec![PktRef::default(); MAX_BURST];
        let items: Vec<TxItem> = (0..MAX_BURST)
            .map(|i| TxItem {
                idx: i as u16,
                ..Default::default()
            })
            .collect();
        while !stop.load(Ordering::Relaxed) {
            for p in &mut ports {
                p.poll_control(Instant::now());
            }
            for from in 0..2 {
                let n = ports[from].rx_burst(0, &mut pkts[..32]);
                if n > 0 {
                    ports[1 - from].tx_burst(0, &pkts[..n], &items[..n]);
                }
                ports[from].rx_release(0);
            }
        }
    })
}

fn opts() -> EndpointOpts {
    EndpointOpts {
        queues: 1,
        log2_ring: 6,
        buffer_size: 2048,
        timeout: Duration::from_secs(5),
        secret: None,
    }
}

#[test]
fn buffer_stride_is_an_odd_number_of_lines_that_holds_the_buffer() {
    assert_eq!(buffer_stride(2048), 2112);
    assert_eq!(buffer_stride(2112), 2112);
    assert_eq!(buffer_stride(128), 192);
    assert_eq!(buffer_stride(1500), 1536 + 64);
    assert_eq!(buffer_stride(65536), 65536 + 64);
    for size in [128u32, 129, 1000, 2047, 2048, 2049, 4096, 9000, 65536] {
        let s = buffer_stride(size);
        assert!(
            s >= size && s.is_multiple_of(64) && !(s / 64).is_multiple_of(2),
            "{size} -> {s}"
        );
    }
    // The first lines of 2048-byte buffers land in every set of a 2048-set cache, not 1/32.
    let sets: std::collections::HashSet<u32> = (0..2048u32)
        .map(|i| (i * buffer_stride(2048) / 64) % 2048)
        .collect();
    assert_eq!(sets.len(), 2048);
}

#[test]
fn buffers_do_not_overlap_and_use_the_padded_stride() {
    let base = format!("@uswb-ep-test3-{}", std::process::id());
    let names = [format!("{base}-a"), format!("{base}-b")];
    let stop = Arc::new(AtomicBool::new(false));
    let sw = switch(names.clone(), stop.clone());
    let ep = Endpoint::connect(&names, &[0, 0], &opts()).unwrap();
    let mut offs = ep.owned_buffers();
    offs.sort_unstable();
    assert_eq!(offs.len(), 2 * 2 * 64);
    for w in offs.windows(2) {
        assert_eq!(w[1] - w[0], 2112, "buffers {} and {}", w[0], w[1]);
    }
    let last = *offs.last().unwrap() as usize + 2048;
    assert!(
        last <= ep.region.len(),
        "last buffer ends at {last}, past the region"
    );
    drop(ep);
    stop.store(true, Ordering::Relaxed);
    sw.join().unwrap();
}

#[test]
fn zero_copy_reflect_keeps_every_buffer_owned_once() {
    let base = format!("@uswb-ep-test-{}", std::process::id());
    let names = [format!("{base}-a"), format!("{base}-b")];
    let stop = Arc::new(AtomicBool::new(false));
    let sw = switch(names.clone(), stop.clone());
    let mut ep = Endpoint::connect(&names, &[0, 0], &opts()).unwrap();
    ep.check_ownership();
    // Inject 40 frames on link 0 (more than one burst, less than the 64-slot ring).
    let frame = [0x5au8; 64];
    let sent = ep.tx(0, 0, 40, |_, seg| {
        seg.write(0, &frame);
        64
    });
    assert_eq!(sent, 40);
    ep.check_ownership();
    let until = Instant::now() + Duration::from_secs(1);
    let mut moved = 0;
    while Instant::now() < until {
        moved += ep.forward(1, 0, 0, 32);
        moved += ep.forward(0, 1, 0, 32);
        ep.check_ownership();
    }
    stop.store(true, Ordering::Relaxed);
    sw.join().unwrap();
    // (Debug build on a shared 2-core machine: a few thousand moves per second at least.)
    assert!(moved > 200, "frames circulate: {moved}");
    let (l0, l1) = (ep.links[0].st, ep.links[1].st);
    assert_eq!(l0.bad_desc + l1.bad_desc, 0);
    // Link 1 receives what the switch copied from link 0; the reflector posts it on link 0.
    assert_eq!(l1.rx_packets, l0.tx_packets - 40);
    assert_eq!(l0.rx_packets, l1.tx_packets);
    assert!(ep.links.iter().all(|l| l.is_up()));
}

#[test]
fn tx_rx_counts_and_payload_survive_the_switch() {
    let base = format!("@uswb-ep-test2-{}", std::process::id());
    let names = [format!("{base}-a"), format!("{base}-b")];
    let stop = Arc::new(AtomicBool::new(false));
    let sw = switch(names.clone(), stop.clone());
    let mut ep = Endpoint::connect(&names, &[0, 0], &opts()).unwrap();
    let mut next = 0u32;
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while got.len() < 2000 && Instant::now() < until {
        // At most 32 frames outstanding: the 64-slot S2C ring of link 1 never overflows
        // (the in-process switch drops when it is full, like any switch).
        if next < 2000 && (next as usize) < got.len() + 32 {
            let room = got.len() + 32 - next as usize;
            next += ep.tx(0, 0, room.min(8), |i, seg| {
                seg.write(0, &(next + i as u32).to_le_bytes());
                64
            }) as u32;
        }
        ep.rx(1, 0, 32, |seg| {
            let mut b = [0u8; 4];
            seg.read(0, &mut b);
            got.push(u32::from_le_bytes(b));
        });
        ep.check_ownership();
    }
    stop.store(true, Ordering::Relaxed);
    sw.join().unwrap();
    assert_eq!(got.len(), 2000);
    assert!(
        got.iter().enumerate().all(|(i, &v)| v == i as u32),
        "in order, none lost"
    );
    assert_eq!(ep.links[1].st.rx_bytes, 2000 * 64);
}

impl Endpoint {
    /// The offsets of every buffer we track: the pool's, then those posted on each ring slot
    /// (C2S in flight, S2C waiting for the server).
    pub(super) fn owned_buffers(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self.pool.clone();
        for l in &self.links {
            for q in &l.qs {
                for k in 0..q.tx_head.wrapping_sub(q.tx_done) {
                    all.push(q.tx_bufs[usize::from(q.tx_done.wrapping_add(k) & q.mask)]);
                }
                for k in 0..q.rx_head.wrapping_sub(q.rx_cursor) {
                    all.push(q.rx_bufs[usize::from(q.rx_cursor.wrapping_add(k) & q.mask)]);
                }
            }
        }
        all
    }

    /// Every buffer is owned exactly once: in the pool, or posted on exactly one ring slot.
    pub(super) fn check_ownership(&self) {
        let mut all = self.owned_buffers();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a buffer is owned twice");
        let rings: usize = self.links.iter().map(|l| 2 * l.qs.len()).sum();
        let size = self.links.first().map_or(0, |l| usize::from(l.qs[0].size));
        assert_eq!(n, rings * size, "a buffer was lost");
    }
}
