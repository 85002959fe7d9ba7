//! Kernel (AF_PACKET) uplink ports end to end: a veth pair with one end in a network namespace
//! (10.77.0.1/24) and the other end as a uswitch kernel port, bridged to a memif port whose
//! peer is `dpdk-testpmd --forward-mode=icmpecho` (it answers ARP and ping for any address).
//! `ping` from the namespace works; the counters of the namespace's veth, the kernel port, the
//! memif port and testpmd agree. Also: a VLAN access kernel port bridged to a trunk memif
//! port (tag pushed/popped by the bridge; the kernel-stripped tag being put back on rx is
//! tested on a veth pair in `engine/src/kernel/veth_tests.rs`), the interface deleted and
//! re-created under the port, clear errors that change nothing, and no fd or mapping left
//! after `port del`.
use std::process::{Command, Output};
use std::time::Duration;
use uswitch_e2e::scenario::{mac_of, Switch};
use uswitch_e2e::{e2e_lock, fd_count, NetNs, Testpmd, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A veth pair: `host` stays in the root namespace (the kernel port's interface), `peer` goes
/// into `ns` with `addr` (optionally on a VLAN subinterface, where the kernel has 8021q).
/// Deleted on drop.
struct Veth {
    host: String,
}

impl Veth {
    fn new(host: &str, ns: &NetNs, addr: &str, vlan: Option<u16>) -> Veth {
        let peer = format!("{host}p");
        let _ = run("ip", &["link", "del", host]);
        ok(
            "ip",
            &["link", "add", host, "type", "veth", "peer", "name", &peer],
        );
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1");
        ok("ip", &["link", "set", &peer, "netns", ns.name()]);
        let nsx = |args: &[&str]| {
            let o = ns.exec(args);
            assert!(
                o.status.success(),
                "in {}: {}: {}",
                ns.name(),
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        nsx(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        nsx(&["ip", "link", "set", "lo", "up"]);
        nsx(&["ip", "link", "set", &peer, "up"]);
        match vlan {
            None => nsx(&["ip", "addr", "add", addr, "dev", &peer]),
            Some(v) => {
                let sub = format!("{peer}.{v}");
                let id = v.to_string();
                nsx(&[
                    "ip", "link", "add", "link", &peer, "name", &sub, "type", "vlan", "id", &id,
                ]);
                nsx(&["ip", "link", "set", &sub, "up"]);
                nsx(&["ip", "addr", "add", addr, "dev", &sub]);
            }
        }
        ok("ip", &["link", "set", host, "up"]);
        Veth {
            host: host.to_string(),
        }
    }
    fn peer(&self) -> String {
        format!("{}p", self.host)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host]);
    }
}

/// `ping -c N` from `ns`; returns (transmitted, received) from its summary line.
fn ping(ns: &NetNs, dst: &str, n: u32) -> (u64, u64) {
    let c = n.to_string();
    let o = ns.exec(&["ping", "-c", &c, "-i", "0.05", "-W", "2", "-q", dst]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| {
            panic!(
                "no ping summary: {out} {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    let num = |word: &str| -> u64 {
        let w: Vec<&str> = line.split([',', ' ']).collect();
        let i = w.iter().position(|x| *x == word).expect(word);
        w[i - 1].parse().unwrap()
    };
    (num("packets"), num("received"))
}

/// rx/tx packets of `dev` inside `ns` (from sysfs, read in the namespace).
fn ns_counters(ns: &NetNs, dev: &str) -> (u64, u64) {
    let read = |what: &str| -> u64 {
        let p = format!("/sys/class/net/{dev}/statistics/{what}");
        let o = ns.exec(&["cat", &p]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    (read("rx_packets"), read("tx_packets"))
}

fn echo_peer(tag: &str, s: &Switch, port: &str) -> Testpmd {
    let mut t = TestpmdBuilder::new(tag)
        .memif_client(&s.sock_str(port), &mac_of(0))
        .forward_mode("icmpecho")
        .start()
        .unwrap();
    t.wait_link_up(LINK).unwrap();
    s.sw.wait_link(port, true, LINK).unwrap();
    t.start_fwd().unwrap();
    t
}

/// Mappings of packet-socket rings in the process (`/proc/PID/maps` lines naming a socket).
fn ring_maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|s| s.lines().filter(|l| l.contains("socket:")).count())
        .unwrap_or(0)
}

fn iface(tag: &str) -> String {
    // 15 characters at most, unique per test process.
    format!("usk{tag}{}", std::process::id() % 100000)
}

#[test]
fn ping_through_a_kernel_port_counts_agree() {
    let _l = e2e_lock();
    let ns = NetNs::new("kern").unwrap();
    let veth = Veth::new(&iface("a"), &ns, "10.77.0.1/24", None);
    let s = Switch::with_bridge("kern");
    s.add_port("p0", "server", &[]);
    s.sw.ctl_ok(&[
        "port", "add", "up0", "kernel", "--iface", &veth.host, "--bridge", "br0",
    ]);
    s.sw.wait_link("up0", true, LINK).unwrap();
    let mut pmd = echo_peer("kern-echo", &s, "p0");
    let list = s.sw.ctl_ok(&["port", "list"]);
    assert!(list.contains(&format!("iface {}", veth.host)), "{list}");

    // Errors are clear and change nothing.
    let before = s.sw.ctl_ok(&["port", "list"]);
    let e = s.sw.ctl(&[
        "port",
        "add",
        "up1",
        "kernel",
        "--iface",
        "uskt-nope0",
        "--bridge",
        "br0",
    ]);
    assert_eq!(e.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("interface uskt-nope0 does not exist"), "{msg}");
    let e =
        s.sw.ctl(&["port", "add", "up1", "kernel", "--iface", &veth.host]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("already used by kernel port up0"), "{msg}");
    assert_eq!(s.sw.ctl_ok(&["port", "list"]), before);

    s.sw.ctl_ok(&["stats", "--clear"]);
    pmd.clear_stats().unwrap();
    let (ns_rx0, ns_tx0) = ns_counters(&ns, &veth.peer());
    let (sent, got) = ping(&ns, "10.77.0.2", 20);
    assert_eq!((sent, got), (20, 20), "ping through the kernel port");
    // Let the last replies settle, then compare every counter on the path.
    std::thread::sleep(Duration::from_millis(300));
    let (ns_rx, ns_tx) = ns_counters(&ns, &veth.peer());
    let (ns_rx, ns_tx) = (ns_rx - ns_rx0, ns_tx - ns_tx0);
    let up = s.sw.stats("up0");
    let p0 = s.sw.stats("p0");
    let t = pmd.stats(0).unwrap();
    let info = format!("ns rx {ns_rx} tx {ns_tx}\nup0 {up:?}\np0 {p0:?}\ntestpmd {t:?}");
    // The namespace sent the pings plus ARP; everything it sent reached testpmd, and back.
    assert!((20..=24).contains(&ns_tx), "{info}");
    assert_eq!(up.total.rx_packets, ns_tx, "{info}");
    assert_eq!(p0.total.tx_packets, up.total.rx_packets, "{info}");
    assert_eq!(t.rx_packets, p0.total.tx_packets, "{info}");
    assert_eq!(t.tx_packets, p0.total.rx_packets, "{info}");
    assert_eq!(up.total.tx_packets, p0.total.rx_packets, "{info}");
    assert_eq!(ns_rx, up.total.tx_packets, "{info}");
    let q = &up.total;
    assert_eq!(
        (q.drop_no_buffer, q.drop_ring_full, q.drop_bad_desc),
        (0, 0, 0),
        "{info}"
    );

    // The interface disappears: link down, the daemon keeps running; it comes back: link up.
    let host = veth.host.clone();
    drop(veth);
    s.sw.wait_link("up0", false, LINK).unwrap();
    let st = s.sw.stats("up0");
    assert!(
        st.last_disconnect_reason
            .as_deref()
            .unwrap_or("")
            .contains("disappeared"),
        "{st:?}"
    );
    s.sw.ctl_ok(&["show"]);
    let veth = Veth::new(&host, &ns, "10.77.0.1/24", None);
    s.sw.wait_link("up0", true, LINK).unwrap();
    let (sent, got) = ping(&ns, "10.77.0.2", 5);
    assert_eq!((sent, got), (5, 5), "ping after the interface came back");
    drop(veth);
    drop(pmd);
}

#[test]
fn vlan_access_kernel_port_and_no_leak_on_delete() {
    let _l = e2e_lock();
    let ns = NetNs::new("kvlan").unwrap();
    let veth = Veth::new(&iface("v"), &ns, "10.78.0.1/24", None);
    let s = Switch::with_bridge("kvlan");
    s.add_port("p0", "server", &["--trunk", "10"]);
    let pid = s.sw.pid();
    let fds0 = fd_count(pid);
    s.sw.ctl_ok(&[
        "port", "add", "up0", "kernel", "--iface", &veth.host, "--bridge", "br0", "--vlan", "10",
    ]);
    s.sw.wait_link("up0", true, LINK).unwrap();
    assert!(fd_count(pid) > fds0);
    assert_eq!(
        ring_maps(pid),
        1,
        "the rings are one mapping of the packet socket"
    );
    let mut pmd = echo_peer("kvlan-echo", &s, "p0");
    s.sw.ctl_ok(&["stats", "--clear"]);
    // Untagged frames from the namespace leave the trunk memif port tagged 10 (testpmd's
    // icmpecho answers inside the tag) and come back untagged.
    let (sent, got) = ping(&ns, "10.78.0.2", 10);
    assert_eq!(
        (sent, got),
        (10, 10),
        "ping through the access kernel port, VLAN 10 trunk"
    );
    let p0 = s.sw.stats("p0");
    assert_eq!(p0.total.drop_no_route, 0, "{p0:?}");
    let up = s.sw.stats("up0");
    assert_eq!(up.total.drop_no_route, 0, "{up:?}");
    assert!(
        up.total.rx_packets >= 10 && up.total.tx_packets >= 10,
        "{up:?}"
    );
    pmd.stop_fwd().unwrap();
    drop(pmd);
    s.sw.wait_link("p0", false, LINK).unwrap();
    // port del closes the AF_PACKET socket and the ioctl socket and unmaps the rings.
    let fds1 = fd_count(pid);
    s.sw.ctl_ok(&["port", "del", "up0"]);
    let settled = uswitch_e2e::wait_until(Duration::from_secs(5), || {
        fd_count(pid) <= fds0 && fd_count(pid) + 2 <= fds1 && ring_maps(pid) == 0
    });
    assert!(
        settled,
        "fds {} (before add {fds0}, before del {fds1}), ring mappings {}",
        fd_count(pid),
        ring_maps(pid)
    );
    // The interface is free again.
    s.sw.ctl_ok(&["port", "add", "up0", "kernel", "--iface", &veth.host]);
    s.sw.wait_link("up0", true, LINK).unwrap();
}

/// A kernel port in the state file whose interface is missing when uswitchd restarts is
/// restored down (`no-interface`, not in "Not restored at startup") and comes up by itself
/// once the interface appears; ping works through it again.
#[test]
fn kernel_port_restored_before_its_interface_exists() {
    let _l = e2e_lock();
    let ns = NetNs::new("krest").unwrap();
    let host = iface("r");
    let veth = Veth::new(&host, &ns, "10.79.0.1/24", None);
    let mut s = Switch::with_bridge("krest");
    s.add_port("p0", "server", &[]);
    s.sw.ctl_ok(&[
        "port", "add", "up0", "kernel", "--iface", &host, "--bridge", "br0",
    ]);
    s.sw.wait_link("up0", true, LINK).unwrap();
    let mut pmd = echo_peer("krest-echo", &s, "p0");
    assert_eq!(ping(&ns, "10.79.0.2", 3), (3, 3), "ping before the restart");

    // Crash, and the interface is gone while the daemon is down (e.g. a reboot where the NIC
    // driver loads later).
    s.sw.kill9();
    drop(veth);
    s.sw.restart().unwrap();
    let show = s.sw.ctl_json(&["show"]);
    let failed = show["restore_errors"].as_array().map_or(0, |a| a.len());
    assert_eq!(failed, 0, "nothing fails to restore: {show}");
    let list = s.sw.ctl_json(&["port", "list"]);
    let up0 = list
        .as_array()
        .and_then(|a| a.iter().find(|p| p["config"]["name"] == "up0"))
        .unwrap_or_else(|| panic!("up0 restored: {list}"))
        .clone();
    assert_eq!(up0["info"]["details"]["state"], "no-interface", "{up0}");
    let st = s.sw.stats("up0");
    assert!(!st.link_up, "{st:?}");
    assert!(
        st.last_disconnect_reason
            .as_deref()
            .unwrap_or("")
            .contains("not present at startup"),
        "{st:?}"
    );

    // The interface appears: the port opens itself. testpmd (a DPDK memif client does not
    // redial by itself) is restarted on its port.
    let veth = Veth::new(&host, &ns, "10.79.0.1/24", None);
    s.sw.wait_link("up0", true, LINK).unwrap();
    pmd.restart_port(0).unwrap();
    pmd.wait_link_up(LINK).unwrap();
    s.sw.wait_link("p0", true, LINK).unwrap();
    pmd.start_fwd().unwrap();
    assert_eq!(
        ping(&ns, "10.79.0.2", 5),
        (5, 5),
        "ping after the interface appeared"
    );
    drop(veth);
    drop(pmd);
}
