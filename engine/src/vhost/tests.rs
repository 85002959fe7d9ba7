//! In-process tests of the vhost-user port against a Rust frontend (the rust-vmm `vhost`
//! crate's `Frontend`) that plays a hostile or well-behaved guest: it owns a memfd as "guest
//! memory", lays out split rings in it and writes descriptors directly.
use super::features as f;
use super::VhostUserPort;
use crate::config::{VhostUserConfig, VhostUserMode};
use crate::port::{PktRef, Port, TxItem, VlanEdit};
use crate::shm::MmapRegion;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

const MEM: usize = 4 << 20;
/// Frontend-virtual base of guest memory (any value: only the table maps it).
const UVA: u64 = 0x7f00_0000_0000;
/// Guest-physical base.
const GPA: u64 = 0x4000_0000;
const QSIZE: u16 = 256;

/// Offsets (inside guest memory) of ring `i`'s parts.
fn ring_offs(i: usize) -> (usize, usize, usize) {
    let base = i * 0x4000;
    (base, base + 0x1000, base + 0x2000)
}
/// Guest-physical address of buffer `n` (2 KiB each, after the rings).
fn buf_gpa(n: usize) -> u64 {
    GPA + 0x10_0000 + (n as u64) * 2048
}

struct Guest {
    mem: MmapRegion,
    fe: Frontend,
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
}

impl Guest {
    fn w(&self, off: usize, b: &[u8]) {
        self.mem.seg_mut(off, b.len()).unwrap().write(0, b);
    }
    fn r(&self, off: usize, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.seg(off, n).unwrap().read(0, &mut v);
        v
    }
    fn gpa_off(gpa: u64) -> usize {
        (gpa - GPA) as usize
    }
    fn desc(&self, ring: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let (d, _, _) = ring_offs(ring);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        self.w(d + 16 * usize::from(i), &b);
    }
    /// Puts `heads` in the avail ring of `ring` starting at avail index `from`, then publishes.
    fn avail(&self, ring: usize, from: u16, heads: &[u16]) -> u16 {
        let (_, a, _) = ring_offs(ring);
        let mut idx = from;
        for h in heads {
            self.w(a + 4 + 2 * usize::from(idx % QSIZE), &h.to_le_bytes());
            idx = idx.wrapping_add(1);
        }
        self.mem
            .atomic_u16(a + 2)
            .unwrap()
            .store(idx, Ordering::Release);
        idx
    }
    fn used_idx(&self, ring: usize) -> u16 {
        let (_, _, u) = ring_offs(ring);
        self.mem.atomic_u16(u + 2).unwrap().load(Ordering::Acquire)
    }
    fn used_elem(&self, ring: usize, slot: u16) -> (u32, u32) {
        let (_, _, u) = ring_offs(ring);
        let b = self.r(u + 4 + 8 * usize::from(slot % QSIZE), 8);
        (
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        )
    }
}

fn server(tag: &str, queues: u16) -> (tempfile::TempDir, String, VhostUserPort) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir
        .path()
        .join(format!("{tag}.sock"))
        .to_string_lossy()
        .into_owned();
    let cfg = VhostUserConfig {
        socket: sock.clone(),
        mode: VhostUserMode::Server,
        queues,
    };
    let port = VhostUserPort::new(tag, &cfg).unwrap();
    (dir, sock, port)
}

