//! uswitch memif **server** ports with testpmd memif **clients**: a txonly sender on one port
//! and an rxonly receiver on another port of the same bridge. Exact counts: packets the
//! receiver counts == uswitch tx counter of its port == packets the sender sent, no drops at a
//! paced rate; then 2 queue pairs; then 9000-byte packets chained over 2048-byte buffers; then
//! ports with `--max-ring-size 256`, where testpmd (asking for its default 1024 slots) must
//! create 256-slot rings and the counts stay exact.
use std::time::Duration;
use uswitch_e2e::scenario::{assert_no_drops, mac_of, send_and_settle, Switch, BURST};
use uswitch_e2e::{e2e_lock, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);

fn run(tag: &str, queues: u16, txpkts: Option<&str>, rounds: u32, bursts: u32) {
    run_with(tag, queues, txpkts, rounds, bursts, None);
}

/// `max_ring`: slots given as `--max-ring-size`; both ports must then report that ring size.
fn run_with(
    tag: &str,
    queues: u16,
    txpkts: Option<&str>,
    rounds: u32,
    bursts: u32,
    max_ring: Option<u32>,
) {
    let _l = e2e_lock();
    let s = Switch::with_bridge(tag);
    let q = queues.to_string();
    let max = max_ring.map(|m| m.to_string());
    let mut args = vec!["--queues", &q];
    if let Some(m) = &max {
        args.extend(["--max-ring-size", m]);
    }
    s.add_port("tx0", "server", &args);
    s.add_port("rx0", "server", &args);
    let mut txb = TestpmdBuilder::new(&format!("{tag}-tx"))
        .memif_client(&s.sock_str("tx0"), &mac_of(0))
        .eth_peer(0, &mac_of(1))
        .queues(queues);
    if queues > 1 {
        txb = txb.multi_flow();
    }
    if let Some(t) = txpkts {
        txb = txb.txpkts(t);
    }
    let mut tx = txb.start().unwrap();
    let mut rx = TestpmdBuilder::new(&format!("{tag}-rx"))
        .memif_client(&s.sock_str("rx0"), &mac_of(1))
        .queues(queues)
        .start()
        .unwrap();
    tx.wait_link_up(LINK).unwrap();
    rx.wait_link_up(LINK).unwrap();
    s.sw.wait_link("tx0", true, LINK).unwrap();
    s.sw.wait_link("rx0", true, LINK).unwrap();
    rx.start_fwd().unwrap();
    if let Some(m) = max_ring {
        let show = s.sw.show();
        for p in show.ports {
            let d = &p.info.details;
            assert_eq!(
                d["ring_size"], m,
                "{}: testpmd's ring size {d:?}",
                p.config.name
            );
            assert_eq!(d["max_ring_size"], m, "{}: {d:?}", p.config.name);
        }
    }

    let streams = queues as u64;
    let want = rounds as u64 * bursts as u64 * BURST * streams;
    let sent_by_switch = send_and_settle(&s.sw, &mut tx, rounds, bursts, "rx0", want);
    let t = tx
        .wait_stats(0, Duration::from_secs(5), |c| c.tx_packets >= want)
        .unwrap();
    let r = rx
        .wait_stats(0, Duration::from_secs(5), |c| c.rx_packets >= want)
        .unwrap();
    let in_port = s.sw.stats("tx0");
    let out_port = s.sw.stats("rx0");
    let info = format!(
        "testpmd tx {t:?}\ntestpmd rx {r:?}\nuswitch tx0 {in_port:?}\nuswitch rx0 {out_port:?}"
    );
    assert_eq!(t.tx_packets, want, "sender did not send everything\n{info}");
    assert_eq!(in_port.total.rx_packets, want, "uswitch rx counter\n{info}");
    assert_eq!(sent_by_switch, want, "uswitch tx counter\n{info}");
    assert_eq!(
        r.rx_packets, out_port.total.tx_packets,
        "receiver count != uswitch tx counter\n{info}"
    );
    assert_eq!(r.rx_bytes, t.tx_bytes, "bytes changed on the way\n{info}");
    assert_no_drops(&in_port);
    assert_no_drops(&out_port);
    assert_eq!(r.rx_missed + r.rx_errors + r.rx_nombuf, 0, "{info}");
    if queues > 1 {
        let busy = in_port.queues.iter().filter(|q| q.rx_packets > 0).count();
        assert_eq!(in_port.queues.len(), queues as usize, "{info}");
        assert_eq!(
            busy, queues as usize,
            "every rx queue of tx0 should carry traffic\n{info}"
        );
    }
    if let Some(t) = txpkts {
        let len: u64 = t.split(',').map(|x| x.parse::<u64>().unwrap()).sum();
        assert_eq!(r.rx_bytes, want * len, "{info}");
    }
}

#[test]
fn paced_64b_exact_counts_no_drops() {
    run("srv1q", 1, None, 100, 4);
}

#[test]
fn multi_queue_two_pairs() {
    run("srv2q", 2, None, 50, 4);
}

#[test]
fn jumbo_9000_chained() {
    run("srvjumbo", 1, Some("2048,2048,2048,2048,808"), 30, 1);
}

#[test]
fn max_ring_size_256_shrinks_the_clients_rings() {
    run_with("srvmaxring", 1, None, 100, 4, Some(256));
}
