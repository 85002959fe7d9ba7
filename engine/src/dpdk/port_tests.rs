//! [`DpdkPort`] against DPDK's `net_null` vdev (rx returns 64-byte packets on every poll, tx
//! frees what it gets): every mbuf comes back to the pool, counters are exact, errors are
//! typed. The EAL runs with `--no-huge` (no hugepages, no runtime files). One test function:
//! the pool is shared, so its free count is only meaningful without other DPDK tests running.
use super::port::DpdkPort;
use super::DpdkError;
use crate::config::DpdkConfig;
use crate::port::test_util::{heap_pkts, keep_items};
use crate::port::{PktRef, Port, TxItem, VlanEdit};
use std::time::Instant;

fn cfg(devargs: &str, queues: u16) -> DpdkConfig {
    DpdkConfig {
        devargs: devargs.into(),
        queues,
        ring_size: 512,
    }
}

#[test]
fn null_port_bursts_return_every_mbuf_and_errors_are_typed() {
    super::set_eal_args(
        [
            "--no-pci",
            "--no-huge",
            "--no-shconf",
            "-m",
            "128",
            "--vdev",
            "net_null9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    let mut p = DpdkPort::new("n0", &cfg("net_null0,size=64", 2)).unwrap();
    p.poll_control(Instant::now());
    assert!(p.link_up());
    assert_eq!((p.rx_queues(), p.tx_queues()), (2, 2));
    let avail0 = p.mbuf_avail();
    let info = p.info();
    assert_eq!(info.kind, "dpdk");
    assert_eq!(info.details["driver"], "net_null");
    assert_eq!(info.details["mbuf_total"], 16383);

    // rx → tx (forwarding to itself) → release, on both queues: nothing kept.
    let mut pkts = vec![PktRef::default(); 32];
    let mut moved = 0;
    for round in 0..20 {
        let q = round % 2;
        let n = p.rx_burst(q, &mut pkts);
        assert_eq!(n, 32, "net_null fills every burst");
        assert!(pkts[..n]
            .iter()
            .all(|k| k.len() == 64 && k.queue == q as u16));
        let sent = p.tx_burst(q, &pkts[..n], &keep_items(n));
        assert_eq!(sent, n);
        p.rx_release(q);
        moved += n as u64;
    }
    assert_eq!(p.mbuf_avail(), avail0, "mbufs leaked by rx/tx");
    let st = p.stats();
    assert_eq!((st.total.rx_packets, st.total.tx_packets), (moved, moved));
    assert_eq!(
        (st.total.rx_bytes, st.total.tx_bytes),
        (moved * 64, moved * 64)
    );
    assert_eq!(st.queues.len(), 2);
    assert_eq!(st.queues[1].rx_packets, moved / 2);

    // A VLAN push adds 4 bytes; an index outside the burst, a runt for Pop and a frame larger
    // than one mbuf are dropped and counted, their mbufs returned at once.
    let (_heap, src) = heap_pkts(&[vec![0xab; 60], vec![0xcd; 3000], vec![1; 10]]);
    let items = [
        TxItem {
            idx: 0,
            edit: VlanEdit::Push(0x0123),
        },
        TxItem {
            idx: 1,
            edit: VlanEdit::Keep,
        },
        TxItem {
            idx: 2,
            edit: VlanEdit::Pop,
        },
        TxItem {
            idx: 9,
            edit: VlanEdit::Keep,
        },
    ];
    p.clear_stats();
    assert_eq!(p.tx_burst(5, &src, &items), 1);
    let st = p.stats().total;
    assert_eq!((st.tx_packets, st.tx_bytes), (1, 64));
    assert_eq!((st.drop_no_buffer, st.drop_no_route), (2, 1), "{st:?}");
    assert_eq!(p.mbuf_avail(), avail0);

    // The same device again: busy (claimed), nothing changed; a missing device: not found.
    let e = DpdkPort::new("n1", &cfg("net_null0", 1)).err().unwrap();
    assert!(matches!(e, DpdkError::Busy(..)), "{e}");
    let e = DpdkPort::new("n1", &cfg("net_nosuch0", 1)).err().unwrap();
    assert!(matches!(e, DpdkError::NoDevice { .. }), "{e}");
    assert!(e.to_string().contains("net_nosuch0"), "{e}");
    assert_eq!(p.mbuf_avail(), avail0);
    // net_null keeps no mbufs in its rx rings: the whole pool is free between bursts.
    assert_eq!(avail0, 16383);
    // Dropping the port (with a burst still held) frees it; the device can be added again.
    assert_eq!(p.rx_burst(0, &mut pkts), 32);
    drop(p);
    let p = DpdkPort::new("n0", &cfg("net_null0,size=64", 1)).unwrap();
    assert_eq!(p.mbuf_avail(), avail0, "mbufs held at drop were not freed");
    drop(p);

    // A device the EAL probed itself (`--vdev net_null9`) is used as found and only stopped
    // at drop, so it can be added again (it was not detached).
    for _ in 0..2 {
        let mut q = DpdkPort::new("pre", &cfg("net_null9", 1)).unwrap();
        assert_eq!(q.info().details["attached_by_uswitch"], false);
        q.poll_control(Instant::now());
        assert!(q.link_up());
        assert_eq!(q.rx_burst(0, &mut pkts), 32);
        q.rx_release(0);
    }
}
