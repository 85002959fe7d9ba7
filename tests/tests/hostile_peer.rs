//! Hostile memif peer: a raw client (tests/src/memif_peer.rs) sends malformed control
//! messages, rings outside its region, bad descriptors and a head jump to a uswitch server
//! port, while a good testpmd pair on another bridge keeps forwarding. The bad port's error
//! counters rise, uswitchd stays up, and the good pair's counts stay exact.
use std::time::Duration;
use uswitch_e2e::frames::{eth_frame, mac};
use uswitch_e2e::memif_peer::{
    add_region_msg, add_ring_msg, init_msg, msg, RawPeer, BUF_SIZE, LOG2, REGION_SIZE,
    RING_FLAG_C2S, T_ACK, T_HELLO,
};
use uswitch_e2e::scenario::{assert_no_drops, mac_of, send_and_settle, Switch, BURST};
use uswitch_e2e::{e2e_lock, wait_until, Testpmd, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);

fn good_pair(s: &Switch) -> (Testpmd, Testpmd) {
    s.sw.ctl_ok(&["bridge", "add", "good"]);
    for p in ["g0", "g1"] {
        s.sw.add_memif(p, &s.sock(p), "server", &["--bridge", "good"]);
    }
    let mut a = TestpmdBuilder::new("hostile-g0")
        .memif_client(&s.sock_str("g0"), &mac_of(0))
        .eth_peer(0, &mac_of(1))
        .start()
        .unwrap();
    let mut b = TestpmdBuilder::new("hostile-g1")
        .memif_client(&s.sock_str("g1"), &mac_of(1))
        .start()
        .unwrap();
    a.wait_link_up(LINK).unwrap();
    b.wait_link_up(LINK).unwrap();
    s.sw.wait_link("g0", true, LINK).unwrap();
    s.sw.wait_link("g1", true, LINK).unwrap();
    b.start_fwd().unwrap();
    (a, b)
}

/// Good pair forwards exactly 10×2 bursts; returns packets delivered so far to g1's testpmd.
fn good_flow(s: &Switch, a: &mut Testpmd, b: &mut Testpmd, total: &mut u64) {
    let want = 10 * 2 * BURST;
    let sent = send_and_settle(&s.sw, a, 10, 2, "g1", want);
    assert_eq!(sent, want, "good pair stopped forwarding\n{}", s.sw.tail());
    *total += want;
    let got = b
        .wait_stats(0, Duration::from_secs(5), |c| c.rx_packets >= *total)
        .unwrap();
    assert_eq!(got.rx_packets, *total);
}

fn errors(s: &Switch) -> u64 {
    s.sw.stats("bad").control_errors
}

/// Each malformed handshake must end with the server closing the connection, counted.
fn expect_rejected(s: &Switch, what: &str, before: u64, p: &RawPeer) -> u64 {
    let closed = p.expect_closed();
    assert!(
        closed.is_ok(),
        "{what}: server kept the connection open ({closed:?})"
    );
    let ok = wait_until(Duration::from_secs(5), || errors(s) > before);
    let now = errors(s);
    assert!(
        ok,
        "{what}: control_errors did not rise ({before} → {now}); reason {closed:?}"
    );
    assert!(!s.sw.stats("bad").link_up, "{what}: link must stay down");
    now
}

