//! Kernel ports on a real veth pair (needs root, like the e2e tests): two ports, one on each
//! end, exchange frames through the kernel; VLAN tags survive; oversize frames are refused;
//! the port follows the interface being deleted and re-created; errors for a missing
//! interface are clear.
use super::*;
use crate::config::KernelConfig;
use crate::port::{PktRef, Port};
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {} (these tests need root)",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A veth pair `<tag>a`/`<tag>b`, both up, deleted on drop.
struct Veth(String);

impl Veth {
    fn new(tag: &str) -> Veth {
        let a = format!("{tag}a");
        let b = format!("{tag}b");
        let _ = Command::new("ip").args(["link", "del", &a]).output();
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        for n in [&a, &b] {
            // No IPv6 autoconf chatter: the tests count frames exactly.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{n}/disable_ipv6"), "1");
            ip(&["link", "set", n, "up"]);
        }
        Veth(tag.to_string())
    }
    fn a(&self) -> String {
        format!("{}a", self.0)
    }
    fn b(&self) -> String {
        format!("{}b", self.0)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a()]).output();
    }
}

fn cfg(iface: &str) -> KernelConfig {
    KernelConfig {
        iface: iface.into(),
        frame_size: 2048,
        qdisc_bypass: true,
    }
}

fn wait_link(p: &mut KernelPort, up: bool) {
    let t0 = Instant::now();
    while p.link_up() != up {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}: link never became {up}",
            p.name()
        );
        std::thread::sleep(Duration::from_millis(20));
        p.poll_control(Instant::now());
    }
}

fn eth(dst: [u8; 6], ethertype: [u8; 2], len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![tag; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x77, tag]);
    f[12..14].copy_from_slice(&ethertype);
    f
}

fn send(p: &mut KernelPort, frames: &[Vec<u8>]) -> usize {
    crate::port::test_util::send(p, 0, frames)
}

/// Receives until `n` frames whose source MAC ends in 0x77 came in (other traffic is skipped).
fn recv(p: &mut KernelPort, n: usize) -> Vec<Vec<u8>> {
    recv_for(p, n, Duration::from_secs(5))
}

fn recv_for(p: &mut KernelPort, n: usize, limit: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut out = [PktRef::default(); 32];
    let t0 = Instant::now();
    while got.len() < n && t0.elapsed() < limit {
        let k = p.rx_burst(0, &mut out);
        for r in &out[..k] {
            let mut v = vec![0u8; r.len() as usize];
            r.read_head(&mut v);
            if v.len() >= 12 && v[10] == 0x77 {
                got.push(v);
            }
        }
        if k > 0 {
            p.rx_release(0);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

#[test]
fn frames_cross_a_veth_pair_with_tags_and_limits() {
    let v = Veth::new(&format!("uskv{}", std::process::id() % 10000));
    let mut a = KernelPort::new("a", &cfg(&v.a())).unwrap();
    let mut b = KernelPort::new("b", &cfg(&v.b())).unwrap();
    wait_link(&mut a, true);
    wait_link(&mut b, true);
    let unicast = [2, 0, 0, 0, 0, 0x99]; // not b's MAC: needs promiscuous mode
    let plain = eth(unicast, [0x08, 0x00], 60, 1);
    let mut tagged = eth(unicast, [0x81, 0x00], 64, 2);
    tagged[14..18].copy_from_slice(&[0x00, 0x0a, 0x08, 0x00]);
    let max = eth(unicast, [0x08, 0x00], 1514, 3);
    let too_big = eth(unicast, [0x08, 0x00], 1515, 4);
    let sent = send(
        &mut a,
        &[plain.clone(), tagged.clone(), max.clone(), too_big],
    );
    assert_eq!(sent, 3);
    let got = recv(&mut b, 3);
    assert_eq!(got, vec![plain.clone(), tagged, max]);
    let sa = a.stats();
    assert_eq!((sa.total.tx_packets, sa.total.drop_no_buffer), (3, 1));
    // Our own transmissions never come back on a (PACKET_IGNORE_OUTGOING).
    assert!(recv_for(&mut a, 1, Duration::from_millis(300)).is_empty());
    // The other way.
    assert_eq!(send(&mut b, std::slice::from_ref(&plain)), 1);
    assert_eq!(recv(&mut a, 1), vec![plain]);
    assert!(b.stats().total.rx_packets >= 3);
    let info = a.info();
    assert_eq!(info.kind, "kernel");
    assert_eq!(info.details["state"], "up");
    assert_eq!(info.details["mtu"], 1500);
}

#[test]
fn port_follows_the_interface_going_away_and_coming_back() {
    let tag = format!("uskw{}", std::process::id() % 10000);
    let v = Veth::new(&tag);
    let mut a = KernelPort::new("a", &cfg(&v.a())).unwrap();
    wait_link(&mut a, true);
    ip(&["link", "set", &v.b(), "down"]);
    wait_link(&mut a, false);
    assert_eq!(a.info().details["state"], "no-carrier");
    ip(&["link", "set", &v.b(), "up"]);
    wait_link(&mut a, true);
    drop(v);
    wait_link(&mut a, false);
    assert_eq!(a.info().details["state"], "no-interface");
    assert!(a
        .stats()
        .last_disconnect_reason
        .unwrap()
        .contains("disappeared"));
    let v = Veth::new(&tag);
    wait_link(&mut a, true);
    let s = a.stats();
    assert_eq!((s.connects, s.disconnects), (3, 2));
    // The reopened socket works.
    let mut b = KernelPort::new("b", &cfg(&v.b())).unwrap();
    wait_link(&mut b, true);
    let f = eth([0xff; 6], [0x08, 0x00], 60, 5);
    assert_eq!(send(&mut b, std::slice::from_ref(&f)), 1);
    assert_eq!(recv(&mut a, 1), vec![f]);
}

#[test]
fn clear_errors_for_bad_interfaces() {
    let e = KernelPort::new("x", &cfg("uskt-none0")).err().unwrap();
    assert_eq!(e.to_string(), "interface uskt-none0 does not exist");
    let e = KernelPort::new("x", &cfg("lo")).err().unwrap();
    assert!(e.to_string().contains("not an Ethernet interface"), "{e}");
}
