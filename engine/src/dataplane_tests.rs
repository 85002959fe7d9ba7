//! Tests of the dataplane worker through its handle: fake ports and in-process memif ports
//! driven by the real worker thread (traffic, runtime add/remove, pinning, idle behaviour,
//! cycle accounting, panicking jobs).
use super::*;
use crate::fakeport::{frame, mac, FakeHandle, FakePort, BROADCAST};

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn add(dp: &Dataplane, name: &str, bridge: Option<&str>, capture: bool) -> FakeHandle {
    let (mut p, h) = FakePort::new(name);
    p.set_capture(capture);
    let attach = match bridge {
        Some(b) => Attach::Bridge {
            bridge: b.into(),
            vlan: VlanMode::None,
        },
        None => Attach::None,
    };
    dp.add_port(Box::new(p), attach).unwrap();
    h
}

#[test]
fn worker_forwards_and_accounts_cycles() {
    let dp = Dataplane::start(None).unwrap();
    dp.add_bridge(BridgeConfig::new("br0")).unwrap();
    let a = add(&dp, "a", Some("br0"), true);
    let b = add(&dp, "b", Some("br0"), true);
    let c = add(&dp, "c", Some("br0"), true);
    b.inject(&frame(BROADCAST, mac(2), None, 64));
    wait_until("flood", || a.tx_packets() == 1 && c.tx_packets() == 1);
    for _ in 0..1000 {
        a.inject(&frame(mac(2), mac(1), None, 64));
    }
    wait_until("unicast", || b.tx_packets() == 1000);
    assert_eq!(c.tx_packets(), 1, "learned: no more flooding");
    let fdb = dp.fdb("br0").unwrap();
    assert_eq!(fdb.len(), 2);
    let ws = dp.worker_stats(true).unwrap();
    assert_eq!(ws.packets, 1001);
    assert!(
        ws.busy_cycles > 0 && ws.idle_cycles > 0 && ws.iterations > 0,
        "{ws:?}"
    );
    assert!(ws.busy_cycles_per_packet > 0.0);
    let ws = dp.worker_stats(false).unwrap();
    assert_eq!((ws.packets, ws.busy_cycles), (0, 0), "cleared");
    let st = dp.port_stats(Some("a"), false).unwrap();
    assert_eq!(st[0].total.rx_packets, 1000);
    assert_eq!(dp.port_infos().unwrap().len(), 3);
    assert_eq!(dp.bridges().unwrap()[0].ports, vec!["a", "b", "c"]);
    for h in [&a, &b, &c] {
        assert_eq!(h.contract_violations(), 0);
    }
    dp.stop();
    assert!(a.port_dropped() && b.port_dropped() && c.port_dropped());
}

#[test]
fn ports_come_and_go_while_traffic_flows() {
    const N: u64 = 20_000;
    let dp = Dataplane::start(None).unwrap();
    dp.add_bridge(BridgeConfig::new("br0")).unwrap();
    let a = add(&dp, "a", Some("br0"), false);
    let b = add(&dp, "b", Some("br0"), false);
    b.inject(&frame(BROADCAST, mac(2), None, 64));
    wait_until("learn b", || a.tx_packets() == 1);
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || {
            let f = frame(mac(2), mac(1), None, 64);
            for _ in 0..N {
                while a.pending_rx() > 256 {
                    std::thread::yield_now();
                }
                a.inject(&f);
            }
        })
    };
    let mut gone = Vec::new();
    for i in 0..40 {
        let x = add(&dp, &format!("x{i}"), Some("br0"), false);
        let y = add(&dp, &format!("y{i}"), None, false);
        let z = add(&dp, &format!("z{i}"), None, false);
        dp.xconnect(&format!("y{i}"), &format!("z{i}")).unwrap();
        y.inject(&frame(mac(9), mac(8), None, 64));
        wait_until("xconnect traffic", || z.tx_packets() == 1);
        dp.del_port(&format!("x{i}")).unwrap();
        dp.del_port(&format!("z{i}")).unwrap();
        dp.del_port(&format!("y{i}")).unwrap();
        gone.extend([x, y, z]);
    }
    sender.join().unwrap();
    wait_until("all unicast delivered", || b.tx_packets() == N);
    for (k, h) in gone.iter().enumerate() {
        assert!(h.port_dropped());
        // x (bridged, never a destination of known unicast) and y sent nothing; z one frame.
        assert_eq!(h.tx_packets(), u64::from(k % 3 == 2), "port #{k}");
        assert_eq!(h.contract_violations(), 0);
    }
    assert_eq!(a.contract_violations() + b.contract_violations(), 0);
    assert_eq!(
        dp.port_stats(Some("a"), false).unwrap()[0]
            .total
            .drop_no_route,
        0
    );
    assert_eq!(dp.bridges().unwrap()[0].ports, vec!["a", "b"]);
}

