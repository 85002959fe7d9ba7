//! The MAC table (forwarding database) of one bridge.
//!
//! Keyed by (VLAN id, MAC address), valued by the bridge member the address was last seen on and
//! when. Rules it enforces:
//! - **No allocation after construction.** The table is an open-addressing hash table with linear
//!   probing, sized once to a power of two at least twice `fdb_max`, so the load factor stays at
//!   or below 1/2 and probes stay short. Deletion uses backward-shift (no tombstones), so the
//!   table never degrades.
//! - **Size cap.** At most `fdb_max` live entries. Learning a new address when full is refused
//!   and counted ([`Fdb::full_drops`]); existing entries keep refreshing.
//! - **Aging.** Time is a monotonic tick in milliseconds supplied by the caller (the worker
//!   reads the clock once per control tick, not per packet). An entry not seen for `aging_ms` is
//!   dead: lookups miss it and [`Fdb::entries`] hides it at once; [`Fdb::sweep`] reclaims its
//!   slot incrementally (a bounded number of slots per call, so aging never stalls the worker).
//!   `aging_secs == 0` means entries never age.
//! - **Move detection.** Seeing a known address on another member re-points the entry and counts
//!   a move ([`Fdb::moves`]).
//!
//! What it does not do: decide what is learnable (multicast sources are filtered by the
//! forwarding code) or know port names (members are small indices the bridge maps to ports).

/// Member index stored in the table (the bridge's index of a port).
pub type Member = u16;

/// One slot. `key == EMPTY` marks a free slot.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    seen: u64,
    member: Member,
}

const EMPTY: u64 = 0;
/// Set in every live key so that VLAN 0 + MAC 00:00:00:00:00:00 is distinguishable from EMPTY.
const LIVE: u64 = 1 << 63;

#[inline]
fn make_key(vlan: u16, mac: &[u8; 6]) -> u64 {
    let m = u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    make_key48(vlan, m)
}

#[inline]
fn make_key48(vlan: u16, mac48: u64) -> u64 {
    LIVE | (u64::from(vlan & 0x0fff) << 48) | (mac48 & MAC_MASK)
}

/// The 48 bits of a MAC held in a u64.
const MAC_MASK: u64 = (1 << 48) - 1;

/// A (VLAN, MAC) key as stored in the table. Never equal to [`FdbKey::NONE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbKey(u64);

impl FdbKey {
    /// Matches no address (for "nothing cached yet").
    pub const NONE: FdbKey = FdbKey(EMPTY);
}

/// An entry as [`Fdb::entries`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbView {
    pub vlan: u16,
    pub mac: [u8; 6],
    pub member: Member,
    /// Milliseconds since last seen.
    pub age_ms: u64,
}

/// Result of [`Fdb::learn`], for tests and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    New,
    Refreshed,
    Moved { from: Member },
    TableFull,
}

pub struct Fdb {
    slots: Box<[Slot]>,
    mask: usize,
    /// log2(slots.len()), for the multiplicative hash.
    bits: u32,
    len: usize,
    max: usize,
    /// 0 = never age.
    aging_ms: u64,
    full_drops: u64,
    moves: u64,
    /// Where the next incremental sweep starts.
    sweep_pos: usize,
}

