//! The forwarding decision for one received burst on a bridge (VPP/Snabb style: a burst in,
//! one batch per output port out).
//!
//! Per packet: read the first [`HEAD_LEN`] bytes, classify the VLAN on the ingress member (not
//! accepted → drop), learn the source MAC unless it is multicast, then
//! - known unicast destination → that member (drop if it is the ingress member, is down, or
//!   does not carry the VLAN);
//! - unknown unicast, broadcast, multicast → every other member that is up and carries the VLAN;
//!   no such member → drop.
//!
//! Results go into the per-member [`TxItem`] batches (index into the burst + VLAN edit) that
//! [`Bridge::drain`] hands to the ports, one `tx_burst` per destination. Dropped packets are
//! returned as a count for the caller to charge to the ingress port (`count_no_route`).
//!
//! Per burst, the last source learned and the last destination looked up are cached (bursts
//! are mostly one or a few flows); the destination cache is dropped when learning changes the
//! table, so results are exactly those of per-packet lookups. A run of packets whose first 16
//! bytes (MACs, TPID/ethertype, TCI) equal the previous packet's reuses its verdict outright (no
//! classification, learning or lookup) and is queued as one range of burst indices (a burst of
//! one flow is one decision and one range). A flood with exactly one eligible member is decided
//! as a unicast to it (a two-port bridge never walks the member list per packet).
//!
//! Packet data is not prefetched here: the receiving ports prefetch the first line of each
//! packet as they take it off their ring.
//!
//! Hot path rules: no allocation (batches and the dirty list are preallocated at member add),
//! no locks, no syscalls, no clock reads (`now` comes from the worker's control tick).
use super::fdb::{Fdb, FdbKey, Learned};
use super::vlan::{Ingress, HEAD_LEN};
use super::Bridge;
use crate::port::{PktRef, TxItem, VlanEdit, MAX_BURST};

/// The I/G bit (multicast/broadcast) of a MAC held as a 48-bit big-endian number.
const GROUP_BIT: u64 = 1 << 40;

impl Bridge {
    /// Decides where each packet of `pkts` (received on member `in_m`) goes; fills the member
    /// batches. Returns how many packets were dropped for lack of a route. `now` is the
    /// worker's millisecond tick. At most [`MAX_BURST`] packets are looked at.
    pub fn forward(&mut self, in_m: u16, pkts: &[PktRef], now: u64) -> u32 {
        let pkts = &pkts[..pkts.len().min(MAX_BURST)];
        let Some(in_info) = self.members.get(usize::from(in_m)) else {
            return pkts.len() as u32;
        };
        let in_vlan = &in_info.vlan;
        let members = &self.members;
        let batches = &mut self.batches;
        let dirty = &mut self.dirty;
        let fdb = &mut self.fdb;

        // Queues packets `from..to` (consecutive burst indices) for member `m`.
        let mut push = |m: usize, from: usize, to: usize, edit: VlanEdit| {
            let b = &mut batches[m];
            if b.len == 0 {
                // Capacity is reserved for every member: never allocates.
                dirty.push(m as u16);
            }
            let at = usize::from(b.len);
            // A burst has at most MAX_BURST packets, each queued at most once per member.
            for (k, slot) in b.items[at..at + (to - from)].iter_mut().enumerate() {
                *slot = TxItem {
                    idx: (from + k) as u16,
                    edit,
                };
            }
            b.len += (to - from) as u16;
        };

        // Per-burst caches: bursts are mostly one or a few flows. The source cache skips a
        // refresh that would store the same `now` again; the destination cache is dropped
        // whenever learning changes the table.
        let mut last_src = FdbKey::NONE;
        let mut last_dst = FdbKey::NONE;
        let mut last_hit = None;
        let mut no_route = 0u32;
        let mut i = 0usize;
        while i < pkts.len() {
            let pkt = &pkts[i];
            // Fast path: the whole head in the first segment (a fixed-size copy). Either way
            // `head` is zero-padded past `n`.
            let (head, n) = match pkt.segs().first().and_then(|s| s.read_array::<HEAD_LEN>(0)) {
                Some(h) => (h, HEAD_LEN),
                None => {
                    let mut h = [0u8; HEAD_LEN];
                    let n = pkt.read_head(&mut h);
                    (h, n)
                }
            };
            let verdict = decide(
                (&head, n),
                in_vlan,
                members,
                fdb,
                in_m,
                now,
                (&mut last_src, &mut last_dst, &mut last_hit),
            );
            // The run: following packets whose first segment starts with the same 16 bytes
            // (MACs, TPID/ethertype, TCI) get the same verdict. Exact: classification reads
            // only those bytes, learning the same source again changes nothing, and the table
            // only changes through learning. A head not in the first segment ends the run.
            let mut end = i + 1;
            if let Some(key) = head16(pkt) {
                while end < pkts.len() && head16(&pkts[end]) == Some(key) {
                    end += 1;
                }
            }
            match verdict {
                Verdict::To(m, edit) => push(usize::from(m), i, end, edit),
                Verdict::Flood(ing) => {
                    if flood(members, in_m, ing, (i, end), &mut push) == 0 {
                        no_route += (end - i) as u32;
                    }
                }
                Verdict::Drop => no_route += (end - i) as u32,
            }
            i = end;
        }
        no_route
    }
}

