//! Ring-layer tests over anonymous memory laid out like the kernel's rings: well-formed
//! blocks (multi-block bursts, VLAN reinsertion, checksum completion, truncation) and hostile
//! headers (every offset and length out of range, random garbage), none of which may panic
//! or leave a block held.
use super::*;
use crate::port::VlanEdit;

const BS: usize = 16384;
const NB: usize = 4;

fn geo() -> Geometry {
    Geometry {
        rx_block_size: BS,
        rx_blocks: NB,
        tx_frame_size: 2048,
        tx_frames: 4,
        tx_block_size: 8192,
    }
}

fn map() -> RingMap {
    let g = geo();
    RingMap::anonymous(g.rx_bytes() + g.tx_bytes()).unwrap()
}

fn put_u32(m: &RingMap, off: usize, v: u32) {
    assert!(m.write(off, &v.to_ne_bytes()));
}
fn put_u16(m: &RingMap, off: usize, v: u16) {
    assert!(m.write(off, &v.to_ne_bytes()));
}

/// Where the kernel puts the MAC header of a packet with a vnet header: netoff =
/// ALIGN16(68 + 16) + 10 = 106, mac = netoff - 14.
const MAC: usize = 92;

struct Pkt {
    frame: Vec<u8>,
    /// tp_len (defaults to the frame length).
    len: Option<u32>,
    status: u32,
    vlan: Option<(u16, u16)>,
    vnet: [u8; 10],
}

fn pkt(frame: Vec<u8>) -> Pkt {
    Pkt {
        frame,
        len: None,
        status: libc::TP_STATUS_USER,
        vlan: None,
        vnet: [0; 10],
    }
}

/// Writes a closed block like `prb_close_block` leaves it. Returns the block's used length.
fn block(m: &RingMap, idx: usize, pkts: &[Pkt]) -> usize {
    let base = idx * BS;
    let mut off = BLOCK_HDR_LEN;
    for (i, p) in pkts.iter().enumerate() {
        let a = base + off;
        let snap = p.frame.len();
        let total = (MAC + snap + 7) & !7;
        let next = if i + 1 == pkts.len() { 0 } else { total };
        put_u32(m, a + PH_NEXT, next as u32);
        put_u32(m, a + PH_SNAPLEN, snap as u32);
        put_u32(m, a + PH_LEN, p.len.unwrap_or(snap as u32));
        let mut st = p.status;
        if let Some((tpid, tci)) = p.vlan {
            st |= libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
            put_u32(m, a + PH_VLAN_TCI, u32::from(tci));
            put_u16(m, a + PH_VLAN_TPID, tpid);
        }
        put_u32(m, a + PH_STATUS, st);
        put_u16(m, a + PH_MAC, MAC as u16);
        assert!(m.write(a + MAC - VNET_HDR_LEN, &p.vnet));
        assert!(m.write(a + MAC, &p.frame));
        off += total;
    }
    put_u32(m, base + BLK_NUM_PKTS, pkts.len() as u32);
    put_u32(m, base + BLK_FIRST, BLOCK_HDR_LEN as u32);
    put_u32(m, base + BLK_LEN, off as u32);
    assert!(m.store_status(base + BLK_STATUS, libc::TP_STATUS_USER));
    off
}

fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ tag).collect();
    if len >= 14 {
        f[12] = 0x08;
        f[13] = 0x00;
    }
    f
}

fn bytes(s: &Seg) -> Vec<u8> {
    let mut v = vec![0u8; s.len() as usize];
    assert_eq!(s.read(0, &mut v), v.len());
    v
}

fn status(m: &RingMap, idx: usize) -> u32 {
    m.load_status(idx * BS + BLK_STATUS).unwrap()
}

