//! MAC learning: three ports on a bridge. a sends to b's (unknown) MAC → flooded to b and c.
//! b answers a → a's MAC is known, only a gets it. a sends to b again → only b gets it (the
//! flood stopped; c's counter does not move). `fdb show` lists both MACs on the right ports.
use std::time::Duration;
use uswitch_e2e::scenario::{mac_of, send_and_settle, Switch, BURST};
use uswitch_e2e::{e2e_lock, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);

#[test]
fn learn_both_ways_then_flood_stops() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("learn");
    for p in ["a", "b", "c"] {
        s.add_port(p, "server", &[]);
    }
    let mut tp = Vec::new();
    for (i, p) in ["a", "b", "c"].iter().enumerate() {
        let peer = if i == 0 { mac_of(1) } else { mac_of(0) };
        let mut t = TestpmdBuilder::new(&format!("learn-{p}"))
            .memif_client(&s.sock_str(p), &mac_of(i))
            .eth_peer(0, &peer)
            .start()
            .unwrap();
        t.wait_link_up(LINK).unwrap();
        s.sw.wait_link(p, true, LINK).unwrap();
        t.start_fwd().unwrap();
        tp.push(t);
    }
    assert!(
        s.sw.fdb("br0").is_empty(),
        "fdb should start empty: {:?}",
        s.sw.fdb("br0")
    );

    // 1. a → b (unknown): flooded to b and c.
    let n = 10 * 2 * BURST;
    let to_b = send_and_settle(&s.sw, &mut tp[0], 10, 2, "b", n);
    assert_eq!(to_b, n, "flood to b");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.sw.stats("c").total.tx_packets, n, "flood to c");

    // 2. b → a: a's MAC was learned on port a: only a receives.
    let to_a = send_and_settle(&s.sw, &mut tp[1], 10, 2, "a", n);
    assert_eq!(to_a, n);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.sw.stats("c").total.tx_packets,
        n,
        "c must not get b→a traffic"
    );

    let fdb = s.sw.fdb("br0");
    let port_of = |m: &str| {
        fdb.iter()
            .find(|e| e.mac.eq_ignore_ascii_case(m))
            .map(|e| e.port.clone())
    };
    assert_eq!(port_of(&mac_of(0)).as_deref(), Some("a"), "fdb: {fdb:?}");
    assert_eq!(port_of(&mac_of(1)).as_deref(), Some("b"), "fdb: {fdb:?}");
    assert!(fdb.iter().all(|e| e.age_secs < 60), "{fdb:?}");

    // 3. a → b again: b is known now, the flood stops.
    let to_b2 = send_and_settle(&s.sw, &mut tp[0], 10, 2, "b", n);
    assert_eq!(to_b2, n);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.sw.stats("c").total.tx_packets, n, "flood did not stop");
    let rc = tp[2].stats(0).unwrap();
    assert_eq!(rc.rx_packets, n, "c's testpmd saw only the first flood");
    let rb = tp[1].stats(0).unwrap();
    assert_eq!(rb.rx_packets, 2 * n);
}
