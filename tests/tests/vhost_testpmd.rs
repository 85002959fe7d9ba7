//! uswitch vhost-user ports with DPDK `virtio_user` frontends (testpmd):
//! - uswitch as server (virtio_user connects as client): txonly → bridge → rxonly, exact counts;
//! - uswitch as client (virtio_user `server=1`): the same;
//! - a memif testpmd and a vhost-user testpmd on one bridge, both directions;
//! - the receiving "guest" killed and restarted mid-traffic (three times): traffic resumes,
//!   counts exact afterwards, mappings of the dead frontend released.
use std::time::Duration;
use uswitch_e2e::scenario::{assert_no_drops, mac_of, send_and_settle, Switch, BURST};
use uswitch_e2e::{e2e_lock, shm_maps, wait_until, Testpmd, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(30);

/// A testpmd with one virtio_user port on `name`'s socket (`server=1` when uswitch is client).
fn guest(s: &Switch, tag: &str, name: &str, idx: usize, peer: usize, server: bool) -> Testpmd {
    let sock = s.sock_str(name);
    let mut extra = vec!["queues=1", "queue_size=256"];
    if server {
        extra.push("server=1");
    }
    TestpmdBuilder::new(tag)
        .virtio_user(&sock, &mac_of(idx), &extra)
        .eth_peer(0, &mac_of(peer))
        .start()
        .unwrap()
}

fn up(s: &Switch, t: &mut Testpmd, name: &str) {
    t.wait_link_up(LINK).unwrap();
    s.sw.wait_link(name, true, LINK)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.sw.tail()));
}

/// Sends `rounds`×2 bursts from `tx`, checks `rx` got exactly that many and uswitch counted
/// the same on both ports.
fn check_flow(s: &Switch, tx: &mut Testpmd, rx: &mut Testpmd, in_port: &str, out_port: &str) {
    let rounds = 40;
    let want = rounds as u64 * 2 * BURST;
    let before_rx = rx.stats(0).unwrap().rx_packets;
    let before_tx = tx.stats(0).unwrap().tx_packets;
    let before_in = s.sw.stats(in_port).total.rx_packets;
    let sent = send_and_settle(&s.sw, tx, rounds, 2, out_port, want);
    let t = tx
        .wait_stats(0, Duration::from_secs(5), |c| {
            c.tx_packets >= before_tx + want
        })
        .unwrap();
    let r = rx
        .wait_stats(0, Duration::from_secs(10), |c| {
            c.rx_packets >= before_rx + want
        })
        .unwrap_or_else(|e| panic!("{e}\n{:?}\n{:?}", s.sw.stats(in_port), s.sw.stats(out_port)));
    let info = format!(
        "tx {t:?}\nrx {r:?}\n{:?}\n{:?}",
        s.sw.stats(in_port),
        s.sw.stats(out_port)
    );
    assert_eq!(t.tx_packets - before_tx, want, "{info}");
    assert_eq!(
        s.sw.stats(in_port).total.rx_packets - before_in,
        want,
        "{info}"
    );
    assert_eq!(sent, want, "uswitch tx on {out_port}\n{info}");
    assert_eq!(r.rx_packets - before_rx, want, "{info}");
    assert_no_drops(&s.sw.stats(in_port));
    assert_no_drops(&s.sw.stats(out_port));
}

fn tx_rx(tag: &str, uswitch_mode: &str) {
    let _l = e2e_lock();
    let s = Switch::with_bridge(tag);
    let server = uswitch_mode == "client";
    // uswitch in client mode retries until the frontend listens; a server=1 testpmd waits for
    // that connection before it shows its prompt.
    s.add_vhost("v0", uswitch_mode, 1);
    s.add_vhost("v1", uswitch_mode, 1);
    let mut tx = guest(&s, &format!("{tag}-tx"), "v0", 0, 1, server);
    let mut rx = guest(&s, &format!("{tag}-rx"), "v1", 1, 0, server);
    up(&s, &mut tx, "v0");
    up(&s, &mut rx, "v1");
    rx.start_fwd().unwrap();
    check_flow(&s, &mut tx, &mut rx, "v0", "v1");
    let info = s.sw.ctl_json(&["port", "list"]);
    assert!(info.to_string().contains("vhost-user"), "{info}");
}

#[test]
fn vhost_server_virtio_user_client_counts_match() {
    tx_rx("vhsrv", "server");
}

#[test]
fn vhost_client_virtio_user_server_counts_match() {
    tx_rx("vhcli", "client");
}

#[test]
fn memif_and_vhost_on_one_bridge() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("vhmix");
    s.add_port("m0", "server", &[]);
    s.add_vhost("v0", "server", 1);
    let mut m = TestpmdBuilder::new("vhmix-m")
        .memif_client(&s.sock_str("m0"), &mac_of(0))
        .eth_peer(0, &mac_of(1))
        .start()
        .unwrap();
    let mut v = guest(&s, "vhmix-v", "v0", 1, 0, false);
    up(&s, &mut m, "m0");
    up(&s, &mut v, "v0");
    m.start_fwd().unwrap();
    v.start_fwd().unwrap();
    check_flow(&s, &mut m, &mut v, "m0", "v0");
    check_flow(&s, &mut v, &mut m, "v0", "m0");
}

#[test]
fn guest_restart_mid_traffic() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("vhrst");
    s.add_vhost("v0", "server", 1);
    s.add_vhost("v1", "server", 1);
    let mut tx = guest(&s, "vhrst-tx", "v0", 0, 1, false);
    let mut rx = guest(&s, "vhrst-rx", "v1", 1, 0, false);
    up(&s, &mut tx, "v0");
    up(&s, &mut rx, "v1");
    rx.start_fwd().unwrap();
    check_flow(&s, &mut tx, &mut rx, "v0", "v1");
    let pid = s.sw.pid();
    let maps0 = shm_maps(pid).len();
    for round in 0..3 {
        // Traffic keeps coming while the receiving guest dies.
        tx.stop_fwd().unwrap();
        tx.tx_first(64).unwrap();
        rx.kill9();
        s.sw.wait_link("v1", false, LINK).unwrap();
        tx.stop_fwd().unwrap();
        let released = wait_until(Duration::from_secs(5), || shm_maps(pid).len() < maps0);
        assert!(
            released,
            "round {round}: memory of the dead guest still mapped: {:?}",
            shm_maps(pid)
        );
        rx = guest(&s, &format!("vhrst-rx{round}"), "v1", 1, 0, false);
        up(&s, &mut rx, "v1");
        rx.start_fwd().unwrap();
        let st = s.sw.stats("v1");
        assert!(
            st.disconnects >= 1 && st.connects >= 1,
            "reconnect not counted: {st:?}"
        );
        // Drops while the guest was dead are expected; after the restart there must be none.
        eprintln!("round {round}: v0 {:?}", s.sw.stats("v0"));
        s.sw.ctl_ok(&["stats", "v0", "--clear"]);
        s.sw.ctl_ok(&["stats", "v1", "--clear"]);
        check_flow(&s, &mut tx, &mut rx, "v0", "v1");
        let st = s.sw.stats("v1");
        assert_eq!(st.total.drop_bad_desc, 0, "{st:?}");
    }
}
