//! DPDK ports end to end (needs `--features dpdk` and a uswitchd built with it:
//! `cargo build --release -p uswitch-engine --features dpdk --bins`).
//!
//! A `net_tap` vdev port of uswitch (its kernel side, `uswdt<pid>`, gets 10.79.0.1/24 in the
//! root namespace) is bridged to a memif port whose peer is `dpdk-testpmd
//! --forward-mode=icmpecho` (it answers ARP and ping for any address). `ping -I <tap>
//! 10.79.0.2` works; the tap's kernel counters, both uswitch ports, the DPDK device counters
//! and testpmd agree; link follows the tap going down and up; the mbuf pool's free count is back to its value before traffic, and
//! after `port del` + `port add` (no mbuf leaked). Also the errors: a missing device, a busy
//! device, EAL init failing (at start with `--dpdk-eal-args`, and lazily from the config
//! file's `dpdk.eal_args`), each leaving the switch as it was. And a DPDK port from `--config`
//! (EAL args from the file) comes back after `kill -9` + restart from the state file.
#![cfg(feature = "dpdk")]
use std::process::Command;
use std::time::Duration;
use uswitch_e2e::scenario::{mac_of, Switch};
use uswitch_e2e::{e2e_lock, Testpmd, TestpmdBuilder, Uswitchd};

const LINK: Duration = Duration::from_secs(15);

fn tap_name() -> String {
    format!("uswdt{}", std::process::id() % 100000)
}

/// EAL arguments for uswitchd: hugepages without files when there are enough, else none.
fn eal_args() -> String {
    let base = "--no-pci -m 256 --log-level pmd.net.tap:error";
    if uswitch_e2e::hugetlbfs_mounted() && uswitch_e2e::free_hugepages() >= 160 {
        format!("{base} --in-memory")
    } else {
        format!("{base} --no-huge --no-shconf")
    }
}

