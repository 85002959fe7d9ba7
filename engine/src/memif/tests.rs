//! In-process tests of the memif port: a client-role and a server-role [`MemifPort`] talking to
//! each other over a real socket and shared memory.
use crate::config::{MemifConfig, MemifMode, MemifRole};
use crate::memif::MemifPort;
use crate::port::{PktRef, Port};
use std::time::{Duration, Instant};

pub(crate) fn cfg(socket: &str, role: MemifRole, queues: u16) -> MemifConfig {
    MemifConfig {
        socket: socket.to_string(),
        role,
        id: 7,
        secret: None,
        queues,
        ring_size: 6,
        max_ring_size: None,
        buffer_size: 2048,
        mode: MemifMode::Ethernet,
    }
}

/// Polls both ports until both links are up (or panics after 3 s).
pub(crate) fn bring_up(a: &mut MemifPort, b: &mut MemifPort) {
    let t0 = Instant::now();
    while !(a.link_up() && b.link_up()) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "link did not come up: {:?} / {:?}",
            a.stats(),
            b.stats()
        );
        let now = Instant::now();
        a.poll_control(now);
        b.poll_control(now);
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub(crate) fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub(crate) use crate::port::test_util::send;

/// Receives everything pending on `port` queue `q` (copying bytes out), then releases.
pub(crate) fn recv(port: &mut MemifPort, q: usize) -> Vec<Vec<u8>> {
    let mut out = vec![PktRef::default(); 64];
    let mut got = Vec::new();
    loop {
        let n = port.rx_burst(q, &mut out);
        for p in &out[..n] {
            assert_eq!(p.queue as usize, q);
            let mut v = vec![0u8; p.len() as usize];
            let mut o = 0;
            for s in p.segs() {
                o += s.read(0, &mut v[o..]);
            }
            got.push(v);
        }
        port.rx_release(q);
        if n == 0 {
            return got;
        }
    }
}

fn loopback(socket: &str) {
    let mut server = MemifPort::new("srv", &cfg(socket, MemifRole::Server, 2)).unwrap();
    let mut client = MemifPort::new("cli", &cfg(socket, MemifRole::Client, 2)).unwrap();
    assert!(!server.link_up() && !client.link_up());
    bring_up(&mut server, &mut client);
    assert_eq!((server.rx_queues(), server.tx_queues()), (2, 2));
    assert_eq!((client.rx_queues(), client.tx_queues()), (2, 2));
    let info = client.info();
    assert_eq!(info.kind, "memif");
    assert_eq!(info.peer_name.as_deref(), Some("uswitch"));
    assert!(matches!(
        info.details["memory"].as_str(),
        Some("memfd-4k" | "hugetlbfs")
    ));
    assert_eq!(server.info().details["memory"], "peer");
    assert_eq!(server.info().details["peer_if_name"], "cli");

    let frames = vec![
        payload(60, 1),
        payload(1500, 2),
        payload(9000, 3),
        payload(2048, 4),
        payload(2049, 5),
    ];
    for q in 0..2 {
        // client -> server
        assert_eq!(send(&mut client, q, &frames), frames.len());
        assert_eq!(recv(&mut server, q), frames, "c2s queue {q}");
        // server -> client
        assert_eq!(send(&mut server, q, &frames), frames.len());
        assert_eq!(recv(&mut client, q), frames, "s2c queue {q}");
    }
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let (ss, cs) = (server.stats(), client.stats());
    assert_eq!(ss.total.rx_packets, 10);
    assert_eq!(ss.total.rx_bytes, 2 * bytes);
    assert_eq!(ss.total.tx_packets, 10);
    assert_eq!(cs.total.rx_packets, 10);
    assert_eq!(cs.queues[1].tx_bytes, bytes);
    assert_eq!(ss.total.drop_bad_desc + cs.total.drop_bad_desc, 0);
    assert_eq!(
        (
            ss.connects,
            cs.connects,
            ss.control_errors,
            cs.control_errors
        ),
        (1, 1, 0, 0)
    );

    // Many bursts through the 64-slot rings: counters wrap the ring many times, and a full ring
    // drops (and counts) instead of blocking.
    let small: Vec<Vec<u8>> = (0..40).map(|i| payload(64 + i, i as u8)).collect();
    for round in 0..50 {
        assert_eq!(send(&mut client, 0, &small), 40, "round {round}");
        assert_eq!(recv(&mut server, 0), small);
        assert_eq!(send(&mut server, 1, &small), 40);
        assert_eq!(recv(&mut client, 1), small);
    }
    let big: Vec<Vec<u8>> = (0..100).map(|_| payload(100, 9)).collect();
    assert_eq!(send(&mut client, 0, &big), 64);
    assert_eq!(client.stats().queues[0].drop_ring_full, 36);
    assert_eq!(recv(&mut server, 0).len(), 64);
    assert_eq!(send(&mut server, 0, &big), 64);
    assert_eq!(server.stats().queues[0].drop_ring_full, 36);
    assert_eq!(recv(&mut client, 0).len(), 64);

    // Client goes away: server link drops, regions unmapped; a new client connects.
    drop(client);
    let t0 = Instant::now();
    while server.link_up() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for link down"
        );
        server.poll_control(Instant::now());
    }
    assert_eq!(server.stats().disconnects, 1);
    let mut client = MemifPort::new("cli2", &cfg(socket, MemifRole::Client, 1)).unwrap();
    bring_up(&mut server, &mut client);
    assert_eq!(
        server.rx_queues(),
        1,
        "negotiated down to the client's queue count"
    );
    assert_eq!(send(&mut client, 0, &frames[..1]), 1);
    assert_eq!(recv(&mut server, 0), frames[..1].to_vec());
}