#[test]
fn pinning_checks_the_core() {
    let e = Dataplane::start(Some(100_000))
        .err()
        .expect("bogus core must fail");
    assert!(e.to_string().contains("core 100000"), "{e}");
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let core = (0..64)
        .find(|c| allowed.is_set(*c).unwrap_or(false))
        .unwrap();
    let dp = Dataplane::start(Some(core)).unwrap();
    assert_eq!(dp.worker_stats(false).unwrap().core, Some(core));
}

#[test]
fn idle_worker_sleeps() {
    let dp = Dataplane::start(None).unwrap();
    let (p, h) = FakePort::new("down");
    h.set_link(false);
    dp.add_port(Box::new(p), Attach::None).unwrap();
    dp.worker_stats(true).unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let it = dp.worker_stats(false).unwrap().iterations;
    // Bound by the time that really passed (a loaded machine stretches the sleep): a spinning
    // worker would do millions of iterations, a sleeping one at most about one per ms.
    let ms = t0.elapsed().as_millis() as u64;
    assert!(
        it <= ms + ms / 4 + 20,
        "no link up: about one iteration per ms, got {it} in {ms} ms"
    );
    // Lower bounds stay loose: on a loaded machine a 1 ms sleep can take far longer.
    assert!(it >= 2, "still ticking: {it}");
    assert!(h.polls() >= 2, "poll_control keeps running");
}

/// A fake port whose `info` panics (a buggy port type).
struct PanicInfo(FakePort);
impl Port for PanicInfo {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn poll_control(&mut self, now: Instant) {
        self.0.poll_control(now)
    }
    fn link_up(&self) -> bool {
        self.0.link_up()
    }
    fn rx_queues(&self) -> usize {
        self.0.rx_queues()
    }
    fn tx_queues(&self) -> usize {
        self.0.tx_queues()
    }
    fn rx_burst(&mut self, q: usize, out: &mut [crate::port::PktRef]) -> usize {
        self.0.rx_burst(q, out)
    }
    fn rx_release(&mut self, q: usize) {
        self.0.rx_release(q)
    }
    fn tx_burst(
        &mut self,
        q: usize,
        pkts: &[crate::port::PktRef],
        items: &[crate::port::TxItem],
    ) -> usize {
        self.0.tx_burst(q, pkts, items)
    }
    fn stats(&self) -> PortStats {
        self.0.stats()
    }
    fn clear_stats(&mut self) {
        self.0.clear_stats()
    }
    fn info(&self) -> PortInfo {
        panic!("info is broken")
    }
    fn count_no_route(&mut self, q: usize, n: u64) {
        self.0.count_no_route(q, n)
    }
}