#[test]
fn bursts_span_blocks_and_release_only_finished_ones() {
    let m = map();
    let mut rx = RxRing::new(&geo());
    let f: Vec<Vec<u8>> = (0..5).map(|i| frame(i as u8, 60 + i * 100)).collect();
    block(
        &m,
        0,
        &[pkt(f[0].clone()), pkt(f[1].clone()), pkt(f[2].clone())],
    );
    block(&m, 1, &[pkt(f[3].clone()), pkt(f[4].clone())]);
    let mut out = [PktRef::default(); 4];
    let mut st = QueueStats::default();
    assert_eq!(rx.burst(&m, &mut out, &mut st), 4);
    for (i, p) in out.iter().enumerate() {
        assert_eq!(bytes(&p.segs()[0]), f[i], "packet {i}");
    }
    assert_eq!(rx.held(), 2);
    rx.release(&m);
    // Block 0 is done; block 1 still has a packet to read, so it stays ours.
    assert_eq!(status(&m, 0), libc::TP_STATUS_KERNEL);
    assert_eq!(status(&m, 1), libc::TP_STATUS_USER);
    assert_eq!(rx.burst(&m, &mut out, &mut st), 1);
    assert_eq!(bytes(&out[0].segs()[0]), f[4]);
    rx.release(&m);
    assert_eq!(status(&m, 1), libc::TP_STATUS_KERNEL);
    assert_eq!(rx.held(), 0);
    assert_eq!((st.rx_packets, st.drop_bad_desc), (5, 0));
    let want: u64 = f.iter().map(|x| x.len() as u64).sum();
    assert_eq!(st.rx_bytes, want);
    // Nothing more until the kernel closes block 2; then the ring wraps around.
    assert_eq!(rx.burst(&m, &mut out, &mut st), 0);
    for b in [2, 3, 0] {
        block(&m, b, &[pkt(frame(b as u8, 64))]);
        assert_eq!(rx.burst(&m, &mut out, &mut st), 1);
        rx.release(&m);
        assert_eq!(status(&m, b), libc::TP_STATUS_KERNEL);
    }
}

#[test]
fn vlan_tag_is_put_back_and_checksum_completed() {
    let m = map();
    let mut rx = RxRing::new(&geo());
    // IPv4/UDP, 8 bytes of payload, checksum left partial (pseudo-header sum in the field).
    let mut f = vec![0u8; 14 + 20 + 8 + 8];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&36u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&1000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&2000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&16u16.to_be_bytes());
    f[42..50].copy_from_slice(b"payload!");
    let pseudo: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 16;
    let folded = ((pseudo & 0xffff) + (pseudo >> 16)) as u16;
    f[40..42].copy_from_slice(&folded.to_be_bytes());
    let mut p = pkt(f.clone());
    p.vlan = Some((0x8100, 10));
    p.vnet[0] = 1; // NEEDS_CSUM
    p.vnet[6..8].copy_from_slice(&34u16.to_le_bytes());
    p.vnet[8..10].copy_from_slice(&6u16.to_le_bytes());
    block(&m, 0, &[p]);
    let mut out = [PktRef::default(); 8];
    let mut st = QueueStats::default();
    assert_eq!(rx.burst(&m, &mut out, &mut st), 1);
    let got = bytes(&out[0].segs()[0]);
    assert_eq!(got.len(), f.len() + 4);
    assert_eq!(&got[..12], &f[..12]);
    assert_eq!(&got[12..16], &[0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(&got[16..40 + 4], &f[12..40]);
    // The UDP checksum now verifies: pseudo header + UDP header + payload sums to 0xffff.
    let udp_seg = &got[38..];
    let mut sum: u32 = pseudo;
    for w in udp_seg.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff);
    assert_eq!(st.drop_bad_desc, 0);
}

#[test]
fn truncated_and_oversize_frames_are_dropped_as_no_buffer() {
    let m = map();
    let mut rx = RxRing::new(&geo());
    let mut trunc = pkt(frame(1, 100));
    trunc.len = Some(64000);
    let big = pkt(frame(2, 1991)); // max_frame is 2048 - 58 = 1990
    let ok = pkt(frame(3, 1990));
    let mut tagged_big = pkt(frame(4, 1988));
    tagged_big.vlan = Some((0x8100, 5));
    block(&m, 0, &[trunc, big, ok, tagged_big]);
    let mut out = [PktRef::default(); 8];
    let mut st = QueueStats::default();
    assert_eq!(rx.burst(&m, &mut out, &mut st), 1);
    assert_eq!(out[0].len(), 1990);
    assert_eq!((st.drop_no_buffer, st.drop_bad_desc), (3, 0));
    rx.release(&m);
    assert_eq!(status(&m, 0), libc::TP_STATUS_KERNEL);
}