impl Fdb {
    /// A table for at most `max` entries (at least 1) aging after `aging_secs` (0 = never).
    pub fn new(max: u32, aging_secs: u32) -> Fdb {
        let max = (max as usize).max(1);
        let cap = (max * 2).next_power_of_two().max(16);
        Fdb {
            slots: vec![
                Slot {
                    key: EMPTY,
                    seen: 0,
                    member: 0
                };
                cap
            ]
            .into_boxed_slice(),
            mask: cap - 1,
            bits: cap.trailing_zeros(),
            len: 0,
            max,
            aging_ms: u64::from(aging_secs) * 1000,
            full_drops: 0,
            moves: 0,
            sweep_pos: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: the high bits of key * 2^64/phi spread sequential MACs well.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    #[inline]
    fn alive(&self, s: &Slot, now: u64) -> bool {
        self.aging_ms == 0 || now.saturating_sub(s.seen) < self.aging_ms
    }

    /// Slot index holding `key`, if any (dead or alive).
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].key;
            if k == key {
                return Some(i);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The table key of (`vlan`, `mac`): lets a caller compare addresses cheaply (per-burst
    /// caches) and look up without rebuilding it.
    #[inline]
    pub fn key(vlan: u16, mac: &[u8; 6]) -> FdbKey {
        FdbKey(make_key(vlan, mac))
    }

    /// Same as [`Fdb::key`] for a MAC given as a big-endian 48-bit number (the low 48 bits of
    /// `mac48`; `aa:bb:..:ff` is `0xaabb_ccdd_eeff`), which the hot path reads with one load.
    #[inline]
    pub fn key48(vlan: u16, mac48: u64) -> FdbKey {
        FdbKey(make_key48(vlan, mac48))
    }

    /// The member `mac` in `vlan` was last seen on, unless unknown or aged out.
    #[inline]
    pub fn lookup(&self, vlan: u16, mac: &[u8; 6], now: u64) -> Option<Member> {
        self.lookup_key(Self::key(vlan, mac), now)
    }

    #[inline]
    pub fn lookup_key(&self, key: FdbKey, now: u64) -> Option<Member> {
        let i = self.find(key.0)?;
        let s = &self.slots[i];
        self.alive(s, now).then_some(s.member)
    }

    /// Records that `mac` in `vlan` was seen on `member` at `now`.
    #[inline]
    pub fn learn(&mut self, vlan: u16, mac: &[u8; 6], member: Member, now: u64) -> Learned {
        self.learn_key(Self::key(vlan, mac), member, now)
    }

    #[inline]
    pub fn learn_key(&mut self, key: FdbKey, member: Member, now: u64) -> Learned {
        let key = key.0;
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].key;
            if k == key {
                let s = &mut self.slots[i];
                s.seen = now;
                if s.member == member {
                    return Learned::Refreshed;
                }
                let from = s.member;
                s.member = member;
                self.moves += 1;
                return Learned::Moved { from };
            }
            if k == EMPTY {
                break;
            }
            i = (i + 1) & self.mask;
        }
        if self.len >= self.max {
            self.full_drops += 1;
            return Learned::TableFull;
        }
        self.slots[i] = Slot {
            key,
            seen: now,
            member,
        };
        self.len += 1;
        Learned::New
    }

    /// Empties slot `i` and shifts later entries of the probe chain back (no tombstones).
    fn remove_at(&mut self, mut i: usize) {
        self.slots[i].key = EMPTY;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let k = self.slots[j].key;
            if k == EMPTY {
                return;
            }
            let h = self.home(k);
            // Entry at j may move to the hole at i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.slots[i] = self.slots[j];
                self.slots[j].key = EMPTY;
                i = j;
            }
        }
    }

    /// Forgets one address; true when it was present.
    pub fn remove(&mut self, vlan: u16, mac: &[u8; 6]) -> bool {
        match self.find(make_key(vlan, mac)) {
            Some(i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }

    /// Removes every entry pointing at `member` (the port left the bridge).
    pub fn flush_member(&mut self, member: Member) {
        self.retain(|s| s.member != member);
    }

    /// Re-points entries from member `from` to `to` (the bridge renumbered a member).
    pub fn renumber(&mut self, from: Member, to: Member) {
        for s in self.slots.iter_mut() {
            if s.key != EMPTY && s.member == from {
                s.member = to;
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(&Slot) -> bool) {
        let mut i = 0;
        while i < self.slots.len() {
            let s = self.slots[i];
            if s.key != EMPTY && !keep(&s) {
                // The shift may pull another entry into i: check i again. Entries only move
                // back along their probe chain, so nothing unchecked lands behind the scan.
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
    }

    /// Reclaims aged-out entries while looking at the next `budget` slots (round robin);
    /// returns how many were removed.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        if self.aging_ms == 0 || self.len == 0 {
            return 0;
        }
        let mut removed = 0;
        let mut i = self.sweep_pos;
        let mut left = budget.min(self.slots.len());
        // Each turn either advances (bounded by the budget) or removes (bounded by len).
        while left > 0 {
            let s = self.slots[i];
            if s.key != EMPTY && !self.alive(&s, now) {
                // Do not advance: the backward shift may have moved an entry into i.
                self.remove_at(i);
                removed += 1;
            } else {
                i = (i + 1) & self.mask;
                left -= 1;
            }
        }
        self.sweep_pos = i;
        removed
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.key = EMPTY;
        }
        self.len = 0;
    }

    /// Live (not aged-out) entries, for `fdb show`. Control path: allocates.
    pub fn entries(&self, now: u64) -> Vec<FdbView> {
        let mut v: Vec<FdbView> = self
            .slots
            .iter()
            .filter(|s| s.key != EMPTY && self.alive(s, now))
            .map(|s| {
                let b = s.key.to_be_bytes();
                FdbView {
                    vlan: ((s.key >> 48) & 0x0fff) as u16,
                    mac: [b[2], b[3], b[4], b[5], b[6], b[7]],
                    member: s.member,
                    age_ms: now.saturating_sub(s.seen),
                }
            })
            .collect();
        v.sort_by_key(|e| (e.vlan, e.mac));
        v
    }

    /// Slots in use, including aged-out entries not yet swept.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Live entries (O(capacity); control path).
    pub fn live_len(&self, now: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| s.key != EMPTY && self.alive(s, now))
            .count()
    }
    /// Most live entries (`fdb_max`).
    pub fn capacity(&self) -> usize {
        self.max
    }
    /// Slots in the hash table (a power of two, at least twice the capacity).
    pub fn table_size(&self) -> usize {
        self.slots.len()
    }
    /// Learning attempts refused because the table was full.
    pub fn full_drops(&self) -> u64 {
        self.full_drops
    }
    /// Addresses that moved to another member.
    pub fn moves(&self) -> u64 {
        self.moves
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> [u8; 6] {
        let b = i.to_be_bytes();
        [0x02, 0, b[0], b[1], b[2], b[3]]
    }

    #[test]
    fn learn_lookup_move_refresh() {
        let mut f = Fdb::new(16, 300);
        assert_eq!(f.lookup(0, &mac(1), 0), None);
        assert_eq!(f.learn(0, &mac(1), 3, 0), Learned::New);
        assert_eq!(f.lookup(0, &mac(1), 10), Some(3));
        // Same MAC in another VLAN is another entry.
        assert_eq!(f.lookup(10, &mac(1), 10), None);
        assert_eq!(f.learn(10, &mac(1), 4, 0), Learned::New);
        assert_eq!(f.learn(0, &mac(1), 3, 5), Learned::Refreshed);
        assert_eq!(f.learn(0, &mac(1), 7, 6), Learned::Moved { from: 3 });
        assert_eq!(f.lookup(0, &mac(1), 7), Some(7));
        assert_eq!(f.lookup(10, &mac(1), 7), Some(4));
        assert_eq!(f.moves(), 1);
        assert_eq!(f.len(), 2);
        // The all-zero key is a valid entry, not the empty marker.
        assert_eq!(f.learn(0, &[0; 6], 1, 0), Learned::New);
        assert_eq!(f.lookup(0, &[0; 6], 0), Some(1));
    }

    #[test]
    fn key_forms_agree() {
        let m = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
        assert_eq!(Fdb::key(7, &m), Fdb::key48(7, 0x1234_aabb_ccdd_eeff));
        assert_ne!(Fdb::key(7, &m), Fdb::key(8, &m));
        assert_ne!(Fdb::key(0, &[0; 6]), FdbKey::NONE);
    }

    #[test]
    fn aging_with_injected_tick() {
        let mut f = Fdb::new(16, 2);
        f.learn(1, &mac(1), 1, 1_000);
        f.learn(1, &mac(2), 2, 2_500);
        assert_eq!(f.lookup(1, &mac(1), 2_999), Some(1));
        assert_eq!(f.lookup(1, &mac(1), 3_000), None, "aged out after 2 s");
        assert_eq!(f.lookup(1, &mac(2), 3_000), Some(2));
        assert_eq!(f.entries(3_000).len(), 1);
        assert_eq!(f.entries(3_000)[0].age_ms, 500);
        assert_eq!(f.len(), 2, "not swept yet");
        assert_eq!(f.sweep(3_000, usize::MAX), 1);
        assert_eq!(f.len(), 1);
        // A dead entry seen again is alive again.
        f.learn(1, &mac(2), 2, 10_000);
        assert_eq!(f.lookup(1, &mac(2), 10_001), Some(2));
        // aging 0 = never.
        let mut g = Fdb::new(4, 0);
        g.learn(0, &mac(9), 1, 0);
        assert_eq!(g.lookup(0, &mac(9), u64::MAX), Some(1));
        assert_eq!(g.sweep(u64::MAX, 100), 0);
    }

    #[test]
    fn full_table_refuses_and_counts() {
        let mut f = Fdb::new(4, 300);
        for i in 0..4 {
            assert_eq!(f.learn(0, &mac(i), 1, 0), Learned::New);
        }
        assert_eq!(f.learn(0, &mac(100), 1, 0), Learned::TableFull);
        assert_eq!(f.learn(0, &mac(101), 1, 0), Learned::TableFull);
        assert_eq!(f.full_drops(), 2);
        // Known entries still refresh and move when full.
        assert_eq!(f.learn(0, &mac(0), 2, 1), Learned::Moved { from: 1 });
        // Once entries age out and are swept, learning works again.
        assert_eq!(f.sweep(400_000, usize::MAX), 4);
        assert_eq!(f.learn(0, &mac(100), 1, 400_000), Learned::New);
    }

    #[test]
    fn removal_keeps_probe_chains_intact() {
        // Many keys in a small table force collisions and wrap-around chains.
        let mut f = Fdb::new(512, 0);
        for i in 0..512 {
            f.learn((i % 7) as u16, &mac(i * 977), (i % 5) as u16, 0);
        }
        assert_eq!(f.len(), 512);
        for i in (0..512).step_by(3) {
            assert!(f.remove((i % 7) as u16, &mac(i * 977)));
        }
        for i in 0..512 {
            let want = if i % 3 == 0 {
                None
            } else {
                Some((i % 5) as u16)
            };
            assert_eq!(f.lookup((i % 7) as u16, &mac(i * 977), 0), want, "key {i}");
        }
        f.flush_member(2);
        for i in 0..512 {
            let want = if i % 3 == 0 || i % 5 == 2 {
                None
            } else {
                Some((i % 5) as u16)
            };
            assert_eq!(f.lookup((i % 7) as u16, &mac(i * 977), 0), want, "key {i}");
        }
        assert_eq!(f.len(), f.live_len(0));
        f.renumber(4, 2);
        assert!(f.entries(0).iter().all(|e| e.member != 4));
        f.clear();
        assert!(f.is_empty());
    }

    #[test]
    fn incremental_sweep_covers_the_table() {
        let mut f = Fdb::new(1000, 1);
        for i in 0..1000 {
            f.learn(0, &mac(i), 0, 0);
        }
        let mut removed = 0;
        for _ in 0..64 {
            removed += f.sweep(5_000, 64);
        }
        assert_eq!(removed, 1000);
        assert!(f.is_empty());
    }

    #[test]
    fn entries_are_sorted_and_formatted() {
        let mut f = Fdb::new(8, 300);
        f.learn(20, &[0xaa, 0xbb, 0xcc, 0, 0, 1], 1, 0);
        f.learn(10, &[0xaa, 0xbb, 0xcc, 0, 0, 2], 0, 0);
        let e = f.entries(1_500);
        assert_eq!(e[0].vlan, 10);
        assert_eq!(format_mac(&e[1].mac), "aa:bb:cc:00:00:01");
        assert_eq!(e[1].age_ms, 1_500);
    }
}