#[test]
fn a_panicking_job_does_not_stop_the_worker() {
    let dp = Dataplane::start(None).unwrap();
    let (p, h) = FakePort::new("bad");
    dp.add_port(Box::new(PanicInfo(p)), Attach::None).unwrap();
    let b = add(&dp, "b", None, true);
    dp.xconnect("bad", "b").unwrap();
    assert_eq!(dp.port_infos(), Err(DpError::Stopped));
    h.inject(&frame(BROADCAST, mac(1), None, 64));
    wait_until("traffic after the panic", || b.tx_packets() == 1);
    assert_eq!(dp.port_stats(None, false).unwrap().len(), 2);
}

/// Receives everything pending on `p` queue 0 as byte vectors.
fn memif_recv(p: &mut crate::memif::MemifPort) -> Vec<Vec<u8>> {
    let mut out = vec![crate::port::PktRef::default(); 64];
    let mut got = Vec::new();
    loop {
        let n = p.rx_burst(0, &mut out);
        if n == 0 {
            return got;
        }
        for pkt in &out[..n] {
            let mut v = vec![0u8; pkt.len() as usize];
            let mut o = 0;
            for seg in pkt.segs() {
                o += seg.read(0, &mut v[o..]);
            }
            got.push(v);
        }
        p.rx_release(0);
    }
}

fn memif_send(p: &mut crate::memif::MemifPort, frames: &[Vec<u8>]) -> usize {
    let mut buf = crate::shm::HeapBuf::new(frames.len() * 2048);
    let mut pkts = vec![crate::port::PktRef::default(); frames.len()];
    for (k, f) in frames.iter().enumerate() {
        buf.bytes_mut()[k * 2048..k * 2048 + f.len()].copy_from_slice(f);
        pkts[k].push_seg(buf.seg(k * 2048, f.len()).unwrap());
    }
    let items: Vec<crate::port::TxItem> = (0..frames.len())
        .map(|i| crate::port::TxItem {
            idx: i as u16,
            edit: crate::port::VlanEdit::Keep,
        })
        .collect();
    p.tx_burst(0, &pkts, &items)
}