/// The first 16 bytes of the packet's first segment as one number (None when shorter).
#[inline]
fn head16(pkt: &PktRef) -> Option<u128> {
    pkt.segs()
        .first()
        .and_then(|s| s.read_array::<16>(0))
        .map(u128::from_ne_bytes)
}

/// Where one packet goes.
#[derive(Clone, Copy)]
enum Verdict {
    Drop,
    To(u16, VlanEdit),
    Flood(Ingress),
}

/// The per-packet decision: classify, learn the source, look the destination up. `(head, n)`:
/// the packet's first `n` bytes, zero-padded, so the MACs come from fixed offsets with no copy
/// (a padded copy here cost a memset, a memcpy and a stalled load per decision). `caches` are
/// the per-burst last source learned / last destination looked up (and its result); the
/// destination cache is dropped when learning changes the table.
#[inline]
fn decide(
    (head, n): (&[u8; HEAD_LEN], usize),
    in_vlan: &super::PortVlan,
    members: &[super::MemberInfo],
    fdb: &mut Fdb,
    in_m: u16,
    now: u64,
    caches: (&mut FdbKey, &mut FdbKey, &mut Option<u16>),
) -> Verdict {
    let (last_src, last_dst, last_hit) = caches;
    let Some(ing) = in_vlan.ingress(&head[..n.min(HEAD_LEN)]) else {
        return Verdict::Drop;
    };
    // The MACs as 48-bit big-endian numbers, from one 16-byte load (two overlapping 8-byte
    // loads at 0 and 6 stalled on store forwarding from the head's copy).
    let mut b16 = [0u8; 16];
    b16.copy_from_slice(&head[..16]);
    let v = u128::from_be_bytes(b16);
    let dst48 = (v >> 80) as u64;
    let src48 = (v >> 32) as u64 & 0xffff_ffff_ffff;
    if src48 & GROUP_BIT == 0 {
        let k = Fdb::key48(ing.vid, src48);
        if k != *last_src {
            *last_src = k;
            if let Learned::New | Learned::Moved { .. } = fdb.learn_key(k, in_m, now) {
                // The table changed: a cached destination may be stale.
                *last_dst = FdbKey::NONE;
            }
        }
    }
    if dst48 & GROUP_BIT == 0 {
        let k = Fdb::key48(ing.vid, dst48);
        if k != *last_dst {
            *last_dst = k;
            *last_hit = fdb.lookup_key(k, now);
        }
        if let Some(m) = *last_hit {
            return match members
                .get(usize::from(m))
                .filter(|o| m != in_m && o.up)
                .and_then(|o| o.vlan.egress(ing))
            {
                Some(edit) => Verdict::To(m, edit),
                None => Verdict::Drop,
            };
        }
    }
    // Flooding to exactly one member (a two-port bridge) is a unicast; to none, a drop.
    let mut only = None;
    for (m, info) in members.iter().enumerate() {
        if m == usize::from(in_m) || !info.up {
            continue;
        }
        if let Some(edit) = info.vlan.egress(ing) {
            if only.is_some() {
                return Verdict::Flood(ing);
            }
            only = Some((m as u16, edit));
        }
    }
    match only {
        Some((m, edit)) => Verdict::To(m, edit),
        None => Verdict::Drop,
    }
}

