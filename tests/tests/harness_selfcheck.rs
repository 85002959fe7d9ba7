//! Proves the harness itself, without uswitch: testpmd (memif server) ↔ testpmd (memif
//! client), exact packet counts in both directions, chained jumbo frames, and pcap replay.
use std::time::Duration;
use uswitch_e2e::{e2e_lock, frames, temp_dir, TestpmdBuilder};

const MAC_A: &str = "02:00:00:00:0a:01";
const MAC_B: &str = "02:00:00:00:0b:01";

#[test]
fn testpmd_pair_exact_counts_both_directions() {
    let _l = e2e_lock();
    let dir = temp_dir("self");
    let sock = dir.path().join("pair.sock");
    let sock = sock.to_str().unwrap();
    let mut srv = TestpmdBuilder::new("selfsrv")
        .memif_server(sock, MAC_A)
        .eth_peer(0, MAC_B)
        .start()
        .unwrap();
    let mut cli = TestpmdBuilder::new("selfcli")
        .memif_client(sock, MAC_B)
        .eth_peer(0, MAC_A)
        .start()
        .unwrap();
    cli.wait_link_up(Duration::from_secs(10)).unwrap();
    srv.wait_link_up(Duration::from_secs(10)).unwrap();
    srv.start_fwd().unwrap();
    cli.start_fwd().unwrap();

    // client → server: 20 rounds × 4 bursts × 32 packets.
    cli.send_paced(20, 4, Duration::from_millis(5)).unwrap();
    let want = 20 * 4 * 32;
    let c = cli
        .wait_stats(0, Duration::from_secs(5), |s| s.tx_packets >= want)
        .unwrap();
    assert_eq!(c.tx_packets, want, "client sent {c:?}");
    let s = srv
        .wait_stats(0, Duration::from_secs(5), |s| s.rx_packets >= want)
        .unwrap();
    assert_eq!(s.rx_packets, want, "server received {s:?}");
    assert_eq!(s.rx_bytes, c.tx_bytes);

    // server → client.
    srv.send_paced(10, 2, Duration::from_millis(5)).unwrap();
    let want2 = 10 * 2 * 32;
    let s = srv
        .wait_stats(0, Duration::from_secs(5), |s| s.tx_packets >= want2)
        .unwrap();
    assert_eq!(s.tx_packets, want2);
    let c = cli
        .wait_stats(0, Duration::from_secs(5), |s| s.rx_packets >= want2)
        .unwrap();
    assert_eq!(c.rx_packets, want2);
    assert_eq!(c.rx_bytes, s.tx_bytes);
}

#[test]
fn testpmd_pair_chained_jumbo() {
    let _l = e2e_lock();
    let dir = temp_dir("selfj");
    let sock = dir.path().join("j.sock");
    let sock = sock.to_str().unwrap();
    let mut srv = TestpmdBuilder::new("selfjsrv")
        .memif_server(sock, MAC_A)
        .start()
        .unwrap();
    let mut cli = TestpmdBuilder::new("selfjcli")
        .memif_client(sock, MAC_B)
        .eth_peer(0, MAC_A)
        .txpkts("2048,2048,2048,2048,808")
        .start()
        .unwrap();
    cli.wait_link_up(Duration::from_secs(10)).unwrap();
    srv.wait_link_up(Duration::from_secs(10)).unwrap();
    srv.start_fwd().unwrap();
    cli.send_paced(10, 1, Duration::from_millis(10)).unwrap();
    let want = 10 * 32;
    let s = srv
        .wait_stats(0, Duration::from_secs(5), |s| s.rx_packets >= want)
        .unwrap();
    assert_eq!(s.rx_packets, want, "{s:?}\n{}", srv.tail());
    assert_eq!(s.rx_bytes, want * 9000);
}

#[test]
fn pcap_replay_through_memif() {
    let _l = e2e_lock();
    let dir = temp_dir("selfp");
    let sock = dir.path().join("p.sock");
    let sock = sock.to_str().unwrap();
    let (in_a, out_a) = (dir.path().join("a-in.pcap"), dir.path().join("a-out.pcap"));
    let (in_b, out_b) = (dir.path().join("b-in.pcap"), dir.path().join("b-out.pcap"));
    let a = frames::mac(MAC_A);
    let b = frames::mac(MAC_B);
    let sent: Vec<Vec<u8>> = (0..10u16)
        .map(|i| frames::eth_frame(b, a, Some(100 + i), 128, i as u8))
        .collect();
    frames::write_pcap(&in_a, &sent).unwrap();
    frames::write_pcap(&in_b, &[]).unwrap();
    // Receiver: memif server port 0 ⇄ pcap port 1; io forwarding writes what memif receives.
    let mut rx = TestpmdBuilder::new("selfprx")
        .memif_server(sock, MAC_B)
        .pcap(&in_b, &out_b)
        .forward_mode("io")
        .start()
        .unwrap();

    let mut tx = TestpmdBuilder::new("selfptx")
        .memif_client(sock, MAC_A)
        .pcap(&in_a, &out_a)
        .forward_mode("io")
        .start()
        .unwrap();
    tx.wait_link_up(Duration::from_secs(10)).unwrap();
    rx.start_fwd().unwrap();
    tx.start_fwd().unwrap();
    tx.wait_stats(0, Duration::from_secs(5), |s| s.tx_packets >= 10)
        .unwrap();
    rx.wait_stats(0, Duration::from_secs(5), |s| s.rx_packets >= 10)
        .unwrap();
    rx.wait_stats(1, Duration::from_secs(5), |s| s.tx_packets >= 10)
        .unwrap();
    tx.quit().unwrap();
    rx.quit().unwrap();
    let got = frames::read_pcap(&out_b).unwrap();
    assert_eq!(got, sent);
}

/// The raw memif peer used by the hostile-peer tests is a correct memif client: DPDK accepts
/// its handshake and receives a frame it writes into the C2S ring.
#[test]
fn raw_memif_peer_talks_to_testpmd() {
    use uswitch_e2e::memif_peer::RawPeer;
    let _l = e2e_lock();
    let dir = temp_dir("selfraw");
    let sock = dir.path().join("raw.sock");
    let mut srv = TestpmdBuilder::new("selfraw")
        .memif_server(sock.to_str().unwrap(), MAC_A)
        .start()
        .unwrap();
    srv.start_fwd().unwrap();
    let mut p = RawPeer::connect(&sock).unwrap();
    p.handshake(0, "raw").unwrap();
    srv.wait_link_up(Duration::from_secs(10)).unwrap();
    let f = frames::eth_frame([0xff; 6], frames::mac(MAC_B), None, 100, 7);
    for slot in 0..5u32 {
        p.write_region(RawPeer::c2s_buf(slot), &f).unwrap();
        p.write_c2s_desc(slot, 0, 0, f.len() as u32, RawPeer::c2s_buf(slot) as u32)
            .unwrap();
    }
    p.set_c2s_head(5).unwrap();
    let s = srv
        .wait_stats(0, Duration::from_secs(5), |s| s.rx_packets >= 5)
        .unwrap();
    assert_eq!((s.rx_packets, s.rx_bytes), (5, 500));
    assert!(uswitch_e2e::wait_until(Duration::from_secs(2), || p
        .c2s_tail()
        .unwrap()
        == 5));
}