#[test]
fn memif_ports_through_the_worker() {
    use crate::config::{MemifConfig, MemifMode, MemifRole};
    use crate::memif::MemifPort;
    let dir = tempfile::tempdir().unwrap();
    let cfg = |name: &str, role| MemifConfig {
        socket: dir
            .path()
            .join(format!("{name}.sock"))
            .to_string_lossy()
            .into_owned(),
        role,
        id: 0,
        secret: None,
        queues: 1,
        ring_size: 8,
        max_ring_size: None,
        buffer_size: 2048,
        mode: MemifMode::Ethernet,
    };
    let dp = Dataplane::start(None).unwrap();
    dp.add_bridge(BridgeConfig::new("br0")).unwrap();
    for (name, vlan) in [
        ("a", VlanMode::Access(10)),
        ("t", VlanMode::Trunk(vec![10])),
    ] {
        let port = MemifPort::new(name, &cfg(name, MemifRole::Server)).unwrap();
        let attach = Attach::Bridge {
            bridge: "br0".into(),
            vlan,
        };
        dp.add_port(Box::new(port), attach).unwrap();
    }
    let mut pa = MemifPort::new("pa", &cfg("a", MemifRole::Client)).unwrap();
    let mut pt = MemifPort::new("pt", &cfg("t", MemifRole::Client)).unwrap();
    wait_until("memif links up", || {
        let now = Instant::now();
        pa.poll_control(now);
        pt.poll_control(now);
        pa.link_up() && pt.link_up()
    });
    wait_until("worker sees links up", || {
        dp.port_infos().unwrap().iter().all(|i| i.link_up)
    });
    // t announces mac(2) on VLAN 10; a receives it untagged.
    assert_eq!(
        memif_send(&mut pt, &[frame(BROADCAST, mac(2), Some(10), 68)]),
        1
    );
    let mut got = Vec::new();
    wait_until("broadcast at a", || {
        got.extend(memif_recv(&mut pa));
        !got.is_empty()
    });
    assert_eq!(got, vec![frame(BROADCAST, mac(2), None, 64)]);
    // 2000 unicast frames a -> t in bursts of 32 (ring of 256), tagged on the way out.
    let burst: Vec<Vec<u8>> = (0..32)
        .map(|k| frame(mac(2), mac(1), None, 60 + k))
        .collect();
    let want: Vec<Vec<u8>> = (0..32)
        .map(|k| frame(mac(2), mac(1), Some(10), 64 + k))
        .collect();
    let mut received = Vec::new();
    let mut sent = 0usize;
    // Flow control: at most 256 - 32 frames in flight, so t's ring (256) always has room
    // for a burst even when the worker forwards a full backlog of a's ring at once (on a
    // loaded machine the worker may stall and then catch up); otherwise the switch rightly
    // drops on a full ring and the lossless count below would not hold. A lost frame would
    // stall the flow control: the deadline turns that into the loss report below instead of
    // a hang.
    let t0 = Instant::now();
    while (sent < 2000 || received.len() < sent) && t0.elapsed() < Duration::from_secs(40) {
        if sent < 2000 && sent.saturating_sub(received.len()) <= 256 - 32 {
            sent += memif_send(&mut pa, &burst);
        }
        received.extend(memif_recv(&mut pt));
        pa.poll_control(Instant::now());
        pt.poll_control(Instant::now());
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(
        received.len(),
        sent,
        "frames lost; switch port stats: {:?}",
        dp.port_stats(None, false)
    );
    assert!(sent >= 2000, "only {sent} frames sent in 40 s");
    for (k, f) in received.iter().enumerate() {
        // Lengths are distinct per burst position (a partial send under load keeps order
        // but not position), so a frame's length says which one it must be.
        let pos = f.len().checked_sub(64).filter(|p| *p < 32).expect("length");
        assert_eq!(f, &want[pos], "frame {k}");
    }
    let st = dp.port_stats(Some("a"), false).unwrap();
    assert_eq!(st[0].total.rx_packets as usize, sent);
    let ws = dp.worker_stats(false).unwrap();
    assert!(
        ws.packets as usize > sent && ws.busy_cycles_per_packet > 0.0,
        "{ws:?}"
    );
}

/// Stall accounting: an iteration longer than the limit goes to stall cycles (not busy or
/// idle) with its packets; cycles per packet are computed with and without stalls.
#[test]
fn stalled_iterations_are_kept_out_of_busy_cycles() {
    let limit = StallLimit::new(2_000_000); // 2 GHz: base 100k cycles, 2000 per packet
    let mut w = Worker::new(None);
    w.account(3_200, 32, &limit); // 100 cycles/packet
    w.account(500, 0, &limit); // idle poll
    w.account(100_000 + 32 * 2_000, 32, &limit); // exactly at the limit: still busy
    w.account(5_000_000, 32, &limit); // preempted for 2.5 ms while moving 32
    w.account(400_000, 0, &limit); // preempted while idle
    let s = w.stats(true);
    assert_eq!((s.iterations, s.packets, s.stalls), (5, 96, 2));
    assert_eq!(
        s.busy_iterations, 2,
        "two unstalled iterations moved packets"
    );
    assert!((s.packets_per_busy_iteration - 32.0).abs() < 1e-9);
    assert_eq!(s.busy_cycles, 3_200 + 164_000);
    assert_eq!(
        (s.idle_cycles, s.stall_cycles, s.stall_packets),
        (500, 5_400_000, 32)
    );
    assert!((s.busy_cycles_per_packet - 167_200.0 / 64.0).abs() < 1e-9);
    assert!((s.busy_cycles_per_packet_with_stalls - 5_167_200.0 / 96.0).abs() < 1e-9);
    let s = w.stats(false);
    assert_eq!((s.stalls, s.stall_cycles, s.packets), (0, 0, 0), "cleared");
    assert_eq!((s.busy_iterations, s.packets_per_busy_iteration), (0, 0.0));
    assert_eq!(s.busy_cycles_per_packet, 0.0);
}
