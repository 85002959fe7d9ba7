//! The switch as the dataplane worker owns it: ports in stable slots, bridges, xconnects, one
//! poll iteration, and the control operations the worker runs between iterations.
//!
//! Rules it enforces:
//! - Ports live in `Vec<Option<PortSlot>>`; a slot index never changes while the port exists,
//!   freed slots are reused. Adding or removing a port touches only that port (and its bridge
//!   or xconnect peer); traffic between other ports continues.
//! - A port is in at most one of: a bridge, an xconnect, nothing (received traffic dropped and
//!   counted as no-route, so a peer's ring never stalls).
//! - Per rx queue: `rx_burst` → forward → one `tx_burst` per destination → `rx_release`;
//!   control work (`poll_control`, adds, removes) only happens in [`Switch::control_tick`] and
//!   the control operations, never in between (the port contract in `port.rs`).
//! - [`Switch::poll`] does not allocate, lock, or read the clock; time (`now_ms`) advances in
//!   [`Switch::control_tick`]. It visits a prebuilt list of the up ports' rx queues (rebuilt on
//!   the control path when ports, links, xconnects or queue counts change). Link state is
//!   sampled there too: a port that went down gets no traffic and its MAC entries are flushed.
//!
//! Not here: threads, channels, cycle accounting (`dataplane.rs`); forwarding decisions
//! (`forward.rs`).
use super::Bridge;
use crate::config::BridgeConfig;
use crate::control::api::{BridgeEntry, FdbEntry};
use crate::dataplane::{Attach, DpError};
use crate::port::{PktRef, Port, PortInfo, PortStats, TxItem, VlanEdit, MAX_BURST};
use std::time::Instant;

/// Packets asked for per `rx_burst` unless configured otherwise.
pub const DEFAULT_BURST: usize = 32;
/// Most ports a switch holds (slot indices are u16).
pub const MAX_PORTS: usize = 4096;

const fn identity_items() -> [TxItem; MAX_BURST] {
    let mut a = [TxItem {
        idx: 0,
        edit: VlanEdit::Keep,
    }; MAX_BURST];
    let mut i = 0;
    while i < MAX_BURST {
        a[i].idx = i as u16;
        i += 1;
    }
    a
}
/// Every packet of a burst, unchanged: what an xconnect sends.
static XC_ITEMS: [TxItem; MAX_BURST] = identity_items();

/// Where a port's received traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    None,
    Bridge { bridge: u16, member: u16 },
    Xconnect { peer: u16 },
}

struct PortSlot {
    port: Box<dyn Port>,
    name: String,
    link: Link,
    /// Link state as of the last control tick.
    up: bool,
    /// Rx queues usable as of the last control tick.
    rxq: usize,
    /// `poll_control` is due at this control tick (see [`Switch::control_tick`]).
    control_ready: bool,
}

/// One rx queue the poll loop visits, with where its traffic goes.
#[derive(Clone, Copy)]
struct RxEntry {
    slot: u16,
    q: u16,
    link: Link,
}

pub struct Switch {
    slots: Vec<Option<PortSlot>>,
    /// The rx queues of ports that were up at the last control tick, in slot order: what
    /// [`Switch::poll`] visits. Rebuilt (control path) whenever a port, link, xconnect or
    /// queue count changes, so an idle or down port costs the poll loop nothing.
    active: Vec<RxEntry>,
    bridges: Vec<Option<Bridge>>,
    /// Receive burst array (MAX_BURST entries, `burst` used).
    pkts: Box<[PktRef]>,
    burst: usize,
    now_ms: u64,
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}

impl Switch {
    pub fn new() -> Switch {
        Switch {
            slots: Vec::new(),
            active: Vec::new(),
            bridges: Vec::new(),
            pkts: vec![PktRef::default(); MAX_BURST].into_boxed_slice(),
            burst: DEFAULT_BURST,
            now_ms: 0,
        }
    }

