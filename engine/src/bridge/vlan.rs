//! VLAN handling of bridge ports: ingress classification and egress edits.
//!
//! Frames are kept inside the bridge exactly as they were received; the only VLAN state carried
//! with a frame is an [`Ingress`]: the VLAN id it belongs to and whether it carries an 802.1Q
//! tag (TPID 0x8100). The edit for each output port is computed from (ingress, egress port mode)
//! and applied while the output port copies the frame ([`VlanEdit`]), so nothing is rewritten in
//! the receive buffers.
//!
//! Rules (per port [`VlanMode`]):
//! - `None`: every frame is VLAN 0, untouched (a tagged frame passes with its tag, opaque).
//!   VLAN 0 only ever meets other `None` ports.
//! - `Access(v)`: untagged frames are VLAN `v`; tagged frames (including priority tags) are
//!   dropped. Out: only VLAN `v`, always untagged (pop when the frame came tagged).
//! - `Trunk(list)`: tagged frames whose VLAN is in `list` pass; untagged and other VLANs are
//!   dropped. Out: only VLANs in `list`, always tagged (push when the frame came untagged; a
//!   pushed tag has priority 0).
//!
//! So access 10 ↔ access 10 passes untagged, access 10 → trunk [10] gets tag 10 pushed, trunk →
//! access 10 pops, access 10 ↔ access 20 never meet.
use crate::config::VlanMode;
use crate::port::VlanEdit;

/// 802.1Q tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// Shortest frame the bridge handles: two MACs and an ethertype.
pub const MIN_FRAME: usize = 14;
/// Bytes of a frame the bridge looks at (MACs + 802.1Q tag + inner ethertype).
pub const HEAD_LEN: usize = 18;

/// How a received frame was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingress {
    /// VLAN inside the bridge (0 for `None` ports).
    pub vid: u16,
    /// The frame carries an 802.1Q tag that a non-`None` port understood.
    pub tagged: bool,
}

/// A set of VLAN ids 0..4096 as a bitmap (512 bytes, O(1) membership).
#[derive(Clone, PartialEq, Eq)]
pub struct VidSet([u64; 64]);

impl VidSet {
    pub fn new(vids: &[u16]) -> VidSet {
        let mut s = VidSet([0; 64]);
        for &v in vids {
            // Ids outside 1..=4094 are rejected by config validation; never index out of range.
            if (1..=4094).contains(&v) {
                s.0[usize::from(v >> 6)] |= 1 << (v & 63);
            }
        }
        s
    }
    #[inline]
    pub fn contains(&self, v: u16) -> bool {
        v < 4096 && self.0[usize::from(v >> 6)] & (1 << (v & 63)) != 0
    }
}

impl std::fmt::Debug for VidSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((0..4096u16).filter(|v| self.contains(*v)))
            .finish()
    }
}

/// A port's VLAN mode in the form the hot path uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortVlan {
    None,
    Access(u16),
    Trunk(Box<VidSet>),
}

impl PortVlan {
    pub fn from_mode(m: &VlanMode) -> PortVlan {
        match m {
            VlanMode::None => PortVlan::None,
            VlanMode::Access(v) => PortVlan::Access(*v),
            VlanMode::Trunk(list) => PortVlan::Trunk(Box::new(VidSet::new(list))),
        }
    }

    /// Classifies a frame from its first bytes (`head`, at least [`MIN_FRAME`] long, up to
    /// [`HEAD_LEN`]). None = the port does not accept it.
    #[inline]
    pub fn ingress(&self, head: &[u8]) -> Option<Ingress> {
        if head.len() < MIN_FRAME {
            return None;
        }
        let tag = if head.len() >= 16 && u16::from_be_bytes([head[12], head[13]]) == TPID_8021Q {
            Some(u16::from_be_bytes([head[14], head[15]]) & 0x0fff)
        } else {
            None
        };
        match (self, tag) {
            (PortVlan::None, _) => Some(Ingress {
                vid: 0,
                tagged: false,
            }),
            (PortVlan::Access(v), None) => Some(Ingress {
                vid: *v,
                tagged: false,
            }),
            (PortVlan::Access(_), Some(_)) => None,
            (PortVlan::Trunk(set), Some(vid)) if set.contains(vid) => {
                Some(Ingress { vid, tagged: true })
            }
            (PortVlan::Trunk(_), _) => None,
        }
    }

    /// Whether frames of VLAN `vid` may leave through this port.
    #[inline]
    pub fn carries(&self, vid: u16) -> bool {
        match self {
            PortVlan::None => vid == 0,
            PortVlan::Access(v) => *v == vid,
            PortVlan::Trunk(set) => set.contains(vid),
        }
    }

