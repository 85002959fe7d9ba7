//! Bridges: MAC learning, VLANs, flooding; and the switch state that owns ports, bridges and
//! xconnects inside the dataplane worker.
//!
//! - [`fdb`]: the MAC table (aging, size cap, move detection; no allocation after creation).
//! - [`vlan`]: per-port ingress classification and egress edits.
//! - [`forward`]: the per-burst forwarding decision of one bridge (no I/O).
//! - [`switch`]: ports in stable slots, bridges, xconnects, one poll iteration, control ops.
//!
//! A [`Bridge`] knows its members only by small member indices (0..n, dense) and the switch
//! slot each maps to. Everything a burst needs (per-member transmit batches, the dirty list) is
//! allocated when a member is added, never while forwarding.
use crate::config::{BridgeConfig, VlanMode};
use crate::port::{TxItem, MAX_BURST};

pub mod fdb;
pub mod forward;
pub mod switch;
pub mod vlan;

#[cfg(test)]
mod tests;

pub use fdb::Fdb;
pub use switch::Switch;
pub use vlan::PortVlan;

/// What the bridge knows about one member port.
#[derive(Debug)]
pub struct MemberInfo {
    /// Switch slot of the port.
    pub slot: u16,
    pub vlan: PortVlan,
    /// Link state as of the last control tick; down members get no traffic.
    pub up: bool,
}

/// Packets queued for one member during a burst.
struct Batch {
    items: Box<[TxItem; MAX_BURST]>,
    len: u16,
}

pub struct Bridge {
    cfg: BridgeConfig,
    members: Vec<MemberInfo>,
    /// Parallel to `members`.
    batches: Vec<Batch>,
    /// Members with a non-empty batch in the current burst (capacity = members, never grows
    /// while forwarding).
    dirty: Vec<u16>,
    fdb: Fdb,
}

impl Bridge {
    pub fn new(cfg: BridgeConfig) -> Bridge {
        let fdb = Fdb::new(cfg.fdb_max, cfg.aging_secs);
        Bridge {
            cfg,
            members: Vec::new(),
            batches: Vec::new(),
            dirty: Vec::new(),
            fdb,
        }
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.cfg
    }
    pub fn name(&self) -> &str {
        &self.cfg.name
    }
    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }
    pub fn fdb_mut(&mut self) -> &mut Fdb {
        &mut self.fdb
    }

    /// Adds the port in switch slot `slot`; returns its member index. Control path.
    pub fn add_member(&mut self, slot: u16, vlan: &VlanMode, up: bool) -> u16 {
        self.members.push(MemberInfo {
            slot,
            vlan: PortVlan::from_mode(vlan),
            up,
        });
        self.batches.push(Batch {
            items: Box::new([TxItem::default(); MAX_BURST]),
            len: 0,
        });
        self.dirty
            .reserve_exact(self.members.len().saturating_sub(self.dirty.len()));
        (self.members.len() - 1) as u16
    }

    /// Removes member `m` and its MAC entries. The last member takes index `m`: returns its
    /// slot when that happened so the caller can update its record. Control path.
    pub fn remove_member(&mut self, m: u16) -> Option<u16> {
        let mi = usize::from(m);
        if mi >= self.members.len() {
            return None;
        }
        let last = (self.members.len() - 1) as u16;
        self.fdb.flush_member(m);
        self.members.swap_remove(mi);
        self.batches.swap_remove(mi);
        if m != last {
            self.fdb.renumber(last, m);
            Some(self.members[mi].slot)
        } else {
            None
        }
    }

    /// Records a member's link state; a member going down forgets its MACs (like a kernel
    /// bridge), so traffic floods until they are learned elsewhere.
    pub fn set_member_up(&mut self, m: u16, up: bool) {
        if let Some(info) = self.members.get_mut(usize::from(m)) {
            if info.up && !up {
                self.fdb.flush_member(m);
            }
            info.up = up;
        }
    }

    /// Member index of the port in `slot`. Control path (linear).
    pub fn member_of_slot(&self, slot: u16) -> Option<u16> {
        self.members
            .iter()
            .position(|i| i.slot == slot)
            .map(|p| p as u16)
    }

    /// Calls `send(slot, items)` once per member that has packets from the last
    /// [`Bridge::forward`], then empties the batches.
    #[inline]
    pub fn drain(&mut self, mut send: impl FnMut(u16, &[TxItem])) {
        for &m in &self.dirty {
            let b = &mut self.batches[usize::from(m)];
            send(
                self.members[usize::from(m)].slot,
                &b.items[..usize::from(b.len)],
            );
            b.len = 0;
        }
        self.dirty.clear();
    }
}
