//! uswitch vhost-user ports with a real QEMU guest (Linux virtio-net driver, interrupt-driven)
//! in one bridge with a tap pod (uswitch-agent on a memif port):
//! - uswitch as vhost-user server (QEMU `-chardev socket,path=…`): ping guest → pod and
//!   pod → guest, guest and uswitch counters agree; guest reboot (virtio reset) → link back,
//!   ping again, no extra mapping; QEMU `kill -9` → link down and the guest memory unmapped;
//!   a new QEMU → link back, ping again; fds back to the baseline.
//! - uswitch as client (QEMU `server=on`): ping both ways; QEMU killed and restarted on the
//!   same socket → uswitch reconnects by itself, ping again.
//! - two queue pairs (`queues=2`, `mq=on`, 2 vCPUs): both pairs live, ping from each vCPU.
//!
//! The guest is a packaged Debian kernel with a busybox initramfs built at test time
//! (`uswitch_e2e::qemu`); KVM when it works here, else TCG (printed). Consoles are logged
//! under `target/e2e-logs/qemu-*.log`.
mod agent_common;

use agent_common::Pod;
use std::time::Duration;
use uswitch_e2e::qemu::{Nic, Qemu, QemuBuilder};
use uswitch_e2e::scenario::Switch;
use uswitch_e2e::{e2e_lock, fd_count, shm_maps, wait_until, NetNs};

const LINK: Duration = Duration::from_secs(60);
const GUEST_IP: &str = "10.66.0.20";
const GUEST_MAC: &str = "52:54:00:66:00:20";

/// A tap pod (10.66.0.1) on memif port `pod`, IPv6 off so only our traffic is counted.
fn pod(s: &Switch, tag: &str) -> Pod {
    s.add_port("pod", "server", &[]);
    let ns = NetNs::new(tag).unwrap_or_else(|e| panic!("{e}"));
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    Pod::tap_in(tag, ns, &s.sock("pod"), 1, &[])
}

fn guest(tag: &str, socket: &str, qemu_server: bool, queues: u16) -> Qemu {
    let mut b = QemuBuilder::new(tag, &format!("{GUEST_IP}/24")).nic(Nic {
        socket: socket.to_string(),
        qemu_server,
        queues,
        mac: GUEST_MAC.to_string(),
    });
    if queues > 1 {
        b = b.smp(2);
    }
    let q = b.start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("qemu command line: {}", q.command_line());
    q
}

/// Pings both ways (5 each, all must come back) and checks that the guest's eth0 counters
/// and uswitch's counters of port `vm` moved by the same amounts.
fn ping_both_ways(s: &Switch, vm: &mut Qemu, pod: &Pod, what: &str) {
    // The starting point must be a quiet moment: reading the guest's counters takes a console
    // round trip, and a frame that crosses during it (an ARP right after boot) would be counted
    // on one side only. Take uswitch's counters before and after the guest read; retry until
    // they did not move.
    let mut tries = 0;
    let (g_rx0, g_tx0, st0) = loop {
        let a = s.sw.stats("vm").total;
        let (r, t) = vm.eth0_counts();
        let b = s.sw.stats("vm").total;
        if (a.rx_packets, a.tx_packets) == (b.rx_packets, b.tx_packets) || tries == 20 {
            break (r, t, b);
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    let n = vm.ping(&pod.ip.to_string(), 5);
    assert_eq!(n, 5, "{what}: guest -> pod replies\n{}", vm.proc.tail(20));
    let (n, out) = pod.ping(GUEST_IP.parse().unwrap(), 5);
    assert_eq!(n, 5, "{what}: pod -> guest replies\n{out}");
    // Counters settle once nothing is in flight: guest tx == uswitch rx, uswitch tx == guest rx.
    let mut last = String::new();
    let agreed = wait_until(Duration::from_secs(5), || {
        let (g_rx, g_tx) = vm.eth0_counts();
        let st = s.sw.stats("vm").total;
        let (ur, ut) = (
            st.rx_packets - st0.rx_packets,
            st.tx_packets - st0.tx_packets,
        );
        last = format!(
            "guest rx {} tx {}, uswitch vm rx {ur} tx {ut}, drops {:?}",
            g_rx - g_rx0,
            g_tx - g_tx0,
            st
        );
        g_tx - g_tx0 == ur && g_rx - g_rx0 == ut && ur >= 10 && ut >= 10
    });
    assert!(agreed, "{what}: counters disagree: {last}");
    eprintln!("{what}: {last}");
    let st = s.sw.stats("vm").total;
    assert_eq!(
        st.drop_bad_desc, st0.drop_bad_desc,
        "{what}: bad descriptors"
    );
}

#[test]
fn qemu_guest_uswitch_server_reboot_and_restart() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("vhq");
    let pod = pod(&s, "vhq-a");
    s.add_vhost("vm", "server", 1);
    let pid = s.sw.pid();
    let (fds0, maps0) = (fd_count(pid), shm_maps(pid).len());
    let sock = s.sock_str("vm");
    let mut vm = guest("vhq", &sock, false, 1);
    s.sw.wait_link("vm", true, LINK)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.sw.tail()));
    let info = s.sw.ctl_json(&["port", "list"]).to_string();
    eprintln!("port list: {info}");
    ping_both_ways(&s, &mut vm, &pod, "first boot");
    let maps_up = shm_maps(pid).len();
    assert!(
        maps_up > maps0,
        "guest memory not mapped: {:?}",
        shm_maps(pid)
    );
    // The guest signals nothing itself (we poll), but it needs our call signals (interrupts).
    let calls = s.sw.ctl_json(&["port", "list"]).to_string();
    assert!(
        !calls.contains("\"call_signals\":0"),
        "no call signals: {calls}"
    );

    // Guest reboot: virtio reset, rings stopped (GET_VRING_BASE) and set up again.
    vm.reboot().unwrap_or_else(|e| panic!("{e}"));
    s.sw.wait_link("vm", true, LINK).unwrap();
    ping_both_ways(&s, &mut vm, &pod, "after reboot");
    assert_eq!(shm_maps(pid).len(), maps_up, "mappings after reboot");

    // QEMU killed: link down, its memory unmapped; a new QEMU connects and works.
    for round in 0..2 {
        vm.kill9();
        s.sw.wait_link("vm", false, LINK).unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || shm_maps(pid).len() == maps0),
            "round {round}: guest memory still mapped: {:?}",
            shm_maps(pid)
        );
        vm = guest("vhq", &sock, false, 1);
        s.sw.wait_link("vm", true, LINK).unwrap();
        ping_both_ways(&s, &mut vm, &pod, &format!("restart {round}"));
        assert_eq!(shm_maps(pid).len(), maps_up, "round {round}: mappings");
    }
    let st = s.sw.stats("vm");
    assert!(st.connects >= 3 && st.disconnects >= 2, "{st:?}");
    vm.kill9();
    s.sw.wait_link("vm", false, LINK).unwrap();
    assert!(
        // Fewer fds than at the start is fine (the baseline may hold a connection that was
        // still closing); a leak is growth.
        wait_until(Duration::from_secs(5), || fd_count(pid) <= fds0
            && shm_maps(pid).len() == maps0),
        "leak: fds {} (was {fds0}), maps {:?} (was {maps0})",
        fd_count(pid),
        shm_maps(pid)
    );
}