/// Runs `f` (blocking frontend calls) on a thread while polling the port like the worker does.
fn with_worker<T: Send + 'static>(
    port: &mut VhostUserPort,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let h = std::thread::spawn(f);
    while !h.is_finished() {
        port.poll_control(Instant::now());
        std::thread::sleep(Duration::from_micros(200));
    }
    for _ in 0..20 {
        port.poll_control(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    h.join().unwrap()
}

/// Connects, negotiates, sends the memory table and sets up `rings` rings. `bad_ring` gets a
/// descriptor table address outside the memory table.
fn connect(sock: &str, rings: usize, bad_ring: Option<usize>) -> Guest {
    // Unique per test (tests run in parallel) so /proc/self/maps can be counted.
    let tag: String = sock.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let (mem, _) = MmapRegion::alloc(MEM, &tag).unwrap();
    let fe = Frontend::connect(sock, rings as u64).unwrap();
    fe.set_owner().unwrap();
    let feats = fe.get_features().unwrap();
    assert_eq!(feats & f::OFFERED, f::OFFERED);
    let want = f::VERSION_1 | f::MRG_RXBUF | f::INDIRECT_DESC | f::PROTOCOL_FEATURES | f::MQ;
    fe.set_features(want).unwrap();
    let mut fe = fe;
    let pf = fe.get_protocol_features().unwrap();
    assert!(pf.contains(VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK));
    fe.set_protocol_features(VhostUserProtocolFeatures::MQ)
        .unwrap();
    // (GET_QUEUE_NUM is not sent: this frontend treats the answer as a vring count, while
    // QEMU and DPDK, like us, count queue pairs.)
    let region = VhostUserMemoryRegionInfo {
        guest_phys_addr: GPA,
        memory_size: MEM as u64,
        userspace_addr: UVA,
        mmap_offset: 0,
        mmap_handle: mem.fd().as_raw_fd(),
    };
    fe.set_mem_table(&[region]).unwrap();
    let mut kicks = Vec::new();
    let mut calls = Vec::new();
    for i in 0..rings {
        let (d, a, u) = ring_offs(i);
        let desc = if bad_ring == Some(i) {
            UVA + (MEM as u64) + 0x1000
        } else {
            UVA + d as u64
        };
        fe.set_vring_num(i, QSIZE).unwrap();
        let cfg = VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: desc,
            used_ring_addr: UVA + u as u64,
            avail_ring_addr: UVA + a as u64,
            log_addr: None,
        };
        fe.set_vring_addr(i, &cfg).unwrap();
        fe.set_vring_base(i, 0).unwrap();
        let call = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        fe.set_vring_call(i, &call).unwrap();
        fe.set_vring_kick(i, &kick).unwrap();
        fe.set_vring_enable(i, true).unwrap();
        kicks.push(kick);
        calls.push(call);
    }
    Guest {
        mem,
        fe,
        kicks,
        calls,
    }
}

fn maps_of(tag: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(tag))
        .count()
}