/// Applies `corrupt` to a fresh block of three good packets; the burst must not panic, must
/// count every packet as received or dropped, and must hold nothing when it returns 0.
fn hostile(corrupt: impl Fn(&RingMap, usize)) -> QueueStats {
    let m = map();
    let mut rx = RxRing::new(&geo());
    block(
        &m,
        0,
        &[pkt(frame(1, 80)), pkt(frame(2, 90)), pkt(frame(3, 100))],
    );
    corrupt(&m, BLOCK_HDR_LEN);
    let mut out = [PktRef::default(); 8];
    let mut st = QueueStats::default();
    let n = rx.burst(&m, &mut out, &mut st);
    assert_eq!(st.rx_packets, n as u64);
    if n > 0 {
        rx.release(&m);
    }
    assert_eq!(rx.held(), 0);
    assert_eq!(status(&m, 0), libc::TP_STATUS_KERNEL);
    st
}

#[test]
fn hostile_headers_are_counted_not_trusted() {
    let b = 0usize;
    type Corrupt = Box<dyn Fn(&RingMap, usize)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        (
            "blk_len > block",
            Box::new(move |m, _| put_u32(m, b + BLK_LEN, BS as u32 + 1)),
        ),
        (
            "first inside header",
            Box::new(move |m, _| put_u32(m, b + BLK_FIRST, 8)),
        ),
        (
            "first past blk_len",
            Box::new(move |m, _| put_u32(m, b + BLK_FIRST, u32::MAX - 4)),
        ),
        (
            "num_pkts huge",
            Box::new(move |m, _| put_u32(m, b + BLK_NUM_PKTS, u32::MAX)),
        ),
        (
            "next 0 mid-block",
            Box::new(|m, p| put_u32(m, p + PH_NEXT, 0)),
        ),
        (
            "next past block",
            Box::new(|m, p| put_u32(m, p + PH_NEXT, u32::MAX)),
        ),
        ("mac 0", Box::new(|m, p| put_u16(m, p + PH_MAC, 0))),
        (
            "mac past block",
            Box::new(|m, p| put_u16(m, p + PH_MAC, u16::MAX)),
        ),
        (
            "snaplen huge",
            Box::new(|m, p| put_u32(m, p + PH_SNAPLEN, u32::MAX)),
        ),
        (
            "runt",
            Box::new(|m, p| {
                put_u32(m, p + PH_SNAPLEN, 4);
                put_u32(m, p + PH_LEN, 4);
            }),
        ),
        (
            "csum_start past frame",
            Box::new(|m, p| {
                assert!(m.write(
                    p + MAC - VNET_HDR_LEN,
                    &[1, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]
                ));
            }),
        ),
        (
            "csum field past frame",
            Box::new(|m, p| {
                assert!(m.write(p + MAC - VNET_HDR_LEN, &[1, 0, 0, 0, 0, 0, 70, 0, 20, 0]));
            }),
        ),
        (
            "vlan on a runt",
            Box::new(|m, p| {
                put_u32(
                    m,
                    p + PH_STATUS,
                    libc::TP_STATUS_USER | libc::TP_STATUS_VLAN_VALID,
                );
                put_u32(m, p + PH_SNAPLEN, 6);
                put_u32(m, p + PH_LEN, 6);
            }),
        ),
    ];
    for (what, c) in cases {
        let st = hostile(c);
        assert!(
            st.drop_bad_desc > 0 || st.drop_no_buffer > 0,
            "{what}: nothing counted ({st:?})"
        );
    }
}

#[test]
fn random_garbage_never_panics() {
    let m = map();
    let mut rx = RxRing::new(&geo());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = [PktRef::default(); 32];
    let mut st = QueueStats::default();
    for round in 0..400 {
        let idx = round % NB;
        let base = idx * BS;
        // Random header words, random small offsets near real ones, random bytes.
        for w in (0..512).step_by(4) {
            let v = match next() % 4 {
                0 => next() as u32,
                1 => (next() % 256) as u32,
                2 => (next() % (BS as u64 + 64)) as u32,
                _ => 0,
            };
            put_u32(&m, base + w, v);
        }
        assert!(m.store_status(
            base + BLK_STATUS,
            libc::TP_STATUS_USER | (next() as u32 & !1)
        ));
        loop {
            let n = rx.burst(&m, &mut out, &mut st);
            for p in &out[..n] {
                assert!(p.len() as usize <= BS);
                let _ = bytes(&p.segs()[0]);
            }
            if n == 0 {
                break;
            }
            rx.release(&m);
        }
        assert_eq!(rx.held(), 0);
    }
    assert!(st.drop_bad_desc > 0);
}

