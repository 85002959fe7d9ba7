//! CNI `iftype: vhostuser` end to end, driven by libcni (`cnitool-lite`):
//! - pod A: `uswitch-cni` ADD with `tests/cni/uswitch-vhost.conflist` → a vhost-user server
//!   port on bridge `br-cni` (VLAN 100) and its socket in the pod directory;
//! - pod B: ADD with the memif conflist (`uswitch-tuning.conflist`, same bridge and VLAN);
//! - `uswitch-agent passthrough` for pod A prints `net_virtio_user0,path=…,queues=2,mac=…` (the port has 2 queue pairs)
//!   and the env file's `USWITCH_EAL_ARGS`; a testpmd started with exactly those EAL arguments
//!   and a memif testpmd for pod B pass traffic both ways, exact counts;
//! - DEL of both: no port, no socket, no pod directory left (DEL twice is fine).
use std::process::Command;
use std::time::Duration;
use uswitch_e2e::cni::CniRunner;
use uswitch_e2e::scenario::{assert_no_drops, send_and_settle, BURST};
use uswitch_e2e::{bin_path, e2e_lock, temp_dir, NetNs, Testpmd, TestpmdBuilder, Uswitchd};

const LINK: Duration = Duration::from_secs(30);
const CID_A: &str = "0a9e71c0ffee0000000000000000000a";
const CID_B: &str = "0a9e71c0ffee0000000000000000000b";

fn port_of(cni: &CniRunner, cid: &str) -> String {
    let f = cni.shared().join(cid).join(".uswitch-net1.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    v["port"].as_str().unwrap().to_string()
}

/// `rounds` × 32 packets from `tx` to `rx` through ports `pin` → `pout`: exact counts.
fn flow(sw: &Uswitchd, tx: &mut Testpmd, rx: &mut Testpmd, pin: &str, pout: &str) {
    let rounds = 20;
    let want = u64::from(rounds) * BURST;
    let rx0 = rx.stats(0).unwrap().rx_packets;
    let tx0 = tx.stats(0).unwrap().tx_packets;
    let in0 = sw.stats(pin).total.rx_packets;
    let sent = send_and_settle(sw, tx, rounds, 1, pout, want);
    let r = rx
        .wait_stats(0, Duration::from_secs(10), |c| c.rx_packets >= rx0 + want)
        .unwrap_or_else(|e| panic!("{e}\n{:?}\n{:?}", sw.stats(pin), sw.stats(pout)));
    let t = tx.stats(0).unwrap();
    let info = format!("{:?}\n{:?}", sw.stats(pin), sw.stats(pout));
    assert_eq!(t.tx_packets - tx0, want, "sender\n{info}");
    assert_eq!(
        sw.stats(pin).total.rx_packets - in0,
        want,
        "uswitch rx\n{info}"
    );
    assert_eq!(sent, want, "uswitch tx\n{info}");
    assert_eq!(r.rx_packets - rx0, want, "receiver\n{info}");
    assert_no_drops(&sw.stats(pin));
    assert_no_drops(&sw.stats(pout));
}

#[test]
fn cni_vhostuser_passthrough_testpmd_to_memif_pod() {
    let _l = e2e_lock();
    let swdir = temp_dir("vhcnisw");
    let sw = Uswitchd::start(swdir.path()).unwrap_or_else(|e| panic!("{e}"));
    let cni = CniRunner::new("vhcni", &sw.control);
    let vconf = cni.conflist("uswitch-vhost.conflist");
    let mconf = cni.conflist("uswitch-tuning.conflist");
    let na = NetNs::new("vhcni-a").unwrap();
    let nb = NetNs::new("vhcni-b").unwrap();

    let ra = cni.run("add", &vconf, &na, CID_A, "net1");
    let _rb = cni.run("add", &mconf, &nb, CID_B, "net1");
    let (pa, pb) = (port_of(&cni, CID_A), port_of(&cni, CID_B));
    let list = sw.ctl_json(&["port", "list"]);
    let entry = list
        .as_array()
        .and_then(|a| a.iter().find(|p| p["config"]["name"] == pa.as_str()))
        .unwrap_or_else(|| panic!("no port {pa}: {list}"))
        .clone();
    assert_eq!(entry["config"]["type"], "vhost-user", "{entry}");
    assert_eq!(entry["config"]["mode"], "server", "{entry}");
    assert_eq!(entry["config"]["bridge"], "br-cni", "{entry}");
    assert_eq!(entry["config"]["queues"], 2, "{entry}");
    let da = cni.config_data(CID_A, "net1");
    let sock = da["socketPath"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&sock).exists(), "{sock}");
    assert_eq!(entry["config"]["socket"], sock.as_str());
    let mac = ra["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!mac.is_empty(), "{ra}");

    // The agent, as the pod's init container would run it.
    let env = cni.dir.path().join("pod-a.env");
    let o = Command::new(bin_path("uswitch-agent"))
        .args([
            "--shared-dir",
            &cni.shared().to_string_lossy(),
            "--container-id",
            CID_A,
        ])
        .args([
            "--ifname",
            "net1",
            "passthrough",
            "--output",
            &env.to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vdev = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(
        vdev,
        format!("net_virtio_user0,path={sock},queues=2,mac={mac}")
    );
    let envtext = std::fs::read_to_string(&env).unwrap();
    let eal = envtext
        .lines()
        .find_map(|l| l.strip_prefix("USWITCH_EAL_ARGS="))
        .unwrap_or_else(|| panic!("no USWITCH_EAL_ARGS in {envtext}"))
        .to_string();
    assert_eq!(eal, format!("--vdev={vdev} --single-file-segments"));

    // testpmd with exactly the agent's EAL arguments, and a memif testpmd as pod B.
    let db = cni.config_data(CID_B, "net1");
    let sock_b = db["socketPath"].as_str().unwrap().to_string();
    let mac_b = db["mac"]
        .as_str()
        .unwrap_or("02:00:00:00:00:0b")
        .to_string();
    let mut b = TestpmdBuilder::new("vhcni-b");
    b = b.memif_client(&sock_b, &mac_b).eth_peer(0, &mac);
    let mut tb = b.start().unwrap();
    let mut a = TestpmdBuilder::new("vhcni-a");
    for arg in eal.split_whitespace() {
        a = a.eal(arg);
    }
    let mut ta = a.eth_peer(0, &mac_b).start().unwrap();
    ta.wait_link_up(LINK).unwrap();
    tb.wait_link_up(LINK).unwrap();
    sw.wait_link(&pa, true, LINK)
        .unwrap_or_else(|e| panic!("{e}\n{}", sw.tail()));
    sw.wait_link(&pb, true, LINK).unwrap();
    ta.start_fwd().unwrap();
    tb.start_fwd().unwrap();
    flow(&sw, &mut ta, &mut tb, &pa, &pb);
    flow(&sw, &mut tb, &mut ta, &pb, &pa);
    ta.quit().unwrap();
    tb.quit().unwrap();

    for _ in 0..2 {
        cni.run("del", &vconf, &na, CID_A, "net1");
        cni.run("del", &mconf, &nb, CID_B, "net1");
    }
    assert!(
        sw.show().ports.is_empty(),
        "ports left: {}",
        sw.ctl_json(&["port", "list"])
    );
    assert!(
        !std::path::Path::new(&sock).exists(),
        "vhost-user socket left: {sock}"
    );
    let left: Vec<_> = std::fs::read_dir(cni.shared())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the shared dir: {left:?}");
}
