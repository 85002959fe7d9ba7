//! Proves the forwarding hot path does not allocate: a counting global allocator (this test
//! binary only) counts allocations made by the current thread while `Switch::poll` forwards
//! bursts through a bridge (unicast, flood, VLAN push/pop, learning of new MACs) and an
//! xconnect, with fake ports in replay/sink mode and with real in-process memif ports.
//! (The allocator shim is the one `unsafe` outside `shm.rs`/`memif/ring.rs`: `GlobalAlloc` is
//! an unsafe trait; it only forwards to `System`.)
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};
use uswitch::bridge::Switch;
use uswitch::config::{BridgeConfig, MemifConfig, MemifMode, MemifRole, VlanMode};
use uswitch::dataplane::Attach;
use uswitch::fakeport::{frame, mac, FakePort, BROADCAST};
use uswitch::memif::MemifPort;
use uswitch::port::{PktRef, Port, TxItem, VlanEdit};
use uswitch::shm::HeapBuf;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // try_with: the thread-locals may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY (of the impl): every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(|a| a.get())
}

fn fake(name: &str, replay: &[Vec<u8>]) -> Box<FakePort> {
    let (mut p, _) = FakePort::new(name);
    p.set_capture(false);
    p.set_replay(replay);
    Box::new(p)
}

#[test]
fn the_counter_counts() {
    let n = allocations(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert_eq!(n, 1);
}

#[test]
fn bridge_and_xconnect_forwarding_do_not_allocate() {
    let mut sw = Switch::new();
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    let on = |vlan| Attach::Bridge {
        bridge: "br0".into(),
        vlan,
    };
    // a (access 10) replays: unicast to mac(2), broadcasts, and 16 new source MACs per burst.
    let mut burst: Vec<Vec<u8>> = (0..8).map(|_| frame(mac(2), mac(1), None, 64)).collect();
    burst.extend((0..8).map(|_| frame(BROADCAST, mac(1), None, 1500)));
    burst.extend((0..16).map(|k| frame(mac(2), mac(1000 + k), None, 200)));
    sw.add_port(fake("a", &burst), on(VlanMode::Access(10)))
        .unwrap();
    // t (trunk 10) replays tagged frames that announce mac(2), so a -> mac(2) is known.
    let tagged: Vec<Vec<u8>> = (0..32)
        .map(|_| frame(BROADCAST, mac(2), Some(10), 68))
        .collect();
    sw.add_port(fake("t", &tagged), on(VlanMode::Trunk(vec![10])))
        .unwrap();
    sw.add_port(fake("b", &[]), on(VlanMode::Access(10)))
        .unwrap();
    sw.add_port(fake("c", &[]), on(VlanMode::Access(20)))
        .unwrap();
    // x <-> y xconnect.
    sw.add_port(fake("x", &burst), Attach::None).unwrap();
    sw.add_port(fake("y", &[]), Attach::None).unwrap();
    sw.xconnect("x", "y").unwrap();
    sw.control_tick(Instant::now(), 1);
    // Warm up (first learning of every MAC), then count.
    for _ in 0..4 {
        sw.poll();
    }
    let mut moved = 0;
    let n = allocations(|| {
        for _ in 0..1000 {
            moved += sw.poll();
        }
    });
    assert_eq!(
        moved,
        1000 * 3 * 32,
        "a, t and x each move a burst per poll"
    );
    assert_eq!(n, 0, "allocations in 1000 polls");
    let stats = sw.port_stats(None, false).unwrap();
    let tx = |name: &str| {
        stats
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .total
            .tx_packets
    };
    assert!(tx("t") > 0 && tx("b") > 0 && tx("y") > 0 && tx("a") > 0);
    assert_eq!(tx("c"), 0, "VLAN 20 gets nothing");
}

fn memif_cfg(socket: &str, role: MemifRole) -> MemifConfig {
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

#[test]
fn memif_to_memif_through_a_bridge_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let sock = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let mut sw = Switch::new();
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    for n in ["a", "b"] {
        let p = MemifPort::new(n, &memif_cfg(&sock(n), MemifRole::Server)).unwrap();
        let attach = Attach::Bridge {
            bridge: "br0".into(),
            vlan: VlanMode::None,
        };
        sw.add_port(Box::new(p), attach).unwrap();
    }
    let mut pa = MemifPort::new("pa", &memif_cfg(&sock("a"), MemifRole::Client)).unwrap();
    let mut pb = MemifPort::new("pb", &memif_cfg(&sock("b"), MemifRole::Client)).unwrap();
    let t0 = Instant::now();
    loop {
        let now = Instant::now();
        let up = sw.control_tick(now, 1);
        pa.poll_control(now);
        pb.poll_control(now);
        if up && pa.link_up() && pb.link_up() && sw.port_infos().iter().all(|i| i.link_up) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "memif links did not come up"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    sw.control_tick(Instant::now(), 1);

    let frames: Vec<Vec<u8>> = (0..32)
        .map(|k| frame(mac(2), mac(1), None, 64 + 40 * k))
        .collect();
    let mut buf = HeapBuf::new(32 * 2048);
    let mut pkts = vec![PktRef::default(); 32];
    for (k, f) in frames.iter().enumerate() {
        buf.bytes_mut()[k * 2048..k * 2048 + f.len()].copy_from_slice(f);
        pkts[k].push_seg(buf.seg(k * 2048, f.len()).unwrap());
    }
    let items: Vec<TxItem> = (0..32)
        .map(|i| TxItem {
            idx: i as u16,
            edit: VlanEdit::Keep,
        })
        .collect();
    let mut scratch = vec![PktRef::default(); 64];
    let mut drain = |p: &mut MemifPort| {
        let mut n = 0;
        loop {
            let k = p.rx_burst(0, &mut scratch);
            if k == 0 {
                return n;
            }
            n += k;
            p.rx_release(0);
        }
    };
    // pb announces mac(2); warm up a few bursts.
    let hello = frame(BROADCAST, mac(2), None, 64);
    buf.bytes_mut()[..64].copy_from_slice(&hello);
    let mut hp = PktRef::default();
    hp.push_seg(buf.seg(0, 64).unwrap());
    pb.tx_burst(0, &[hp], &items[..1]);
    sw.poll();
    drain(&mut pa);
    buf.bytes_mut()[..frames[0].len()].copy_from_slice(&frames[0]);
    for _ in 0..4 {
        pa.tx_burst(0, &pkts, &items);
        sw.poll();
        drain(&mut pb);
    }
    let (mut sent, mut moved, mut got) = (0, 0, 0);
    let n = allocations(|| {
        for _ in 0..500 {
            sent += pa.tx_burst(0, &pkts, &items);
            moved += sw.poll();
            got += drain(&mut pb);
        }
    });
    assert_eq!((sent, moved, got), (500 * 32, 500 * 32, 500 * 32));
    assert_eq!(n, 0, "allocations in 500 memif bursts");
}