    /// Packets per `rx_burst`, clamped to 1..=[`MAX_BURST`].
    pub fn set_burst(&mut self, n: usize) {
        self.burst = n.clamp(1, MAX_BURST);
    }
    pub fn burst(&self) -> usize {
        self.burst
    }
    /// The millisecond tick of the last control tick.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Rebuilds the poll list from the slots. Control path.
    fn rebuild_active(&mut self) {
        self.active.clear();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            for q in 0..s.rxq {
                self.active.push(RxEntry {
                    slot: i as u16,
                    q: q as u16,
                    link: s.link,
                });
            }
        }
    }

    fn slot_of(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.name == name))
    }
    fn bridge_of(&self, name: &str) -> Option<usize> {
        self.bridges
            .iter()
            .position(|b| b.as_ref().is_some_and(|b| b.name() == name))
    }
    fn port_not_found(name: &str) -> DpError {
        DpError::NotFound(format!("port {name}"))
    }
    fn name_of(&self, slot: u16) -> String {
        match self.slots.get(usize::from(slot)) {
            Some(Some(s)) => s.name.clone(),
            _ => format!("#{slot}"),
        }
    }

    pub fn add_bridge(&mut self, cfg: BridgeConfig) -> Result<(), DpError> {
        if self.bridge_of(&cfg.name).is_some() {
            return Err(DpError::AlreadyExists(format!("bridge {}", cfg.name)));
        }
        let b = Bridge::new(cfg);
        match self.bridges.iter().position(Option::is_none) {
            Some(i) => self.bridges[i] = Some(b),
            None if self.bridges.len() < usize::from(u16::MAX) => self.bridges.push(Some(b)),
            None => return Err(DpError::Busy("too many bridges".into())),
        }
        Ok(())
    }

    /// Fails with `Busy` while ports are attached.
    pub fn del_bridge(&mut self, name: &str) -> Result<(), DpError> {
        let i = self
            .bridge_of(name)
            .ok_or_else(|| DpError::NotFound(format!("bridge {name}")))?;
        if let Some(b) = &self.bridges[i] {
            if !b.members().is_empty() {
                let names: Vec<String> = b.members().iter().map(|m| self.name_of(m.slot)).collect();
                return Err(DpError::Busy(format!(
                    "bridge {name} still has ports: {}",
                    names.join(", ")
                )));
            }
        }
        self.bridges[i] = None;
        Ok(())
    }

    /// Takes ownership of `port`. On error the port is dropped (closing what it opened).
    pub fn add_port(&mut self, port: Box<dyn Port>, attach: Attach) -> Result<(), DpError> {
        let name = port.name().to_string();
        if self.slot_of(&name).is_some() {
            return Err(DpError::AlreadyExists(format!("port {name}")));
        }
        let bridge = match &attach {
            Attach::None => None,
            Attach::Bridge { bridge, .. } => Some(
                self.bridge_of(bridge)
                    .ok_or_else(|| DpError::NotFound(format!("bridge {bridge}")))?,
            ),
        };
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.slots.len() < MAX_PORTS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(DpError::Busy(format!("switch is full ({MAX_PORTS} ports)"))),
        };
        let up = port.link_up();
        let rxq = if up { port.rx_queues() } else { 0 };
        let mut link = Link::None;
        if let (Some(bi), Attach::Bridge { vlan, .. }) = (bridge, &attach) {
            if let Some(b) = self.bridges[bi].as_mut() {
                let member = b.add_member(slot as u16, vlan, up);
                link = Link::Bridge {
                    bridge: bi as u16,
                    member,
                };
            }
        }
        tracing::debug!(port = %name, slot, ?attach, "port added to dataplane");
        self.slots[slot] = Some(PortSlot {
            port,
            name,
            link,
            up,
            rxq,
            control_ready: true,
        });
        self.rebuild_active();
        Ok(())
    }

    /// Removes the port from its bridge (flushing its MAC entries) or xconnect and drops it.
    pub fn del_port(&mut self, name: &str) -> Result<(), DpError> {
        let i = self
            .slot_of(name)
            .ok_or_else(|| Self::port_not_found(name))?;
        let Some(s) = self.slots[i].take() else {
            return Err(Self::port_not_found(name));
        };
        match s.link {
            Link::None => {}
            Link::Xconnect { peer } => {
                if let Some(Some(p)) = self.slots.get_mut(usize::from(peer)) {
                    p.link = Link::None;
                }
            }
            Link::Bridge { bridge, member } => {
                let moved = self.bridges[usize::from(bridge)]
                    .as_mut()
                    .and_then(|b| b.remove_member(member));
                if let Some(moved_slot) = moved {
                    if let Some(Some(p)) = self.slots.get_mut(usize::from(moved_slot)) {
                        p.link = Link::Bridge { bridge, member };
                    }
                }
            }
        }
        tracing::debug!(port = %name, slot = i, "port removed from dataplane");
        self.rebuild_active();
        drop(s);
        Ok(())
    }

    /// Connects two unbridged, unconnected ports back to back.
    pub fn xconnect(&mut self, a: &str, b: &str) -> Result<(), DpError> {
        let ia = self.slot_of(a).ok_or_else(|| Self::port_not_found(a))?;
        let ib = self.slot_of(b).ok_or_else(|| Self::port_not_found(b))?;
        if ia == ib {
            return Err(DpError::Busy(format!(
                "port {a} cannot be cross-connected to itself"
            )));
        }
        for (i, n) in [(ia, a), (ib, b)] {
            match self.slots[i].as_ref().map(|s| s.link) {
                Some(Link::Bridge { bridge, .. }) => {
                    let br = self.bridges[usize::from(bridge)]
                        .as_ref()
                        .map_or("?", |b| b.name());
                    return Err(DpError::Busy(format!("port {n} is on bridge {br}")));
                }
                Some(Link::Xconnect { peer }) => {
                    return Err(DpError::Busy(format!(
                        "port {n} is already cross-connected to {}",
                        self.name_of(peer)
                    )));
                }
                _ => {}
            }
        }
        if let Some(s) = self.slots[ia].as_mut() {
            s.link = Link::Xconnect { peer: ib as u16 };
        }
        if let Some(s) = self.slots[ib].as_mut() {
            s.link = Link::Xconnect { peer: ia as u16 };
        }
        self.rebuild_active();
        Ok(())
    }

    /// Removes the xconnect port `a` is part of.
    pub fn del_xconnect(&mut self, a: &str) -> Result<(), DpError> {
        let ia = self.slot_of(a).ok_or_else(|| Self::port_not_found(a))?;
        let Some(Link::Xconnect { peer }) = self.slots[ia].as_ref().map(|s| s.link) else {
            return Err(DpError::NotFound(format!("xconnect of port {a}")));
        };
        for i in [ia, usize::from(peer)] {
            if let Some(Some(s)) = self.slots.get_mut(i) {
                s.link = Link::None;
            }
        }
        self.rebuild_active();
        Ok(())
    }

    /// Xconnected pairs, each once.
    pub fn xconnects(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(PortSlot {
                link: Link::Xconnect { peer },
                name,
                ..
            }) = s
            {
                if i < usize::from(*peer) {
                    v.push((name.clone(), self.name_of(*peer)));
                }
            }
        }
        v
    }

    /// Counters of one port (`name`) or all; `clear` resets them after reading.
    pub fn port_stats(
        &mut self,
        name: Option<&str>,
        clear: bool,
    ) -> Result<Vec<PortStats>, DpError> {
        let only = match name {
            Some(n) => Some(self.slot_of(n).ok_or_else(|| Self::port_not_found(n))?),
            None => None,
        };
        let mut out = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            if only.is_some_and(|o| o != i) {
                continue;
            }
            out.push(s.port.stats());
            if clear {
                s.port.clear_stats();
            }
        }
        Ok(out)
    }

    pub fn port_infos(&self) -> Vec<PortInfo> {
        self.slots.iter().flatten().map(|s| s.port.info()).collect()
    }

    pub fn bridges(&self) -> Vec<BridgeEntry> {
        self.bridges
            .iter()
            .flatten()
            .map(|b| BridgeEntry {
                config: b.config().clone(),
                ports: {
                    let mut v: Vec<String> =
                        b.members().iter().map(|m| self.name_of(m.slot)).collect();
                    v.sort();
                    v
                },
                fdb_entries: b.fdb().live_len(self.now_ms) as u32,
                fdb_full_drops: b.fdb().full_drops(),
            })
            .collect()
    }

    pub fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, DpError> {
        let i = self
            .bridge_of(bridge)
            .ok_or_else(|| DpError::NotFound(format!("bridge {bridge}")))?;
        let Some(b) = &self.bridges[i] else {
            return Err(DpError::NotFound(format!("bridge {bridge}")));
        };
        Ok(b.fdb()
            .entries(self.now_ms)
            .into_iter()
            .map(|e| FdbEntry {
                mac: super::fdb::format_mac(&e.mac),
                vlan: e.vlan,
                port: b
                    .members()
                    .get(usize::from(e.member))
                    .map_or_else(|| "?".into(), |m| self.name_of(m.slot)),
                age_secs: e.age_ms / 1000,
            })
            .collect())
    }

    /// Sets `control_ready` on every port that asked for `poll_control` or has a ready control
    /// fd: ONE `poll(2)` (no wait) over all ports' fds. If poll fails, every port is ready.
    fn mark_control_ready(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds: Vec<std::os::fd::BorrowedFd<'_>> = Vec::new();
        // (slot, first fd, fd count) of the ports that only want their fds watched.
        let mut watch: Vec<(usize, usize, usize)> = Vec::new();
        let mut always: Vec<usize> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            let first = fds.len();
            if s.port.control_interest(&mut fds) {
                fds.truncate(first);
                always.push(i);
            } else if fds.len() > first {
                watch.push((i, first, fds.len() - first));
            }
        }
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        let polled = pfds.is_empty() || poll(&mut pfds, PollTimeout::ZERO).is_ok();
        let mut ready = always;
        for &(i, first, n) in &watch {
            if !polled
                || pfds[first..first + n]
                    .iter()
                    .any(|p| p.revents().is_some_and(|r| !r.is_empty()))
            {
                ready.push(i);
            }
        }
        drop(pfds);
        drop(fds);
        for i in ready {
            if let Some(Some(s)) = self.slots.get_mut(i) {
                s.control_ready = true;
            }
        }
    }

    /// Control work between iterations (about every millisecond): advances time, runs the
    /// `poll_control` of every port whose `control_interest` asks for it or whose control fds
    /// are ready (one `poll(2)` for all), samples link state, ages MAC tables a slice at a time.
    /// Returns whether any port is up (the worker spins then, else it sleeps).
    pub fn control_tick(&mut self, now: Instant, now_ms: u64) -> bool {
        self.now_ms = now_ms;
        let mut any_up = false;
        let mut changed = false;
        self.mark_control_ready();
        for s in self.slots.iter_mut().flatten() {
            if std::mem::take(&mut s.control_ready) {
                s.port.poll_control(now);
            }
            s.port.tick();
            let up = s.port.link_up();
            let rxq = if up { s.port.rx_queues() } else { 0 };
            changed |= rxq != s.rxq;
            s.rxq = rxq;
            if up != s.up {
                tracing::info!(port = %s.name, up, "link state changed");
                s.up = up;
                if let Link::Bridge { bridge, member } = s.link {
                    if let Some(Some(b)) = self.bridges.get_mut(usize::from(bridge)) {
                        b.set_member_up(member, up);
                    }
                }
            }
            any_up |= up;
        }
        if changed {
            self.rebuild_active();
        }
        for b in self.bridges.iter_mut().flatten() {
            // A full pass over the table about every half second.
            let budget = b.fdb().table_size() / 512 + 16;
            b.fdb_mut().sweep(now_ms, budget);
        }
        any_up
    }

    /// One pass over every port's rx queues. Returns packets received. Hot path.
    pub fn poll(&mut self) -> usize {
        let mut total = 0;
        let burst = self.burst;
        let now = self.now_ms;
        for e in 0..self.active.len() {
            let RxEntry { slot, q, link } = self.active[e];
            let (i, q) = (usize::from(slot), usize::from(q));
            let n = match self.slots[i].as_mut() {
                Some(s) => s.port.rx_burst(q, &mut self.pkts[..burst]),
                None => 0,
            };
            if n == 0 {
                continue;
            }
            let n = n.min(burst);
            total += n;
            let pkts = &self.pkts[..n];
            let no_route = match link {
                Link::Xconnect { peer } => match self.slots.get_mut(usize::from(peer)) {
                    Some(Some(p)) if p.up => {
                        p.port.tx_burst(q, pkts, &XC_ITEMS[..n]);
                        0
                    }
                    _ => n as u32,
                },
                Link::Bridge { bridge, member } => {
                    match self.bridges.get_mut(usize::from(bridge)) {
                        Some(Some(br)) => {
                            let nr = br.forward(member, pkts, now);
                            let slots = &mut self.slots;
                            br.drain(|slot, items| {
                                if let Some(Some(p)) = slots.get_mut(usize::from(slot)) {
                                    p.port.tx_burst(q, pkts, items);
                                }
                            });
                            nr
                        }
                        _ => n as u32,
                    }
                }
                Link::None => n as u32,
            };
            if let Some(s) = self.slots[i].as_mut() {
                if no_route > 0 {
                    s.port.count_no_route(q, u64::from(no_route));
                }
                s.port.rx_release(q);
            }
        }
        total
    }
}