#[test]
fn loopback_filesystem_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/memif.sock");
    loopback(sock.to_str().unwrap());
    assert!(!sock.exists(), "server removes its socket file on drop");
}

#[test]
fn loopback_abstract_socket() {
    loopback(&format!("@uswitch-test-loop-{}", std::process::id()));
}

#[test]
fn client_reconnects_after_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("m.sock");
    let s = sock.to_str().unwrap();
    let mut client = MemifPort::new("cli", &cfg(s, MemifRole::Client, 1)).unwrap();
    // No server yet: the client backs off quietly.
    for _ in 0..5 {
        client.poll_control(Instant::now());
    }
    assert!(!client.link_up());
    let mut server = MemifPort::new("srv", &cfg(s, MemifRole::Server, 1)).unwrap();
    bring_up(&mut server, &mut client);
    drop(server);
    let t0 = Instant::now();
    while client.link_up() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for link down"
        );
        client.poll_control(Instant::now());
    }
    let mut server = MemifPort::new("srv", &cfg(s, MemifRole::Server, 1)).unwrap();
    bring_up(&mut server, &mut client);
    assert_eq!(client.stats().connects, 2);
    assert_eq!(client.stats().disconnects, 1);
}

#[test]
fn secret_and_id_must_match() {
    let name = format!("@uswitch-test-secret-{}", std::process::id());
    let mut scfg = cfg(&name, MemifRole::Server, 1);
    scfg.secret = Some("sesame".into());
    let mut server = MemifPort::new("srv", &scfg).unwrap();
    let mut ccfg = cfg(&name, MemifRole::Client, 1);
    ccfg.secret = Some("wrong".into());
    let mut client = MemifPort::new("cli", &ccfg).unwrap();
    let t0 = Instant::now();
    while server.stats().control_errors == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for link down"
        );
        server.poll_control(Instant::now());
        client.poll_control(Instant::now());
    }
    assert_eq!(
        server.stats().last_disconnect_reason.as_deref(),
        Some("Incorrect secret")
    );
    assert!(!server.link_up());
    drop(client);
    let mut ccfg = cfg(&name, MemifRole::Client, 1);
    ccfg.secret = Some("sesame".into());
    let mut client = MemifPort::new("cli", &ccfg).unwrap();
    bring_up(&mut server, &mut client);
}