fn wait(port: &mut VhostUserPort, up: bool) {
    let t0 = Instant::now();
    while port.link_up() != up {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "link never became {up}"
        );
        port.poll_control(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn hostile_vring_address_is_refused_then_fixed() {
    let (_d, sock, mut port) = server("vh-hostile-addr", 1);
    let s2 = sock.clone();
    let g = with_worker(&mut port, move || connect(&s2, 2, Some(1)));
    port.poll_control(Instant::now());
    assert!(
        !port.link_up(),
        "a ring outside the memory table must not go live"
    );
    assert!(port.stats().control_errors >= 1);
    // The frontend fixes the address and restarts the ring: the link comes up.
    let (d, _, _) = ring_offs(1);
    let fe = g.fe;
    let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let (fe, _kick) = with_worker(&mut port, move || {
        let (_, a, u) = ring_offs(1);
        let cfg = VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: UVA + d as u64,
            used_ring_addr: UVA + u as u64,
            avail_ring_addr: UVA + a as u64,
            log_addr: None,
        };
        fe.set_vring_addr(1, &cfg).unwrap();
        fe.set_vring_kick(1, &kick).unwrap();
        (fe, kick)
    });
    wait(&mut port, true);
    assert_eq!(port.info().kind, "vhost-user");
    drop(fe);
    wait(&mut port, false);
}

#[test]
fn traffic_and_hostile_chains() {
    let (_d, sock, mut port) = server("vh-traffic", 1);
    let s2 = sock.clone();
    let g = with_worker(&mut port, move || connect(&s2, 2, None));
    wait(&mut port, true);
    assert_eq!((port.rx_queues(), port.tx_queues()), (1, 1));

    // Guest TX ring (1): one good packet (12-byte header + 60 bytes in a second descriptor),
    // then hostile chains.
    let frame: Vec<u8> = (0..60u8).collect();
    g.w(Guest::gpa_off(buf_gpa(0)), &[0u8; 12]);
    g.w(Guest::gpa_off(buf_gpa(1)), &frame);
    g.desc(1, 0, buf_gpa(0), 12, 1, 1);
    g.desc(1, 1, buf_gpa(1), 60, 0, 0);
    // Loop: 2 -> 3 -> 2.
    g.desc(1, 2, buf_gpa(2), 100, 1, 3);
    g.desc(1, 3, buf_gpa(3), 100, 1, 2);
    // Outside the memory table.
    g.desc(1, 4, GPA + MEM as u64 + 4096, 100, 0, 0);
    // Length running past the end of the region.
    g.desc(1, 5, GPA + MEM as u64 - 16, 0xffff_fff0, 0, 0);
    // Indirect table whose length is not a multiple of 16.
    g.desc(1, 6, buf_gpa(4), 24, 4, 0);
    // next out of range.
    g.desc(1, 7, buf_gpa(5), 100, 1, 999);
    let heads = [0u16, 2, 4, 5, 6, 7, 300];
    let n = g.avail(1, 0, &heads);
    let mut out = vec![PktRef::default(); 32];
    let got = port.rx_burst(0, &mut out);
    assert_eq!(got, 1);
    assert_eq!(out[0].len(), 60);
    let mut head = [0u8; 60];
    out[0].read_head(&mut head);
    assert_eq!(&head[..], &frame[..]);
    assert_eq!(port.stats().total.drop_bad_desc, 6);

    // Transmit it back into the guest's RX ring (0) with a VLAN push: 64 bytes + header.
    for i in 0..4u16 {
        g.desc(0, i, buf_gpa(10 + usize::from(i)), 2048, 2, 0);
    }
    g.avail(0, 0, &[0, 1, 2, 3]);
    let items = [TxItem {
        idx: 0,
        edit: VlanEdit::Push(7),
    }];
    assert_eq!(port.tx_burst(0, &out[..got], &items), 1);
    port.rx_release(0);
    assert_eq!(g.used_idx(1), n, "every tx chain, good or bad, is returned");
    assert_eq!(g.used_idx(0), 1);
    assert_eq!(g.used_elem(0, 0), (0, 12 + 64));
    let rx = g.r(Guest::gpa_off(buf_gpa(10)), 12 + 64);
    assert_eq!(u16::from_le_bytes([rx[10], rx[11]]), 1, "num_buffers");
    assert_eq!(&rx[12..24], &frame[..12]);
    assert_eq!(&rx[24..28], &[0x81, 0, 0, 7]);
    assert_eq!(&rx[28..], &frame[12..]);
    // The guest did not suppress interrupts: we signalled its call eventfd.
    assert!(g.calls[0].read().unwrap() >= 1);

    // A jumbo frame spans several 2 KiB receive buffers (MRG_RXBUF) with num_buffers set.
    let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    for (k, chunk) in big.chunks(2000).enumerate() {
        g.w(Guest::gpa_off(buf_gpa(20 + k)), chunk);
    }
    g.desc(1, 10, buf_gpa(30), 12, 1, 11);
    g.desc(1, 11, buf_gpa(20), 2000, 1, 12);
    g.desc(1, 12, buf_gpa(21), 2000, 1, 13);
    g.desc(1, 13, buf_gpa(22), 1000, 0, 0);
    g.avail(1, n, &[10]);
    let got = port.rx_burst(0, &mut out);
    assert_eq!((got, out[0].len()), (1, 5000));
    assert_eq!(
        port.tx_burst(
            0,
            &out[..1],
            &[TxItem {
                idx: 0,
                edit: VlanEdit::Keep
            }]
        ),
        1
    );
    port.rx_release(0);
    assert_eq!(g.used_idx(0), 4);
    let mut back = Vec::new();
    for slot in 1..4u16 {
        let (id, len) = g.used_elem(0, slot);
        let b = g.r(Guest::gpa_off(buf_gpa(10 + id as usize)), len as usize);
        back.extend_from_slice(if slot == 1 { &b[12..] } else { &b[..] });
        if slot == 1 {
            assert_eq!(u16::from_le_bytes([b[10], b[11]]), 3, "num_buffers");
        }
    }
    assert_eq!(back, big);

    // Ring full: no more receive buffers; drops are counted, nothing blocks.
    assert_eq!(
        port.tx_burst(
            0,
            &out[..1],
            &[TxItem {
                idx: 0,
                edit: VlanEdit::Keep
            }]
        ),
        0
    );
    assert_eq!(port.stats().total.drop_ring_full, 1);

    // A jumbo frame whose second receive chain is read-only (hostile): the packet is dropped
    // as a bad descriptor and both chains go back to the guest with length 0.
    let bad0 = port.stats().total.drop_bad_desc;
    g.desc(0, 4, buf_gpa(14), 2048, 2, 0);
    g.desc(0, 5, buf_gpa(15), 2048, 0, 0);
    g.avail(0, 4, &[4, 5]);
    assert_eq!(
        port.tx_burst(
            0,
            &out[..1],
            &[TxItem {
                idx: 0,
                edit: VlanEdit::Keep
            }]
        ),
        0
    );
    assert_eq!(port.stats().total.drop_bad_desc, bad0 + 1);
    assert_eq!(g.used_idx(0), 6);
    assert_eq!((g.used_elem(0, 4), g.used_elem(0, 5)), ((4, 0), (5, 0)));

    // A burst of only bad chains returns nothing, yet the chains go back to the guest at once
    // (the dataplane does not call rx_release after an empty burst).
    let u0 = g.used_idx(1);
    g.desc(1, 20, GPA + MEM as u64 + 4096, 100, 0, 0);
    let n = g.avail(1, n.wrapping_add(1), &[20, 20]);
    assert_eq!(port.rx_burst(0, &mut out), 0);
    assert_eq!(g.used_idx(1), u0.wrapping_add(2));

    // Avail index running more than a ring ahead: the ring is stopped, counted, no panic.
    g.avail(1, n.wrapping_add(1000), &[]);
    assert_eq!(port.rx_burst(0, &mut out), 0);
    port.rx_release(0);
    drop(g);
    wait(&mut port, false);
}

#[test]
fn reconnect_renegotiates_and_unmaps() {
    let (_d, sock, mut port) = server("vh-reconnect", 2);
    for round in 0..3 {
        let s2 = sock.clone();
        let g = with_worker(&mut port, move || connect(&s2, 4, None));
        wait(&mut port, true);
        assert_eq!(
            port.rx_queues(),
            2,
            "round {round}: both queue pairs live (MQ)"
        );
        // Our mapping of the guest memory plus the test's own.
        let tag: String = sock.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        assert_eq!(maps_of(&tag), 2, "round {round}");
        // GET_VRING_BASE stops a ring and reports where the worker stopped.
        g.desc(3, 0, buf_gpa(0), 100, 0, 0);
        g.avail(3, 0, &[0, 0, 0]);
        let mut out = vec![PktRef::default(); 8];
        assert_eq!(port.rx_burst(1, &mut out), 3);
        port.rx_release(1);
        let fe = g.fe;
        let (fe, base) = with_worker(&mut port, move || {
            let b = fe.get_vring_base(3).unwrap();
            (fe, b)
        });
        assert_eq!(base, 3);
        assert_eq!(port.rx_queues(), 1, "pair 1 lost its tx ring");
        drop(fe);
        drop(g.kicks);
        drop(g.calls);
        wait(&mut port, false);
        let t0 = Instant::now();
        while maps_of(&tag) != 1 {
            assert!(t0.elapsed() < Duration::from_secs(5), "mapping leaked");
            port.poll_control(Instant::now());
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(g.mem);
    }
    let st = port.stats();
    assert_eq!((st.connects, st.disconnects), (3, 3));
    drop(port);
    assert!(
        !std::path::Path::new(&sock).exists(),
        "server socket removed on drop"
    );
}