#[test]
fn qemu_server_uswitch_client_reconnects() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("vhqc");
    let pod = pod(&s, "vhqc-a");
    // uswitch dials with backoff until QEMU listens.
    s.add_vhost("vm", "client", 1);
    let sock = s.sock_str("vm");
    let mut vm = guest("vhqc", &sock, true, 1);
    s.sw.wait_link("vm", true, LINK)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.sw.tail()));
    ping_both_ways(&s, &mut vm, &pod, "client mode");
    let pid = s.sw.pid();
    let maps_up = shm_maps(pid).len();
    vm.kill9();
    s.sw.wait_link("vm", false, LINK).unwrap();
    let _ = std::fs::remove_file(&sock);
    let mut vm = guest("vhqc", &sock, true, 1);
    s.sw.wait_link("vm", true, LINK)
        .unwrap_or_else(|e| panic!("uswitch did not reconnect: {e}\n{}", s.sw.tail()));
    ping_both_ways(&s, &mut vm, &pod, "client mode, after QEMU restart");
    assert_eq!(shm_maps(pid).len(), maps_up, "mappings after reconnect");
    let st = s.sw.stats("vm");
    assert!(st.connects >= 2 && st.disconnects >= 1, "{st:?}");
}

#[test]
fn qemu_two_queue_pairs() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("vhqm");
    let pod = pod(&s, "vhqm-a");
    s.add_vhost("vm", "server", 2);
    let mut vm = guest("vhqm", &s.sock_str("vm"), false, 2);
    s.sw.wait_link("vm", true, LINK)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.sw.tail()));
    // Linux enables one queue pair per vCPU (2).
    let pairs = wait_until(Duration::from_secs(20), || {
        s.sw.ctl_json(&["port", "list"])
            .as_array()
            .and_then(|a| a.iter().find(|p| p["config"]["name"] == "vm"))
            .map(|p| p["info"]["details"]["rx_queues"] == 2)
            .unwrap_or(false)
    });
    assert!(
        pairs,
        "both queue pairs should be live: {}",
        s.sw.ctl_json(&["port", "list"])
    );
    ping_both_ways(&s, &mut vm, &pod, "2 queue pairs");
    // Pings sent from each vCPU (XPS maps CPU n to tx queue n).
    for cpu in 0..2 {
        let (rc, out) = vm
            .sh(
                &format!("taskset -c {cpu} ping -c 3 -i 0.2 -W 2 {}", pod.ip),
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rc, 0, "ping from vCPU {cpu}: {out}");
    }
    let st = s.sw.stats("vm");
    eprintln!("per queue: {:?}", st.queues);
    assert!(
        st.queues.iter().all(|q| q.rx_packets > 0),
        "each guest tx queue carried packets: {:?}",
        st.queues
    );
    assert_eq!(st.total.drop_bad_desc, 0, "{st:?}");
}
