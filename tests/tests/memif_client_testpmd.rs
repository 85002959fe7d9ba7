//! uswitch memif **client** ports connecting to testpmd memif **servers** (uswitch allocates
//! the shared memory), traffic in both directions with exact counts.
use std::time::Duration;
use uswitch_e2e::scenario::{assert_no_drops, mac_of, send_and_settle, Switch, BURST};
use uswitch_e2e::{e2e_lock, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);

#[test]
fn client_role_both_directions() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("cli");
    // testpmd servers first (uswitch clients retry with backoff anyway).
    let mut a = TestpmdBuilder::new("cli-a")
        .memif_server(&s.sock_str("a"), &mac_of(0))
        .eth_peer(0, &mac_of(1))
        .start()
        .unwrap();
    let mut b = TestpmdBuilder::new("cli-b")
        .memif_server(&s.sock_str("b"), &mac_of(1))
        .eth_peer(0, &mac_of(0))
        .start()
        .unwrap();
    s.add_port("a", "client", &[]);
    s.add_port("b", "client", &[]);
    s.sw.wait_link("a", true, LINK).unwrap();
    s.sw.wait_link("b", true, LINK).unwrap();
    a.wait_link_up(LINK).unwrap();
    b.wait_link_up(LINK).unwrap();

    // Memory backing is reported for client ports (uswitch owns the regions).
    let show = s.sw.show();
    let pa = show
        .ports
        .iter()
        .find(|p| p.config.name == "a")
        .expect("port a in show");
    let backing = pa
        .info
        .details
        .values()
        .any(|v| v == "hugetlbfs" || v == "memfd-4k");
    assert!(
        backing,
        "client port should report hugetlbfs or memfd-4k: {:?}",
        pa.info.details
    );

    a.start_fwd().unwrap();
    b.start_fwd().unwrap();
    // a → b
    let want = 60 * 4 * BURST;
    let out_b = send_and_settle(&s.sw, &mut a, 60, 4, "b", want);
    let rb = b
        .wait_stats(0, Duration::from_secs(5), |c| c.rx_packets >= want)
        .unwrap();
    let ta = a.stats(0).unwrap();
    assert_eq!(ta.tx_packets, want, "a sent");
    assert_eq!(out_b, want, "uswitch tx on b");
    assert_eq!(rb.rx_packets, want, "b received");
    // b → a (b's MAC now known on port b, a's on port a)
    let want2 = 40 * 4 * BURST;
    let out_a = send_and_settle(&s.sw, &mut b, 40, 4, "a", want2);
    let ra = a
        .wait_stats(0, Duration::from_secs(5), |c| c.rx_packets >= want2)
        .unwrap();
    assert_eq!(out_a, want2, "uswitch tx on a");
    assert_eq!(ra.rx_packets, want2, "a received");
    assert_eq!(ra.rx_bytes, b.stats(0).unwrap().tx_bytes);
    let (sa, sb) = (s.sw.stats("a"), s.sw.stats("b"));
    assert_eq!(sa.total.rx_packets, want);
    assert_eq!(sb.total.rx_packets, want2);
    assert_no_drops(&sa);
    assert_no_drops(&sb);
}