#[test]
fn hostile_peer_is_contained() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("hostile");
    s.add_port("bad", "server", &[]);
    let (mut a, mut b) = good_pair(&s);
    let mut delivered = 0;
    good_flow(&s, &mut a, &mut b, &mut delivered);
    let bad = s.sock("bad");
    let mut errs = errors(&s);

    // 1. unknown message type instead of INIT
    let p = RawPeer::connect(&bad).unwrap();
    p.expect(T_HELLO).unwrap();
    p.send_raw(&msg(99), &[]).unwrap();
    errs = expect_rejected(&s, "unknown type", errs, &p);

    // 2. truncated message
    let p = RawPeer::connect(&bad).unwrap();
    p.expect(T_HELLO).unwrap();
    p.send_raw(&init_msg(0, "", "short")[..10], &[]).unwrap();
    errs = expect_rejected(&s, "10-byte message", errs, &p);

    // 3. wrong interface id
    let p = RawPeer::connect(&bad).unwrap();
    p.expect(T_HELLO).unwrap();
    p.send_raw(&init_msg(42, "", "wrong-id"), &[]).unwrap();
    errs = expect_rejected(&s, "wrong id", errs, &p);

    // 4. ADD_REGION without an fd
    let p = RawPeer::connect(&bad).unwrap();
    p.expect(T_HELLO).unwrap();
    p.send_raw(&init_msg(0, "", "nofd"), &[]).unwrap();
    p.expect(T_ACK).unwrap();
    p.send_raw(&add_region_msg(0, REGION_SIZE), &[]).unwrap();
    errs = expect_rejected(&s, "region without fd", errs, &p);

    // 5. ring outside its region, 6. ring in a region that does not exist
    for (what, region, offset) in [
        ("ring past region end", 0u16, REGION_SIZE as u32 - 64),
        ("ring region 3", 3, 0),
    ] {
        let mut p = RawPeer::connect(&bad).unwrap();
        p.expect(T_HELLO).unwrap();
        p.send_raw(&init_msg(0, "", "badring"), &[]).unwrap();
        p.expect(T_ACK).unwrap();
        let fd = p.make_region().unwrap();
        p.send_raw(&add_region_msg(0, REGION_SIZE), &[fd]).unwrap();
        p.expect(T_ACK).unwrap();
        let e = p.eventfd().unwrap();
        p.send_raw(&add_ring_msg(RING_FLAG_C2S, 0, region, offset, LOG2), &[e])
            .unwrap();
        errs = expect_rejected(&s, what, errs, &p);
    }
    // 7. region size larger than the memfd behind it
    {
        let mut p = RawPeer::connect(&bad).unwrap();
        p.expect(T_HELLO).unwrap();
        p.send_raw(&init_msg(0, "", "bigregion"), &[]).unwrap();
        p.expect(T_ACK).unwrap();
        let fd = p.make_region().unwrap();
        p.send_raw(&add_region_msg(0, REGION_SIZE * 1024), &[fd])
            .unwrap();
        errs = expect_rejected(&s, "region larger than its fd", errs, &p);
    }
    good_flow(&s, &mut a, &mut b, &mut delivered);

    // 8. connected peer with bad descriptors: region 9, offset past the region, length past
    //    the region end, then one good frame.
    let mut p = RawPeer::connect(&bad).unwrap();
    p.handshake(0, "hostile").unwrap();
    s.sw.wait_link("bad", true, LINK).unwrap();
    let f = eth_frame([0xff; 6], mac("02:00:00:00:00:66"), None, 64, 1);
    let good_off = RawPeer::c2s_buf(3);
    p.write_region(good_off, &f).unwrap();
    p.write_c2s_desc(0, 0, 9, 64, RawPeer::c2s_buf(0) as u32)
        .unwrap();
    p.write_c2s_desc(1, 0, 0, 64, REGION_SIZE as u32 + 4096)
        .unwrap();
    p.write_c2s_desc(2, 0, 0, BUF_SIZE * 4, (REGION_SIZE - 100) as u32)
        .unwrap();
    p.write_c2s_desc(3, 0, 0, f.len() as u32, good_off as u32)
        .unwrap();
    p.set_c2s_head(4).unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        let st = s.sw.stats("bad");
        st.total.drop_bad_desc >= 3 && st.total.rx_packets >= 1
    });
    let st = s.sw.stats("bad");
    assert!(
        ok,
        "bad descriptors not dropped+counted, or the good one not received: {st:?}"
    );
    assert_eq!(st.total.drop_bad_desc, 3, "{st:?}");
    assert_eq!(st.total.rx_packets, 1, "{st:?}");
    // every slot was handed back, bad ones included
    assert!(
        wait_until(Duration::from_secs(2), || p.c2s_tail().unwrap() == 4),
        "tail {}",
        p.c2s_tail().unwrap()
    );
    good_flow(&s, &mut a, &mut b, &mut delivered);

    // 9. head jumps far beyond the ring size: protocol violation → disconnect (or drop), never
    //    a crash; the port accepts a well-behaved peer afterwards.
    let before = s.sw.stats("bad");
    p.set_c2s_head(4 + 1000).unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        let st = s.sw.stats("bad");
        st.disconnects > before.disconnects
            || st.control_errors > before.control_errors
            || st.total.drop_bad_desc > before.total.drop_bad_desc
    });
    assert!(ok, "head jump not detected: {:?}", s.sw.stats("bad"));
    drop(p);
    s.sw.wait_link("bad", false, LINK).unwrap();
    let mut p = RawPeer::connect(&bad).unwrap();
    p.handshake(0, "polite").unwrap();
    s.sw.wait_link("bad", true, LINK).unwrap();
    drop(p);

    good_flow(&s, &mut a, &mut b, &mut delivered);
    assert_no_drops(&s.sw.stats("g0"));
    assert_no_drops(&s.sw.stats("g1"));
    assert!(
        s.sw.pid() > 0 && std::path::Path::new(&format!("/proc/{}", s.sw.pid())).exists(),
        "uswitchd died"
    );
    let _ = errs;
}
