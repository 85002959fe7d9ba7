//! Switch-level scenarios with fake ports, driven synchronously (time injected through
//! `control_tick`): learning, flooding, aging, table full, the VLAN matrix on real bytes,
//! xconnect, link changes, port removal, control errors.
use super::Switch;
use crate::config::{BridgeConfig, VlanMode};
use crate::dataplane::{Attach, DpError};
use crate::fakeport::{frame, mac, FakeHandle, FakePort, BROADCAST};
use std::time::Instant;

struct Rig {
    sw: Switch,
    ports: Vec<(String, FakeHandle)>,
    now_ms: u64,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            sw: Switch::new(),
            ports: Vec::new(),
            now_ms: 0,
        }
    }
    fn bridge(&mut self, name: &str, aging: u32, max: u32) {
        let mut c = BridgeConfig::new(name);
        c.aging_secs = aging;
        c.fdb_max = max;
        self.sw.add_bridge(c).unwrap();
    }
    fn port(&mut self, name: &str, attach: Attach) -> FakeHandle {
        let (p, h) = FakePort::new(name);
        self.sw.add_port(Box::new(p), attach).unwrap();
        self.ports.push((name.to_string(), h.clone()));
        h
    }
    fn on(&mut self, name: &str, br: &str, vlan: VlanMode) -> FakeHandle {
        self.port(
            name,
            Attach::Bridge {
                bridge: br.into(),
                vlan,
            },
        )
    }
    fn tick(&mut self, advance_ms: u64) {
        self.now_ms += advance_ms;
        self.sw.control_tick(Instant::now(), self.now_ms);
    }
    /// Polls until nothing is pending.
    fn run(&mut self) {
        for _ in 0..64 {
            if self.ports.iter().all(|(_, h)| h.pending_rx() == 0) {
                break;
            }
            self.sw.poll();
        }
        self.sw.poll();
    }
    /// Frames each port sent since the last call, by port name (ports that sent none omitted).
    fn sent(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        self.ports
            .iter()
            .map(|(n, h)| (n.clone(), h.take_tx()))
            .filter(|(_, t)| !t.is_empty())
            .collect()
    }
    fn names_sent(&self) -> Vec<String> {
        self.sent().into_iter().map(|(n, _)| n).collect()
    }
    fn no_route(&mut self, port: &str) -> u64 {
        self.sw.port_stats(Some(port), false).unwrap()[0]
            .total
            .drop_no_route
    }
    fn violations(&self) -> u64 {
        self.ports
            .iter()
            .map(|(_, h)| h.contract_violations())
            .sum()
    }
}

