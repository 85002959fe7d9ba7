//! Passthrough mode with a real DPDK app: `uswitch-agent passthrough` prints the `--vdev` for a
//! uswitch port; testpmd opened with exactly that vdev talks through the bridge to a tap pod.
//! Counts match both ways: testpmd → tap (320 frames = tap rx delta) and tap → testpmd (tap tx
//! delta = testpmd rx).
mod agent_common;

use agent_common::{out_text, Pod, LINK};
use std::process::Command;
use std::time::Duration;
use uswitch_e2e::scenario::Switch;
use uswitch_e2e::{bin_path, e2e_lock, wait_until, NetNs, TestpmdBuilder};

const TP_MAC: &str = "02:a6:00:00:00:50";

/// (rx, tx) packets of the pod's eth1.
fn tap_counts(ns: &NetNs) -> (u64, u64) {
    let o = ns.exec(&["ip", "-s", "-j", "link", "show", "dev", "eth1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let s = &v[0]["stats64"];
    (
        s["rx"]["packets"].as_u64().unwrap_or(0),
        s["tx"]["packets"].as_u64().unwrap_or(0),
    )
}

#[test]
fn testpmd_passthrough_to_tap_counts_match() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("agpt");
    s.add_port("pa", "server", &[]);
    s.add_port("pt", "server", &[]);
    let ns = NetNs::new("agpt-a").unwrap();
    // No IPv6 chatter from the tap: only our frames are counted.
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    let pod = Pod::tap_in("agpt-a", ns, &s.sock("pa"), 1, &[]);
    let tap_mac = "02:a6:00:00:00:01";

    // The vdev string and env file from the agent.
    let d = uswitch_e2e::temp_dir("agpt");
    let env = d.path().join("app.env");
    let sock = s.sock_str("pt");
    let o = Command::new(bin_path("uswitch-agent"))
        .args([
            "--socket",
            &sock,
            "--mac",
            TP_MAC,
            "passthrough",
            "--output",
            &env.to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let vdev = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(
        vdev,
        format!("net_memif0,role=client,socket={sock},socket-abstract=no,id=0,mac={TP_MAC}")
    );
    let envtext = std::fs::read_to_string(&env).unwrap();
    assert!(
        envtext.contains(&format!("USWITCH_EAL_ARGS=--vdev={vdev}\n")),
        "{envtext}"
    );

    // testpmd with exactly those devargs (the builder re-assembles the same string).
    let kv: std::collections::HashMap<&str, &str> = vdev
        .split(',')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .collect();
    let id: u32 = kv["id"].parse().unwrap();
    let mac = format!("mac={}", kv["mac"]);
    let mut t = TestpmdBuilder::new("agpt")
        .memif(kv["role"], kv["socket"], id, &[&mac])
        .eth_peer(0, tap_mac)
        .start()
        .unwrap();
    t.wait_link_up(LINK).unwrap();
    s.sw.wait_link("pt", true, LINK).unwrap();

    // testpmd -> tap: 10 bursts of 32.
    let (rx0, _) = tap_counts(&pod.ns);
    t.send_paced(10, 1, Duration::from_millis(50)).unwrap();
    let want = 320;
    let ok = wait_until(Duration::from_secs(5), || {
        tap_counts(&pod.ns).0 >= rx0 + want
    });
    std::thread::sleep(Duration::from_millis(300));
    let (rx1, _) = tap_counts(&pod.ns);
    assert!(
        ok && rx1 - rx0 == want,
        "tap received {} of {want}\n{}",
        rx1 - rx0,
        s.sw.tail()
    );
    let tp = t.stats(0).unwrap();
    assert_eq!(tp.tx_packets, want, "testpmd tx");

    // tap -> testpmd: pings to an address whose MAC is testpmd's.
    t.stop_fwd().unwrap();
    t.clear_stats().unwrap();
    t.start_fwd().unwrap();
    pod.ns.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.66.0.50",
        "lladdr",
        TP_MAC,
        "dev",
        "eth1",
    ]);
    let (_, tx0) = tap_counts(&pod.ns);
    pod.ns
        .exec(&["ping", "-c", "5", "-i", "0.2", "-W", "0.3", "10.66.0.50"]);
    std::thread::sleep(Duration::from_millis(300));
    let (_, tx1) = tap_counts(&pod.ns);
    assert!(tx1 - tx0 >= 5, "tap sent {}", tx1 - tx0);
    let r = t
        .wait_stats(0, Duration::from_secs(5), |c| c.rx_packets >= tx1 - tx0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.rx_packets, tx1 - tx0, "testpmd rx vs tap tx");
    t.quit().unwrap();
}