    /// The edit for sending a frame classified as `ing` out of this port, or None when the
    /// port is not in that VLAN.
    #[inline]
    pub fn egress(&self, ing: Ingress) -> Option<VlanEdit> {
        if !self.carries(ing.vid) {
            return None;
        }
        Some(match (self, ing.tagged) {
            (PortVlan::None, _) => VlanEdit::Keep,
            (PortVlan::Access(_), true) => VlanEdit::Pop,
            (PortVlan::Access(_), false) => VlanEdit::Keep,
            (PortVlan::Trunk(_), true) => VlanEdit::Keep,
            (PortVlan::Trunk(_), false) => VlanEdit::Push(ing.vid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged() -> [u8; 18] {
        let mut f = [0u8; 18];
        f[12] = 0x08; // IPv4
        f
    }
    fn tagged(tci: u16) -> [u8; 18] {
        let mut f = [0u8; 18];
        f[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        f[14..16].copy_from_slice(&tci.to_be_bytes());
        f[16] = 0x08;
        f
    }

    fn path(from: &VlanMode, to: &VlanMode, frame: &[u8]) -> Option<VlanEdit> {
        let ing = PortVlan::from_mode(from).ingress(frame)?;
        PortVlan::from_mode(to).egress(ing)
    }

    #[test]
    fn ingress_classification() {
        let none = PortVlan::None;
        let acc = PortVlan::from_mode(&VlanMode::Access(10));
        let trunk = PortVlan::from_mode(&VlanMode::Trunk(vec![10, 20]));
        assert_eq!(
            none.ingress(&untagged()),
            Some(Ingress {
                vid: 0,
                tagged: false
            })
        );
        assert_eq!(
            none.ingress(&tagged(10)),
            Some(Ingress {
                vid: 0,
                tagged: false
            })
        );
        assert_eq!(
            acc.ingress(&untagged()),
            Some(Ingress {
                vid: 10,
                tagged: false
            })
        );
        assert_eq!(acc.ingress(&tagged(10)), None);
        assert_eq!(acc.ingress(&tagged(0)), None, "priority tag on access port");
        assert_eq!(
            trunk.ingress(&tagged(20)),
            Some(Ingress {
                vid: 20,
                tagged: true
            })
        );
        assert_eq!(
            trunk.ingress(&tagged(0xe000 | 20)),
            Some(Ingress {
                vid: 20,
                tagged: true
            })
        );
        assert_eq!(trunk.ingress(&tagged(30)), None, "vid not allowed");
        assert_eq!(trunk.ingress(&untagged()), None);
        assert_eq!(none.ingress(&untagged()[..13]), None, "runt");
        // A 14..15-byte frame cannot hold a tag: it is untagged.
        assert_eq!(
            acc.ingress(&tagged(10)[..14]),
            Some(Ingress {
                vid: 10,
                tagged: false
            })
        );
    }

    #[test]
    fn vlan_matrix() {
        let a10 = VlanMode::Access(10);
        let a20 = VlanMode::Access(20);
        let t10 = VlanMode::Trunk(vec![10]);
        let t20 = VlanMode::Trunk(vec![20, 30]);
        let none = VlanMode::None;
        assert_eq!(path(&a10, &a10, &untagged()), Some(VlanEdit::Keep));
        assert_eq!(path(&a10, &a20, &untagged()), None);
        assert_eq!(path(&a10, &t10, &untagged()), Some(VlanEdit::Push(10)));
        assert_eq!(path(&a10, &t20, &untagged()), None);
        assert_eq!(path(&t10, &a10, &tagged(10)), Some(VlanEdit::Pop));
        assert_eq!(path(&t10, &a20, &tagged(10)), None);
        assert_eq!(path(&t20, &t20, &tagged(30)), Some(VlanEdit::Keep));
        assert_eq!(path(&t20, &t10, &tagged(20)), None);
        assert_eq!(path(&none, &none, &tagged(10)), Some(VlanEdit::Keep));
        assert_eq!(path(&none, &a10, &untagged()), None);
        assert_eq!(path(&a10, &none, &untagged()), None);
        assert_eq!(path(&t10, &none, &tagged(10)), None);
    }

    #[test]
    fn vidset_bounds() {
        let s = VidSet::new(&[1, 63, 64, 4094, 4095, 0, 9999]);
        assert!(s.contains(1) && s.contains(63) && s.contains(64) && s.contains(4094));
        assert!(!s.contains(0) && !s.contains(4095) && !s.contains(9999) && !s.contains(2));
        assert_eq!(format!("{s:?}"), "{1, 63, 64, 4094}");
    }
}