fn dpdk_switch(tag: &str) -> Switch {
    let dir = uswitch_e2e::temp_dir(tag);
    let eal = eal_args();
    let sw = Uswitchd::start_with(dir.path(), &["--dpdk-eal-args", &eal]).unwrap_or_else(|e| {
        panic!("{e}\n(is target/release/uswitchd built with --features dpdk?)")
    });
    sw.ctl_ok(&["bridge", "add", "br0"]);
    Switch { dir, sw }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sysfs(dev: &str, what: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{what}"))
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

/// `ping -c N -I dev dst`: (transmitted, received).
fn ping(dev: &str, dst: &str, n: u32) -> (u64, u64) {
    let c = n.to_string();
    let o = Command::new("ping")
        .args(["-c", &c, "-i", "0.05", "-W", "2", "-q", "-I", dev, dst])
        .output()
        .expect("ping");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {out}"));
    let w: Vec<&str> = line.split([',', ' ']).collect();
    let num = |word: &str| -> u64 {
        let i = w.iter().position(|x| *x == word).expect(word);
        w[i - 1].parse().unwrap()
    };
    (num("packets"), num("received"))
}

/// The `details` of port `name` from `port list --json`.
fn details(s: &Switch, name: &str) -> serde_json::Value {
    let v = s.sw.ctl_json(&["port", "list"]);
    v.as_array()
        .and_then(|a| a.iter().find(|e| e["config"]["name"] == name))
        .map(|e| e["info"]["details"].clone())
        .unwrap_or_else(|| panic!("port {name} not in {v}"))
}

fn num(d: &serde_json::Value, key: &str) -> u64 {
    d[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {d}"))
}

fn echo_peer(s: &Switch, port: &str) -> Testpmd {
    let mut t = TestpmdBuilder::new("dtap-echo")
        .memif_client(&s.sock_str(port), &mac_of(0))
        .forward_mode("icmpecho")
        .start()
        .unwrap();
    t.wait_link_up(LINK).unwrap();
    s.sw.wait_link(port, true, LINK).unwrap();
    t.start_fwd().unwrap();
    t
}

fn add_tap(s: &Switch, port: &str, tap: &str) {
    let devargs = format!("net_tap0,iface={tap}");
    s.sw.ctl_ok(&[
        "port",
        "add",
        port,
        "dpdk",
        "--devargs",
        &devargs,
        "--bridge",
        "br0",
    ]);
    s.sw.wait_link(port, true, LINK).unwrap();
    // Quiet kernel side: no IPv6 (router solicitations, MLD), one address.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tap}/disable_ipv6"), "1");
    sh("ip", &["addr", "flush", "dev", tap]);
    sh("ip", &["addr", "add", "10.79.0.1/24", "dev", tap]);
    sh("ip", &["link", "set", tap, "up"]);
}

#[test]
fn ping_through_a_dpdk_tap_port_counts_agree_and_no_mbuf_leaks() {
    let _l = e2e_lock();
    let tap = tap_name();
    let s = dpdk_switch("dtap");
    s.add_port("p0", "server", &[]);
    add_tap(&s, "up0", &tap);
    let mut pmd = echo_peer(&s, "p0");
    let list = s.sw.ctl_ok(&["port", "list"]);
    assert!(list.contains("devargs net_tap0"), "{list}");
    let d = details(&s, "up0");
    assert_eq!(d["driver"], "net_tap", "{d}");
    assert_eq!(num(&d, "mbuf_total"), 16383, "{d}");

    // Errors are clear and change nothing.
    let before = s.sw.ctl_ok(&["port", "list"]);
    let e = s.sw.ctl(&[
        "port",
        "add",
        "up1",
        "dpdk",
        "--devargs",
        "net_nosuch0",
        "--bridge",
        "br0",
    ]);
    assert_eq!(e.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains("DPDK device \"net_nosuch0\" not found"),
        "{msg}"
    );
    let e = s.sw.ctl(&[
        "port",
        "add",
        "up1",
        "dpdk",
        "--devargs",
        "net_tap0,iface=uswdtx0",
    ]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains("DPDK device net_tap0 is already used by port up0"),
        "{msg}"
    );
    let e = s.sw.ctl(&[
        "port",
        "add",
        "up1",
        "dpdk",
        "--devargs",
        "net_tap1,iface=uswdtx1",
        "--queues",
        "64",
    ]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("queues must be 1..=16"), "{msg}");
    assert_eq!(s.sw.ctl_ok(&["port", "list"]), before);

    // Traffic: the kernel pings through the tap, testpmd answers.
    std::thread::sleep(Duration::from_millis(300));
    s.sw.ctl_ok(&["stats", "--clear"]);
    pmd.clear_stats().unwrap();
    let avail0 = num(&details(&s, "up0"), "mbuf_avail");
    let (k_rx0, k_tx0) = (sysfs(&tap, "rx_packets"), sysfs(&tap, "tx_packets"));
    let (sent, got) = ping(&tap, "10.79.0.2", 50);
    assert_eq!((sent, got), (50, 50), "ping through the DPDK tap port");
    std::thread::sleep(Duration::from_millis(500));
    let (k_rx, k_tx) = (
        sysfs(&tap, "rx_packets") - k_rx0,
        sysfs(&tap, "tx_packets") - k_tx0,
    );
    let up = s.sw.stats("up0");
    let p0 = s.sw.stats("p0");
    let t = pmd.stats(0).unwrap();
    let d = details(&s, "up0");
    let info = format!("tap rx {k_rx} tx {k_tx}\nup0 {up:?}\n{d}\np0 {p0:?}\ntestpmd {t:?}");
    // The kernel sent the pings plus ARP; all of it reached testpmd, and all replies came back.
    assert!((50..=56).contains(&k_tx), "{info}");
    assert_eq!(up.total.rx_packets, k_tx, "{info}");
    assert_eq!(num(&d, "hw_ipackets"), k_tx, "{info}");
    assert_eq!(p0.total.tx_packets, up.total.rx_packets, "{info}");
    assert_eq!(t.rx_packets, p0.total.tx_packets, "{info}");
    assert_eq!(t.tx_packets, p0.total.rx_packets, "{info}");
    assert_eq!(up.total.tx_packets, p0.total.rx_packets, "{info}");
    assert_eq!(num(&d, "hw_opackets"), up.total.tx_packets, "{info}");
    assert_eq!(k_rx, up.total.tx_packets, "{info}");
    let q = &up.total;
    assert_eq!(
        (q.drop_no_buffer, q.drop_ring_full, q.drop_bad_desc),
        (0, 0, 0),
        "{info}"
    );
    // Every mbuf received was freed, every mbuf sent was given back by the PMD.
    assert_eq!(num(&d, "mbuf_avail"), avail0, "{info}");
    eprintln!(
        "counters agree: tap tx {k_tx} rx {k_rx}, up0 rx {} tx {}, testpmd rx {} tx {}, mbuf_avail {avail0}",
        up.total.rx_packets, up.total.tx_packets, t.rx_packets, t.tx_packets
    );

    // Link state follows the device (net_tap: the interface's flags).
    sh("ip", &["link", "set", &tap, "down"]);
    s.sw.wait_link("up0", false, LINK).unwrap();
    let st = s.sw.stats("up0");
    assert_eq!(
        st.last_disconnect_reason.as_deref(),
        Some("device reports link down"),
        "{st:?}"
    );
    sh("ip", &["link", "set", &tap, "up"]);
    s.sw.wait_link("up0", true, LINK).unwrap();
    assert_eq!(
        ping(&tap, "10.79.0.2", 3),
        (3, 3),
        "ping after link down/up"
    );

    // port del detaches the device (the tap interface goes away) and returns its rx ring's
    // mbufs; adding it again gives the same free count.
    s.sw.ctl_ok(&["port", "del", "up0"]);
    assert!(
        uswitch_e2e::wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/sys/class/net/{tap}"
        ))
        .exists()),
        "tap {tap} still there after port del"
    );
    add_tap(&s, "up0", &tap);
    assert_eq!(num(&details(&s, "up0"), "mbuf_avail"), avail0);
    let (sent, got) = ping(&tap, "10.79.0.2", 5);
    assert_eq!((sent, got), (5, 5), "ping after port del + add");
    drop(pmd);
}