/// More than 65536 slots through 64-slot rings in both directions: the free-running u16
/// counters wrap and nothing is lost or reordered.
#[test]
fn counters_wrap_past_u16() {
    let name = format!("@uswitch-test-wrap-{}", std::process::id());
    let mut server = MemifPort::new("srv", &cfg(&name, MemifRole::Server, 1)).unwrap();
    let mut client = MemifPort::new("cli", &cfg(&name, MemifRole::Client, 1)).unwrap();
    bring_up(&mut server, &mut client);
    let burst: Vec<Vec<u8>> = (0..48).map(|i| payload(60 + i, i as u8)).collect();
    for _ in 0..1400 {
        assert_eq!(send(&mut client, 0, &burst), 48);
        assert_eq!(recv(&mut server, 0).len(), 48);
        assert_eq!(send(&mut server, 0, &burst), 48);
        assert_eq!(recv(&mut client, 0).len(), 48);
    }
    // A final check of content after the wrap.
    assert_eq!(send(&mut client, 0, &burst), 48);
    assert_eq!(recv(&mut server, 0), burst);
    let (s, c) = (server.stats(), client.stats());
    assert_eq!(s.total.rx_packets, 1401 * 48);
    assert_eq!(c.total.rx_packets, 1400 * 48);
    assert_eq!(s.total.drop_ring_full + c.total.drop_ring_full, 0);
    assert!(server.link_up() && client.link_up());
}

/// One burst mixing the transmit fast path (unedited one-segment packets) with everything that
/// takes the general path (VLAN edits, multi-segment sources, packets larger than one buffer,
/// an index outside the burst), in both roles: bytes, order and counters as if every packet
/// went the general way.
#[test]
fn fast_and_general_paths_mix_in_one_burst() {
    use crate::port::{TxItem, VlanEdit};
    use crate::shm::HeapBuf;
    let name = format!("@uswitch-test-mix-{}", std::process::id());
    let mut server = MemifPort::new("srv", &cfg(&name, MemifRole::Server, 1)).unwrap();
    let mut client = MemifPort::new("cli", &cfg(&name, MemifRole::Client, 1)).unwrap();
    bring_up(&mut server, &mut client);
    let a = payload(64, 1);
    let b = payload(3000, 2);
    let mut heap = HeapBuf::new(a.len() + b.len());
    heap.bytes_mut()[..64].copy_from_slice(&a);
    heap.bytes_mut()[64..].copy_from_slice(&b);
    let mut pkts = vec![PktRef::default(); 3];
    assert!(pkts[0].push_seg(heap.seg(0, 64).unwrap()));
    // pkts[1]: `a` again, in two segments (general path although unedited).
    assert!(pkts[1].push_seg(heap.seg(0, 20).unwrap()));
    assert!(pkts[1].push_seg(heap.seg(20, 44).unwrap()));
    // pkts[2]: 3000 bytes in one segment: larger than a 2048-byte buffer, so it is chained.
    assert!(pkts[2].push_seg(heap.seg(64, 3000).unwrap()));
    let item = |idx: u16, edit| TxItem { idx, edit };
    let items = [
        item(0, VlanEdit::Keep),
        item(0, VlanEdit::Push(0x0123)),
        item(1, VlanEdit::Keep),
        item(9, VlanEdit::Keep), // outside the burst: counted as no_buffer
        item(2, VlanEdit::Keep),
        item(0, VlanEdit::Keep),
    ];
    let mut pushed = a[..12].to_vec();
    pushed.extend_from_slice(&[0x81, 0, 0x01, 0x23]);
    pushed.extend_from_slice(&a[12..]);
    let want = vec![a.clone(), pushed, a.clone(), b.clone(), a.clone()];
    let wbytes: u64 = want.iter().map(|f| f.len() as u64).sum();
    for c2s in [true, false] {
        let (tx, rx) = if c2s {
            (&mut client, &mut server)
        } else {
            (&mut server, &mut client)
        };
        assert_eq!(tx.tx_burst(0, &pkts, &items), 5);
        assert_eq!(recv(rx, 0), want);
        let st = tx.stats().total;
        assert_eq!(
            (st.tx_packets, st.tx_bytes, st.drop_no_buffer),
            (5, wbytes, 1)
        );
        let st = rx.stats().total;
        assert_eq!(
            (st.rx_packets, st.rx_bytes, st.drop_bad_desc),
            (5, wbytes, 0)
        );
    }
}
