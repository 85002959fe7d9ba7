//! VLANs: ports a and b are access 10, c is access 20, t is a trunk for 10 and 20.
//! Every peer is a testpmd whose memif port is io-forwarded to a pcap port: it replays the
//! frames of its `in.pcap` into the switch once, and writes what the switch delivers to its
//! `out.pcap`, so exact frames (and their tags) are checked.
//!
//! Expected: a's untagged broadcast reaches b untagged and t tagged 10, never c; c's reaches
//! only t, tagged 20; t's frames tagged 10 reach a and b untagged, tagged 20 reach c untagged,
//! tagged 30 (not allowed) reach nobody.
use std::path::PathBuf;
use std::time::Duration;
use uswitch_e2e::frames::{eth_frame, mac, read_pcap, vlan_of, write_pcap};
use uswitch_e2e::scenario::{mac_of, Switch};
use uswitch_e2e::{e2e_lock, wait_until, Testpmd, TestpmdBuilder};

const LINK: Duration = Duration::from_secs(15);
const BCAST: [u8; 6] = [0xff; 6];

struct Peer {
    t: Testpmd,
}

fn peer(s: &Switch, name: &str, idx: usize, frames: &[Vec<u8>]) -> Peer {
    let inp = s.dir.path().join(format!("{name}-in.pcap"));
    let out: PathBuf = s.dir.path().join(format!("{name}-out.pcap"));
    write_pcap(&inp, frames).unwrap();
    let mut t = TestpmdBuilder::new(&format!("vlan-{name}"))
        .memif_client(&s.sock_str(name), &mac_of(idx))
        .pcap(&inp, &out)
        .forward_mode("io")
        .start()
        .unwrap();
    t.wait_link_up(LINK).unwrap();
    s.sw.wait_link(name, true, LINK).unwrap();
    Peer { t }
}

#[test]
fn access_and_trunk() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("vlan");
    s.add_port("a", "server", &["--vlan", "10"]);
    s.add_port("b", "server", &["--vlan", "10"]);
    s.add_port("c", "server", &["--vlan", "20"]);
    s.add_port("t", "server", &["--trunk", "10,20"]);
    let (ma, mc, mt) = (mac(&mac_of(0)), mac(&mac_of(2)), mac(&mac_of(3)));
    let from_a: Vec<_> = (0..5).map(|i| eth_frame(BCAST, ma, None, 64, i)).collect();
    let from_c: Vec<_> = (0..4)
        .map(|i| eth_frame(BCAST, mc, None, 64, 0x40 + i))
        .collect();
    let mut from_t: Vec<_> = (0..3)
        .map(|i| eth_frame(BCAST, mt, Some(10), 68, 0x80 + i))
        .collect();
    from_t.extend((0..2).map(|i| eth_frame(BCAST, mt, Some(20), 68, 0x90 + i)));
    from_t.extend((0..2).map(|i| eth_frame(BCAST, mt, Some(30), 68, 0xa0 + i)));

    let mut a = peer(&s, "a", 0, &from_a);
    let mut b = peer(&s, "b", 1, &[]);
    let mut c = peer(&s, "c", 2, &from_c);
    let mut t = peer(&s, "t", 3, &from_t);
    // Every peer posts its receive buffers first (see Testpmd::prime_rx), then b starts, then
    // one sender at a time; wait for the switch to take each sender's frames.
    for p in [&mut a, &mut b, &mut c, &mut t] {
        p.t.prime_rx(0, "0,1", "io").unwrap();
    }
    b.t.start_fwd().unwrap();
    for (p, name, n) in [(&mut a, "a", 5u64), (&mut c, "c", 4), (&mut t, "t", 7)] {
        p.t.start_fwd().unwrap();
        let ok = wait_until(Duration::from_secs(10), || {
            s.sw.stats(name).total.rx_packets >= n
        });
        assert!(
            ok,
            "switch did not receive {n} frames from {name}: {:?}",
            s.sw.stats(name)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let stats: Vec<_> = ["a", "b", "c", "t"].iter().map(|p| s.sw.stats(p)).collect();
    for p in [a, b, c, t] {
        p.t.quit().unwrap();
    }
    let got = |name: &str| read_pcap(&s.dir.path().join(format!("{name}-out.pcap"))).unwrap();
    let (ga, gb, gc, gt) = (got("a"), got("b"), got("c"), got("t"));
    let info = format!("switch stats {stats:#?}");

    // a: only t's 3 frames of VLAN 10, untagged.
    assert_eq!(ga.len(), 3, "a got {ga:?}\n{info}");
    assert!(
        ga.iter().all(|f| vlan_of(f).is_none() && f[6..12] == mt),
        "{info}"
    );
    // b: a's 5 (untagged, byte-identical) + t's 3 VLAN-10 frames untagged.
    assert_eq!(gb.len(), 8, "b got {} frames\n{info}", gb.len());
    assert_eq!(&gb[..5], &from_a[..], "a's frames reach b unchanged");
    assert!(gb.iter().all(|f| vlan_of(f).is_none()), "{info}");
    // the popped tag: t's frame minus 4 bytes
    assert_eq!(gb[5].len(), from_t[0].len() - 4);
    assert_eq!(&gb[5][12..], &from_t[0][16..]);
    // c: only t's 2 frames of VLAN 20, untagged; nothing from a.
    assert_eq!(gc.len(), 2, "c got {gc:?}\n{info}");
    assert!(
        gc.iter().all(|f| vlan_of(f).is_none() && f[6..12] == mt),
        "{info}"
    );
    // t: a's 5 tagged 10, c's 4 tagged 20.
    assert_eq!(gt.len(), 9, "t got {} frames\n{info}", gt.len());
    assert!(
        gt[..5]
            .iter()
            .all(|f| vlan_of(f) == Some(10) && f[6..12] == ma),
        "{info}"
    );
    assert!(
        gt[5..]
            .iter()
            .all(|f| vlan_of(f) == Some(20) && f[6..12] == mc),
        "{info}"
    );
    assert_eq!(gt[0].len(), from_a[0].len() + 4);
    assert_eq!(&gt[0][16..], &from_a[0][12..]);
}