#[test]
fn eal_failure_is_a_clear_error() {
    let _l = e2e_lock();
    // At start (--dpdk-eal-args): fatal, with the EAL's reason.
    let dir = uswitch_e2e::temp_dir("deal");
    let o = Command::new(uswitch_e2e::bin_path("uswitchd"))
        .arg("--no-state")
        .arg("--control")
        .arg(dir.path().join("ctl.sock"))
        .args(["--dpdk-eal-args", "--no-pci --no-such-eal-option"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("uswitchd: error: DPDK EAL initialisation failed"),
        "{err}"
    );
    assert!(!dir.path().join("ctl.sock").exists());

    // From the config file: the daemon starts; the first DPDK port fails and nothing is added.
    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"bridges":[{"name":"br0"}],"dpdk":{"eal_args":["--no-pci","--no-such-eal-option"]}}"#,
    )
    .unwrap();
    let c = cfg.to_string_lossy().into_owned();
    let sw = Uswitchd::start_with(dir.path(), &["--config", &c]).unwrap();
    let e = sw.ctl(&[
        "port",
        "add",
        "up0",
        "dpdk",
        "--devargs",
        "net_tap0,iface=uswdte0",
        "--bridge",
        "br0",
    ]);
    assert_eq!(e.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("DPDK EAL initialisation failed"), "{msg}");
    let show = sw.show();
    assert!(show.ports.is_empty(), "{show:?}");
    assert!(!std::path::Path::new("/sys/class/net/uswdte0").exists());
    // The state file keeps the DPDK settings.
    let state = std::fs::read_to_string(&sw.state).unwrap();
    assert!(state.contains("--no-such-eal-option"), "{state}");
}

#[test]
fn dpdk_port_from_config_comes_back_after_kill9() {
    let _l = e2e_lock();
    let tap = format!("uswdr{}", std::process::id() % 100000);
    let dir = uswitch_e2e::temp_dir("drest");
    let eal: Vec<String> = eal_args().split_whitespace().map(String::from).collect();
    let cfg = serde_json::json!({
        "dpdk": {"eal_args": eal, "mbufs": 8191},
        "bridges": [{"name": "br0"}],
        "ports": [{"name": "up0", "type": "dpdk", "devargs": format!("net_tap0,iface={tap}"),
                   "bridge": "br0", "vlan": {"access": 7}}],
    });
    let path = dir.path().join("cfg.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let c = path.to_string_lossy().into_owned();
    let mut sw = Uswitchd::start_with(dir.path(), &["--config", &c]).unwrap();
    sw.wait_link("up0", true, LINK).unwrap();
    let tap_dir = format!("/sys/class/net/{tap}");
    assert!(std::path::Path::new(&tap_dir).exists());
    let state = std::fs::read_to_string(&sw.state).unwrap();
    assert!(
        state.contains("\"type\":\"dpdk\"") || state.contains("\"type\": \"dpdk\""),
        "{state}"
    );
    // kill -9: the tap goes with the process; the restart restores it from the state file
    // (EAL args included), on the same bridge and VLAN.
    sw.restart().unwrap();
    sw.wait_link("up0", true, LINK).unwrap();
    assert!(std::path::Path::new(&tap_dir).exists());
    let show = sw.show();
    assert!(show.restore_errors.is_empty(), "{:?}", show.restore_errors);
    let p = &show.ports[0];
    assert_eq!(p.info.kind, "dpdk");
    assert_eq!(p.config.bridge.as_deref(), Some("br0"));
    assert_eq!(p.config.vlan, uswitch::config::VlanMode::Access(7));
    assert_eq!(p.info.details["driver"], "net_tap");
    assert_eq!(
        p.info.details["mbuf_total"], 8191,
        "dpdk.mbufs from the state file"
    );
}