use crate::port::test_util::{heap_pkts as tx_pkts, keep_items as items};

#[test]
fn tx_fills_frames_in_order_and_stops_at_a_busy_one() {
    let m = map();
    let g = geo();
    let mut tx = TxRing::new(&g);
    let f: Vec<Vec<u8>> = (0..3).map(|i| frame(i as u8, 100 + i * 10)).collect();
    let (_h, pkts) = tx_pkts(&f);
    let mut st = QueueStats::default();
    assert_eq!(tx.burst(&m, &pkts, &items(3), 1500, &mut st), 3);
    for (i, want) in f.iter().enumerate() {
        let fo = g.rx_bytes() + i * g.tx_frame_size;
        assert_eq!(
            m.load_status(fo + PH_STATUS),
            Some(libc::TP_STATUS_SEND_REQUEST)
        );
        let h = m.read::<PKT_HDR_LEN>(fo).unwrap();
        assert_eq!(u32_at(&h, PH_LEN) as usize, want.len() + VNET_HDR_LEN);
        assert_eq!(u32_at(&h, PH_NEXT), 0);
        let vnet = m.read::<VNET_HDR_LEN>(fo + TX_DATA_OFF).unwrap();
        assert_eq!(u16::from_le_bytes([vnet[2], vnet[3]]) as usize, want.len());
        assert_eq!(vnet[0], 0);
        let s = m.seg(fo + TX_DATA_OFF + VNET_HDR_LEN, want.len()).unwrap();
        assert_eq!(&bytes(&s), want);
    }
    assert_eq!((st.tx_packets, st.tx_bytes), (3, 330));
    // Frame 3 is free, then frame 0 is still being sent: one queued, one ring-full drop.
    assert_eq!(tx.burst(&m, &pkts, &items(2), 1500, &mut st), 1);
    assert_eq!(st.drop_ring_full, 1);
    // The kernel finished frame 0 (with a timestamp bit): usable again.
    let f0 = g.rx_bytes();
    assert!(m.store_status(f0 + PH_STATUS, libc::TP_STATUS_TS_SOFTWARE));
    assert_eq!(tx.burst(&m, &pkts, &items(1), 1500, &mut st), 1);
    assert_eq!(st.tx_packets, 5);
}

#[test]
fn tx_refuses_what_the_interface_cannot_carry() {
    let m = map();
    let mut tx = TxRing::new(&geo());
    let mut tagged = frame(1, 1518);
    tagged[12] = 0x81;
    tagged[13] = 0x00;
    let f = vec![
        frame(0, 1515), // mtu 1500 + 14 + 1: not tagged -> too big
        tagged,         // 1500 + 14 + 4 tagged: fine
        frame(2, 8),    // runt
        frame(3, 1991), // over the slot's 1990 bytes
    ];
    let (_h, pkts) = tx_pkts(&f);
    let mut st = QueueStats::default();
    assert_eq!(tx.burst(&m, &pkts, &items(4), 1500, &mut st), 1);
    assert_eq!((st.drop_no_buffer, st.drop_bad_desc), (2, 1));
    // An index outside the burst is counted, not trusted.
    let bad = [TxItem {
        idx: 99,
        edit: VlanEdit::Keep,
    }];
    assert_eq!(tx.burst(&m, &pkts, &bad, 1500, &mut st), 0);
    assert_eq!(st.drop_no_buffer, 3);
}

#[test]
fn geometry_fits_the_kernel_rules() {
    for fs in [2048u32, 4096, 16384, 65536] {
        let g = Geometry::for_frame_size(fs);
        assert_eq!(g.rx_block_size % 4096, 0);
        assert_eq!(g.rx_block_size % fs as usize, 0);
        assert_eq!(g.tx_block_size % fs as usize, 0);
        assert_eq!(g.tx_bytes() % g.tx_block_size, 0);
        assert!(g.rx_blocks >= 16 && g.tx_frames >= 64);
        assert_eq!(g.max_frame(), fs - 58);
    }
    assert!(Geometry::for_frame_size(16384).max_frame() >= 9000 + 18);
}