/// Queues packets `range.0..range.1` for every member but `in_m` that is up and carries the
/// VLAN; returns to how many members.
#[inline]
fn flood(
    members: &[super::MemberInfo],
    in_m: u16,
    ing: Ingress,
    range: (usize, usize),
    push: &mut impl FnMut(usize, usize, usize, VlanEdit),
) -> u32 {
    let mut sent = 0;
    for (m, info) in members.iter().enumerate() {
        if m == usize::from(in_m) || !info.up {
            continue;
        }
        if let Some(edit) = info.vlan.egress(ing) {
            push(m, range.0, range.1, edit);
            sent += 1;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BridgeConfig, VlanMode};
    use crate::shm::HeapBuf;

    struct Frames {
        buf: HeapBuf,
        pkts: Vec<PktRef>,
    }

    /// Builds packets from (dst, src, vlan tag) in one heap buffer.
    fn frames(list: &[([u8; 6], [u8; 6], Option<u16>)]) -> Frames {
        let mut buf = HeapBuf::new(list.len() * 128);
        let mut lens = Vec::new();
        for (k, (d, s, tag)) in list.iter().enumerate() {
            let b = &mut buf.bytes_mut()[k * 128..];
            b[..6].copy_from_slice(d);
            b[6..12].copy_from_slice(s);
            let mut off = 12;
            if let Some(t) = tag {
                b[12..16].copy_from_slice(&[0x81, 0, (t >> 8) as u8, *t as u8]);
                off = 16;
            }
            b[off..off + 2].copy_from_slice(&[0x08, 0x00]);
            lens.push(off + 2 + 46);
        }
        let pkts = lens
            .iter()
            .enumerate()
            .map(|(k, &l)| {
                let mut p = PktRef::default();
                p.push_seg(buf.seg(k * 128, l).unwrap());
                p
            })
            .collect();
        Frames { buf, pkts }
    }

    const BC: [u8; 6] = [0xff; 6];
    fn mac(i: u8) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, i]
    }

    fn bridge(modes: &[VlanMode]) -> Bridge {
        let mut b = Bridge::new(BridgeConfig::new("br0"));
        for (k, m) in modes.iter().enumerate() {
            b.add_member(100 + k as u16, m, true);
        }
        b
    }

    /// (slot, [(idx, edit)]) for the last burst, sorted by slot.
    fn out(b: &mut Bridge) -> Vec<(u16, Vec<(u16, VlanEdit)>)> {
        let mut v = Vec::new();
        b.drain(|slot, items| v.push((slot, items.iter().map(|t| (t.idx, t.edit)).collect())));
        v.sort_by_key(|x| x.0);
        v
    }

    #[test]
    fn learning_stops_flooding() {
        let mut b = bridge(&[VlanMode::None, VlanMode::None, VlanMode::None]);
        // A → unknown B floods to members 1 and 2.
        let f = frames(&[(mac(2), mac(1), None)]);
        assert_eq!(b.forward(0, &f.pkts, 0), 0);
        assert_eq!(
            out(&mut b),
            vec![
                (101, vec![(0, VlanEdit::Keep)]),
                (102, vec![(0, VlanEdit::Keep)])
            ]
        );
        // B answers A: A is known on member 0 → unicast only.
        let f = frames(&[(mac(1), mac(2), None)]);
        assert_eq!(b.forward(1, &f.pkts, 1), 0);
        assert_eq!(out(&mut b), vec![(100, vec![(0, VlanEdit::Keep)])]);
        // A → B now unicast too.
        let f = frames(&[(mac(2), mac(1), None), (BC, mac(1), None)]);
        assert_eq!(b.forward(0, &f.pkts, 2), 0);
        assert_eq!(
            out(&mut b),
            vec![
                (101, vec![(0, VlanEdit::Keep), (1, VlanEdit::Keep)]),
                (102, vec![(1, VlanEdit::Keep)])
            ]
        );
        assert_eq!(b.fdb().len(), 2);
        let _ = &f.buf;
    }

    #[test]
    fn head_split_across_segments_is_decided_like_one_segment() {
        let mut b = bridge(&[VlanMode::None, VlanMode::None, VlanMode::None]);
        // The MACs span two segments (7 + rest): the general head read, zero-padded.
        let split = |f: &Frames, k: usize| {
            let l = f.pkts[k].len() as usize;
            let mut p = PktRef::default();
            p.push_seg(f.buf.seg(k * 128, 7).unwrap());
            p.push_seg(f.buf.seg(k * 128 + 7, l - 7).unwrap());
            p
        };
        let f = frames(&[(BC, mac(1), None), (mac(1), mac(2), None)]);
        let first = vec![split(&f, 0)];
        assert_eq!(b.forward(0, &first, 0), 0);
        out(&mut b);
        assert_eq!(b.fdb().lookup(0, &mac(1), 0), Some(0));
        // mac(2) on member 1 → mac(1): unicast to member 0 (slot 100) only.
        let second = vec![split(&f, 1)];
        assert_eq!(b.forward(1, &second, 0), 0);
        assert_eq!(out(&mut b), vec![(100, vec![(0, VlanEdit::Keep)])]);
        assert_eq!(b.fdb().lookup(0, &mac(2), 0), Some(1));
    }

    #[test]
    fn drops_are_counted() {
        let mut b = bridge(&[
            VlanMode::Access(10),
            VlanMode::Access(10),
            VlanMode::Access(20),
        ]);
        // Learn mac(1) on member 0, then a frame to mac(1) arriving on member 0: hairpin drop.
        let f = frames(&[(BC, mac(1), None), (mac(1), mac(3), None)]);
        assert_eq!(b.forward(0, &f.pkts, 0), 1);
        out(&mut b);
        // Tagged frame on an access port: drop. Runt: drop.
        let mut f = frames(&[(BC, mac(5), Some(10))]);
        let mut runt = PktRef::default();
        runt.push_seg(f.buf.seg(0, 13).unwrap());
        f.pkts.push(runt);
        assert_eq!(b.forward(1, &f.pkts, 0), 2);
        // Broadcast on the only VLAN-20 member: nowhere to go.
        let f = frames(&[(BC, mac(7), None)]);
        assert_eq!(b.forward(2, &f.pkts, 0), 1);
        assert!(out(&mut b).is_empty());
        // Multicast sources are never learned.
        let f = frames(&[(mac(9), [0x01, 0, 0x5e, 0, 0, 1], None)]);
        b.forward(0, &f.pkts, 0);
        assert_eq!(b.fdb().len(), 3, "mac(1), mac(3), mac(7)");
        assert_eq!(out(&mut b).len(), 1, "flooded to member 1");
        // A down member gets no flood and no unicast.
        b.set_member_up(1, false);
        let f = frames(&[(BC, mac(1), None)]);
        assert_eq!(b.forward(0, &f.pkts, 0), 1);
        assert!(out(&mut b).is_empty());
    }

    #[test]
    fn vlan_edits_on_the_way_out() {
        // 0: access 10, 1: trunk [10, 20], 2: access 20, 3: access 10
        let mut b = bridge(&[
            VlanMode::Access(10),
            VlanMode::Trunk(vec![10, 20]),
            VlanMode::Access(20),
            VlanMode::Access(10),
        ]);
        let f = frames(&[(BC, mac(1), None)]);
        b.forward(0, &f.pkts, 0);
        assert_eq!(
            out(&mut b),
            vec![
                (101, vec![(0, VlanEdit::Push(10))]),
                (103, vec![(0, VlanEdit::Keep)])
            ]
        );
        let f = frames(&[(BC, mac(2), Some(20)), (mac(1), mac(3), Some(10))]);
        b.forward(1, &f.pkts, 0);
        assert_eq!(
            out(&mut b),
            vec![
                (100, vec![(1, VlanEdit::Pop)]),
                (102, vec![(0, VlanEdit::Pop)])
            ]
        );
        // mac(1) is in VLAN 10 only: a VLAN 20 frame to it floods in VLAN 20.
        let f = frames(&[(mac(1), mac(4), Some(20))]);
        b.forward(1, &f.pkts, 0);
        assert_eq!(out(&mut b), vec![(102, vec![(0, VlanEdit::Pop)])]);
    }

    #[test]
    fn learning_inside_a_burst_is_seen_by_later_packets() {
        let mut b = bridge(&[VlanMode::None, VlanMode::None, VlanMode::None]);
        // 0: to unknown mac(5) (flood); 1: mac(5) speaks on member 0 (moves it there later);
        // 2: to mac(5) again: now known on member 0 = the ingress member → hairpin drop.
        let f = frames(&[
            (mac(5), mac(1), None),
            (BC, mac(5), None),
            (mac(5), mac(1), None),
        ]);
        assert_eq!(b.forward(0, &f.pkts, 0), 1);
        assert_eq!(
            out(&mut b),
            vec![
                (101, vec![(0, VlanEdit::Keep), (1, VlanEdit::Keep)]),
                (102, vec![(0, VlanEdit::Keep), (1, VlanEdit::Keep)]),
            ]
        );
        // On member 1: mac(5) known on 0 → unicast; mac(5) moves to 1; then hairpin drop.
        let f2 = frames(&[
            (mac(5), mac(2), None),
            (BC, mac(5), None),
            (mac(5), mac(2), None),
        ]);
        assert_eq!(b.forward(1, &f2.pkts, 0), 1);
        assert_eq!(
            out(&mut b),
            vec![
                (100, vec![(0, VlanEdit::Keep), (1, VlanEdit::Keep)]),
                (102, vec![(1, VlanEdit::Keep)])
            ]
        );
    }

    /// Runs of equal heads reuse the verdict, and a change of table or head between runs is
    /// seen: results equal per-packet decisions.
    #[test]
    fn runs_of_equal_heads() {
        let mut b = bridge(&[VlanMode::None, VlanMode::None, VlanMode::None]);
        let f = frames(&[
            (mac(5), mac(1), None),
            (mac(5), mac(1), None),
            (BC, mac(5), None), // mac(5) learned on member 0 (the ingress)
            (mac(5), mac(1), None),
            (mac(5), mac(1), None),
        ]);
        assert_eq!(b.forward(0, &f.pkts, 0), 2, "the last run hairpins");
        assert_eq!(
            out(&mut b),
            vec![
                (
                    101,
                    vec![
                        (0, VlanEdit::Keep),
                        (1, VlanEdit::Keep),
                        (2, VlanEdit::Keep)
                    ]
                ),
                (
                    102,
                    vec![
                        (0, VlanEdit::Keep),
                        (1, VlanEdit::Keep),
                        (2, VlanEdit::Keep)
                    ]
                ),
            ]
        );
        // A flood with one eligible member is sent like a unicast; with none it is dropped.
        b.set_member_up(2, false);
        let f = frames(&[(mac(9), mac(2), None), (mac(9), mac(2), None)]);
        assert_eq!(b.forward(0, &f.pkts, 0), 0);
        assert_eq!(
            out(&mut b),
            vec![(101, vec![(0, VlanEdit::Keep), (1, VlanEdit::Keep)])]
        );
        b.set_member_up(1, false);
        assert_eq!(b.forward(0, &f.pkts, 0), 2);
        assert!(out(&mut b).is_empty());
        // Runts (head shorter than 16 bytes) are decided one by one: both dropped.
        let mut f = frames(&[(BC, mac(3), None)]);
        let mut runt = PktRef::default();
        runt.push_seg(f.buf.seg(0, 13).unwrap());
        f.pkts = vec![runt, runt];
        b.set_member_up(1, true);
        assert_eq!(b.forward(0, &f.pkts, 0), 2);
    }

    #[test]
    fn member_removal_renumbers_fdb() {
        let mut b = bridge(&[VlanMode::None, VlanMode::None, VlanMode::None]);
        let f = frames(&[(BC, mac(1), None)]);
        b.forward(0, &f.pkts, 0);
        let f = frames(&[(BC, mac(3), None)]);
        b.forward(2, &f.pkts, 0);
        out(&mut b);
        // Removing member 0 moves member 2 (slot 102) to index 0.
        assert_eq!(b.remove_member(0), Some(102));
        assert_eq!(b.fdb().lookup(0, &mac(1), 0), None);
        assert_eq!(b.fdb().lookup(0, &mac(3), 0), Some(0));
        assert_eq!(b.member_of_slot(102), Some(0));
        let f = frames(&[(mac(3), mac(2), None)]);
        b.forward(1, &f.pkts, 0);
        assert_eq!(out(&mut b), vec![(102, vec![(0, VlanEdit::Keep)])]);
        assert_eq!(b.remove_member(1), None);
        assert_eq!(b.remove_member(7), None);
    }
}