#[test]
fn learning_then_unicast() {
    let mut r = Rig::new();
    r.bridge("br0", 300, 100);
    let a = r.on("a", "br0", VlanMode::None);
    let b = r.on("b", "br0", VlanMode::None);
    let _c = r.on("c", "br0", VlanMode::None);
    r.tick(1);
    let f1 = frame(mac(2), mac(1), None, 64);
    a.inject(&f1);
    r.run();
    let s = r.sent();
    assert_eq!(s.len(), 2, "unknown unicast floods to b and c");
    assert!(s.iter().all(|(_, t)| t == &vec![f1.clone()]));
    b.inject(&frame(mac(1), mac(2), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["a"]);
    for _ in 0..10 {
        a.inject(&f1);
    }
    r.run();
    let s = r.sent();
    assert_eq!(
        (s.len(), s[0].0.as_str(), s[0].1.len()),
        (1, "b", 10),
        "flooding stopped"
    );
    let fdb = r.sw.fdb("br0").unwrap();
    assert_eq!(fdb.len(), 2);
    assert_eq!(
        (fdb[0].mac.as_str(), fdb[0].port.as_str()),
        ("02:00:00:00:00:01", "a")
    );
    // Move: mac(1) now appears on c.
    r.ports[2].1.inject(&frame(BROADCAST, mac(1), None, 64));
    r.run();
    r.sent();
    b.inject(&frame(mac(1), mac(2), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["c"]);
    assert_eq!(r.violations(), 0);
}

#[test]
fn aging_with_injected_time() {
    let mut r = Rig::new();
    r.bridge("br0", 2, 100);
    let a = r.on("a", "br0", VlanMode::None);
    let b = r.on("b", "br0", VlanMode::None);
    r.on("c", "br0", VlanMode::None);
    r.tick(1);
    a.inject(&frame(BROADCAST, mac(1), None, 64));
    r.run();
    r.sent();
    r.tick(1_500);
    b.inject(&frame(mac(1), mac(2), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["a"], "still known after 1.5 s");
    r.tick(600);
    assert_eq!(
        r.sw.fdb("br0").unwrap().len(),
        1,
        "mac(1) aged out, mac(2) alive"
    );
    b.inject(&frame(mac(1), mac(2), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["a", "c"], "aged out: floods again");
    // Sweeping reclaims the slots over a few ticks.
    for _ in 0..100 {
        r.tick(100);
    }
    assert_eq!(r.sw.bridges()[0].fdb_entries, 0);
}

#[test]
fn full_table_is_counted() {
    let mut r = Rig::new();
    r.bridge("br0", 300, 3);
    let a = r.on("a", "br0", VlanMode::None);
    r.on("b", "br0", VlanMode::None);
    for i in 1..=5 {
        a.inject(&frame(BROADCAST, mac(i), None, 64));
    }
    r.run();
    let br = &r.sw.bridges()[0];
    assert_eq!((br.fdb_entries, br.fdb_full_drops), (3, 2));
    assert_eq!(br.ports, vec!["a", "b"]);
    assert_eq!(r.sent()[0].1.len(), 5, "refused learning still forwards");
}

#[test]
fn vlan_matrix_on_the_wire() {
    let mut r = Rig::new();
    r.bridge("br0", 300, 100);
    let a10 = r.on("a10", "br0", VlanMode::Access(10));
    r.on("b10", "br0", VlanMode::Access(10));
    let c20 = r.on("c20", "br0", VlanMode::Access(20));
    let t = r.on("t", "br0", VlanMode::Trunk(vec![10, 20]));
    r.on("t20", "br0", VlanMode::Trunk(vec![20]));
    r.tick(1);

    let untagged = frame(BROADCAST, mac(1), None, 64);
    a10.inject(&untagged);
    r.run();
    let s = r.sent();
    assert_eq!(
        s.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        vec!["b10", "t"]
    );
    assert_eq!(s[0].1[0], untagged, "access → access: untouched");
    assert_eq!(
        s[1].1[0],
        frame(BROADCAST, mac(1), Some(10), 68),
        "access → trunk: pushed"
    );

    // Trunk → access pops; trunk → trunk keeps the tag (and its priority bits).
    let tagged = frame(BROADCAST, mac(2), Some(0x6000 | 20), 68);
    t.inject(&tagged);
    r.run();
    let s = r.sent();
    assert_eq!(
        s.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        vec!["c20", "t20"]
    );
    assert_eq!(s[0].1[0], frame(BROADCAST, mac(2), None, 64));
    assert_eq!(s[1].1[0], tagged);

    // Unicast replies across the VLAN boundary.
    c20.inject(&frame(mac(2), mac(3), None, 64));
    r.run();
    assert_eq!(
        r.sent(),
        vec![("t".to_string(), vec![frame(mac(2), mac(3), Some(20), 68)])]
    );

    // Dropped at ingress: tagged on access, untagged on trunk, VLAN not in the trunk list.
    a10.inject(&frame(BROADCAST, mac(1), Some(10), 68));
    t.inject(&frame(BROADCAST, mac(2), None, 64));
    t.inject(&frame(BROADCAST, mac(2), Some(30), 68));
    r.run();
    assert!(r.sent().is_empty());
    assert_eq!((r.no_route("a10"), r.no_route("t")), (1, 2));
    assert_eq!(r.violations(), 0);
}

#[test]
fn xconnect_passes_everything_unchanged() {
    let mut r = Rig::new();
    let a = r.port("a", Attach::None);
    let b = r.port("b", Attach::None);
    a.inject(&frame(BROADCAST, mac(1), None, 64));
    r.run();
    assert!(r.sent().is_empty());
    assert_eq!(r.no_route("a"), 1, "unattached port drops and counts");
    r.sw.xconnect("a", "b").unwrap();
    let tagged = frame(mac(2), mac(1), Some(7), 1500);
    for _ in 0..40 {
        a.inject(&tagged);
    }
    b.inject(&frame(mac(1), mac(2), None, 60));
    r.run();
    let s = r.sent();
    assert_eq!(s[0].0, "a");
    assert_eq!(s[1], ("b".to_string(), vec![tagged.clone(); 40]));
    assert_eq!(r.sw.xconnects(), vec![("a".to_string(), "b".to_string())]);
    let st = r.sw.port_stats(None, true).unwrap();
    assert_eq!((st[0].total.rx_packets, st[1].total.tx_packets), (41, 40));
    assert_eq!(
        r.sw.port_stats(Some("a"), false).unwrap()[0]
            .total
            .rx_packets,
        0,
        "cleared"
    );
    r.sw.del_xconnect("b").unwrap();
    a.inject(&tagged);
    r.run();
    assert!(r.sent().is_empty());
    assert_eq!(r.violations(), 0);
}

#[test]
fn link_down_flushes_and_skips() {
    let mut r = Rig::new();
    r.bridge("br0", 300, 100);
    let a = r.on("a", "br0", VlanMode::None);
    let b = r.on("b", "br0", VlanMode::None);
    r.on("c", "br0", VlanMode::None);
    r.tick(1);
    b.inject(&frame(BROADCAST, mac(2), None, 64));
    r.run();
    r.sent();
    b.set_link(false);
    r.tick(1);
    assert!(r.sw.fdb("br0").unwrap().is_empty(), "b's MACs flushed");
    a.inject(&frame(mac(2), mac(1), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["c"], "flood skips the down port");
    b.set_link(true);
    r.tick(1);
    a.inject(&frame(mac(2), mac(1), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["b", "c"]);
}

#[test]
fn remove_ports_keeps_the_rest_working() {
    let mut r = Rig::new();
    r.bridge("br0", 300, 100);
    let a = r.on("a", "br0", VlanMode::None);
    let b = r.on("b", "br0", VlanMode::None);
    let c = r.on("c", "br0", VlanMode::None);
    r.tick(1);
    for (h, m) in [(&a, 1), (&b, 2), (&c, 3)] {
        h.inject(&frame(BROADCAST, mac(m), None, 64));
    }
    r.run();
    r.sent();
    // Removing a (member 0) moves c into its member index: c must still be reachable.
    r.sw.del_port("a").unwrap();
    assert!(a.port_dropped());
    r.ports.remove(0);
    b.inject(&frame(mac(3), mac(2), None, 64));
    b.inject(&frame(mac(1), mac(2), None, 64));
    r.run();
    let s = r.sent();
    assert_eq!(
        s,
        vec![(
            "c".into(),
            vec![
                frame(mac(3), mac(2), None, 64),
                frame(mac(1), mac(2), None, 64)
            ]
        )]
    );
    let fdb = r.sw.fdb("br0").unwrap();
    assert_eq!(
        fdb.iter().map(|e| e.port.as_str()).collect::<Vec<_>>(),
        vec!["b", "c"]
    );
    // The freed slot is reused by a new port, which starts with no MACs.
    let d = r.on("d", "br0", VlanMode::None);
    r.tick(1);
    d.inject(&frame(mac(2), mac(4), None, 64));
    r.run();
    assert_eq!(r.names_sent(), vec!["b"]);
    assert_eq!(r.sw.bridges()[0].ports, vec!["b", "c", "d"]);
    assert_eq!(r.violations(), 0);
}

#[test]
fn control_errors() {
    let mut r = Rig::new();
    r.bridge("br0", 300, 100);
    assert_eq!(
        r.sw.add_bridge(BridgeConfig::new("br0")),
        Err(DpError::AlreadyExists("bridge br0".into()))
    );
    r.on("a", "br0", VlanMode::None);
    r.port("x", Attach::None);
    r.port("y", Attach::None);
    let (dup, _) = FakePort::new("a");
    assert_eq!(
        r.sw.add_port(Box::new(dup), Attach::None),
        Err(DpError::AlreadyExists("port a".into()))
    );
    let (p, h) = FakePort::new("z");
    let e = r.sw.add_port(
        Box::new(p),
        Attach::Bridge {
            bridge: "nope".into(),
            vlan: VlanMode::None,
        },
    );
    assert_eq!(e, Err(DpError::NotFound("bridge nope".into())));
    assert!(h.port_dropped(), "a refused port is dropped");
    assert!(
        matches!(r.sw.del_bridge("br0"), Err(DpError::Busy(m)) if m.contains("still has ports: a"))
    );
    assert!(
        matches!(r.sw.xconnect("a", "x"), Err(DpError::Busy(m)) if m.contains("on bridge br0"))
    );
    assert!(matches!(r.sw.xconnect("x", "x"), Err(DpError::Busy(_))));
    assert_eq!(
        r.sw.xconnect("x", "q"),
        Err(DpError::NotFound("port q".into()))
    );
    r.sw.xconnect("x", "y").unwrap();
    assert!(matches!(r.sw.xconnect("y", "x"), Err(DpError::Busy(m)) if m.contains("already")));
    assert_eq!(
        r.sw.del_xconnect("a"),
        Err(DpError::NotFound("xconnect of port a".into()))
    );
    assert_eq!(
        r.sw.port_stats(Some("q"), false),
        Err(DpError::NotFound("port q".into()))
    );
    assert_eq!(r.sw.fdb("q"), Err(DpError::NotFound("bridge q".into())));
    assert_eq!(r.sw.del_port("q"), Err(DpError::NotFound("port q".into())));
    // Deleting an xconnected port frees its peer; deleting the last member frees the bridge.
    r.sw.del_port("x").unwrap();
    assert!(r.sw.xconnects().is_empty());
    r.sw.del_port("a").unwrap();
    r.sw.del_bridge("br0").unwrap();
    assert!(r.sw.bridges().is_empty());
    assert_eq!(r.sw.port_infos().len(), 1);
}

/// A port that watches one pipe: `poll_control` must run only when the pipe is readable (or the
/// port asks for every tick).
struct PipePort {
    rx: std::os::fd::OwnedFd,
    always: std::sync::Arc<std::sync::atomic::AtomicBool>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::port::Port for PipePort {
    fn name(&self) -> &str {
        "pipe"
    }
    fn control_interest<'a>(&'a self, fds: &mut Vec<std::os::fd::BorrowedFd<'a>>) -> bool {
        use std::os::fd::AsFd;
        fds.push(self.rx.as_fd());
        self.always.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn poll_control(&mut self, _now: Instant) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut b = [0u8; 16];
        let _ = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&self.rx), &mut b);
    }
    fn link_up(&self) -> bool {
        false
    }
    fn rx_queues(&self) -> usize {
        0
    }
    fn tx_queues(&self) -> usize {
        0
    }
    fn rx_burst(&mut self, _q: usize, _out: &mut [crate::port::PktRef]) -> usize {
        0
    }
    fn rx_release(&mut self, _q: usize) {}
    fn tx_burst(
        &mut self,
        _q: usize,
        _pkts: &[crate::port::PktRef],
        _items: &[crate::port::TxItem],
    ) -> usize {
        0
    }
    fn stats(&self) -> crate::port::PortStats {
        crate::port::PortStats::default()
    }
    fn clear_stats(&mut self) {}
    fn info(&self) -> crate::port::PortInfo {
        crate::port::PortInfo::default()
    }
    fn count_no_route(&mut self, _q: usize, _n: u64) {}
}

#[test]
fn poll_control_only_when_interested() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let always = Arc::new(AtomicBool::new(false));
    let mut r = Rig::new();
    let fake = r.port("fake", Attach::None); // default interest: every tick
    r.sw.add_port(
        Box::new(PipePort {
            rx,
            always: always.clone(),
            calls: calls.clone(),
        }),
        Attach::None,
    )
    .unwrap();
    let tick = |r: &mut Rig| {
        r.now_ms += 1;
        r.sw.control_tick(Instant::now(), r.now_ms);
    };
    tick(&mut r); // the first tick after add always polls
    let c0 = calls.load(Ordering::Relaxed);
    for _ in 0..5 {
        tick(&mut r);
    }
    assert_eq!(
        calls.load(Ordering::Relaxed),
        c0,
        "nothing readable: not polled"
    );
    nix::unistd::write(&tx, b"x").unwrap();
    tick(&mut r);
    assert_eq!(calls.load(Ordering::Relaxed), c0 + 1, "readable: polled");
    tick(&mut r);
    assert_eq!(calls.load(Ordering::Relaxed), c0 + 1, "drained: not again");
    always.store(true, Ordering::Relaxed);
    tick(&mut r);
    tick(&mut r);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        c0 + 3,
        "asked for every tick"
    );
    // The write end closed: hang-up makes the fd ready.
    always.store(false, Ordering::Relaxed);
    drop(tx);
    tick(&mut r);
    assert_eq!(calls.load(Ordering::Relaxed), c0 + 4, "hang-up: polled");
    assert!(fake.polls() >= 10, "default interest polls every tick");
}
