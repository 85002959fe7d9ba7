//! An in-memory stand-in for the dataplane and its ports, for tests and for
//! `uswitchd --fake-dataplane` (control-plane testing without a polling worker).
//!
//! [`FakeBackend`] keeps the same rules as the real worker (duplicate names, bridge busy while
//! ports are attached, xconnect only between unbridged ports, `del_port` also removes the
//! port's xconnect) and can be told to fail the next mutating call, so tests can check that
//! the switch model rolls back. [`FakePort`] moves no packets; its link stays down.
use crate::config::{BridgeConfig, MemifRole, PortConfig, PortKind};
use crate::control::api::{BridgeEntry, FdbEntry, WorkerStats};
use crate::control::backend::{Backend, PortFactory};
use crate::dataplane::{Attach, DpError};
use crate::port::{PktRef, Port, PortInfo, PortStats, QueueStats, TxItem};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the fake dataplane currently holds (inspect it through [`FakeBackend::state`]).
#[derive(Default)]
pub struct FakeState {
    pub bridges: Vec<BridgeConfig>,
    pub ports: Vec<(Box<dyn Port>, Attach)>,
    pub xconnects: Vec<(String, String)>,
    /// When set, the next mutating call fails with this error and changes nothing.
    pub fail_next: Option<DpError>,
    /// Set by `stop`.
    pub stopped: bool,
    pub worker: WorkerStats,
}

impl FakeState {
    pub fn port_names(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|(p, _)| p.name().to_string())
            .collect()
    }
    pub fn bridge_names(&self) -> Vec<String> {
        self.bridges.iter().map(|b| b.name.clone()).collect()
    }
    fn has_port(&self, name: &str) -> bool {
        self.ports.iter().any(|(p, _)| p.name() == name)
    }
    fn in_xconnect(&self, name: &str) -> bool {
        self.xconnects.iter().any(|(a, b)| a == name || b == name)
    }
    fn check(&mut self) -> Result<(), DpError> {
        if self.stopped {
            return Err(DpError::Stopped);
        }
        match self.fail_next.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The fake dataplane. Cloning shares the state (keep a clone to inspect it in a test).
#[derive(Clone, Default)]
pub struct FakeBackend {
    inner: Arc<Mutex<FakeState>>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }
    /// Locks and returns the state (a poisoned lock is recovered: the state is plain data).
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for FakeBackend {
    fn add_bridge(&self, cfg: BridgeConfig) -> Result<(), DpError> {
        let mut s = self.state();
        s.check()?;
        if s.bridges.iter().any(|b| b.name == cfg.name) {
            return Err(DpError::AlreadyExists(format!("bridge {}", cfg.name)));
        }
        s.bridges.push(cfg);
        Ok(())
    }
    fn del_bridge(&self, name: &str) -> Result<(), DpError> {
        let mut s = self.state();
        s.check()?;
        let Some(i) = s.bridges.iter().position(|b| b.name == name) else {
            return Err(DpError::NotFound(format!("bridge {name}")));
        };
        if s.ports
            .iter()
            .any(|(_, a)| matches!(a, Attach::Bridge { bridge, .. } if bridge == name))
        {
            return Err(DpError::Busy(format!("bridge {name} has ports")));
        }
        s.bridges.remove(i);
        Ok(())
    }
    fn add_port(&self, port: Box<dyn Port>, attach: Attach) -> Result<(), DpError> {
        let mut s = self.state();
        s.check()?;
        if s.has_port(port.name()) {
            return Err(DpError::AlreadyExists(format!("port {}", port.name())));
        }
        if let Attach::Bridge { bridge, .. } = &attach {
            if !s.bridges.iter().any(|b| &b.name == bridge) {
                return Err(DpError::NotFound(format!("bridge {bridge}")));
            }
        }
        s.ports.push((port, attach));
        Ok(())
    }
    fn del_port(&self, name: &str) -> Result<(), DpError> {
        let mut s = self.state();
        s.check()?;
        let Some(i) = s.ports.iter().position(|(p, _)| p.name() == name) else {
            return Err(DpError::NotFound(format!("port {name}")));
        };
        s.ports.remove(i);
        s.xconnects.retain(|(a, b)| a != name && b != name);
        Ok(())
    }
    fn xconnect(&self, a: &str, b: &str) -> Result<(), DpError> {
        let mut s = self.state();
        s.check()?;
        for n in [a, b] {
            let Some((_, att)) = s.ports.iter().find(|(p, _)| p.name() == n) else {
                return Err(DpError::NotFound(format!("port {n}")));
            };
            if *att != Attach::None || s.in_xconnect(n) {
                return Err(DpError::Busy(format!("port {n} is in use")));
            }
        }
        s.xconnects.push((a.to_string(), b.to_string()));
        Ok(())
    }
    fn del_xconnect(&self, a: &str) -> Result<(), DpError> {
        let mut s = self.state();
        s.check()?;
        let before = s.xconnects.len();
        s.xconnects.retain(|(x, y)| x != a && y != a);
        if s.xconnects.len() == before {
            return Err(DpError::NotFound(format!("xconnect of {a}")));
        }
        Ok(())
    }
    fn port_stats(&self, name: Option<&str>, clear: bool) -> Result<Vec<PortStats>, DpError> {
        let mut s = self.state();
        if s.stopped {
            return Err(DpError::Stopped);
        }
        if let Some(n) = name {
            if !s.has_port(n) {
                return Err(DpError::NotFound(format!("port {n}")));
            }
        }
        let mut out = Vec::new();
        for (p, _) in s.ports.iter_mut() {
            if name.is_none_or(|n| n == p.name()) {
                out.push(p.stats());
                if clear {
                    p.clear_stats();
                }
            }
        }
        Ok(out)
    }
    fn port_infos(&self) -> Result<Vec<PortInfo>, DpError> {
        let s = self.state();
        Ok(s.ports.iter().map(|(p, _)| p.info()).collect())
    }
    fn bridges(&self) -> Result<Vec<BridgeEntry>, DpError> {
        let s = self.state();
        Ok(s.bridges
            .iter()
            .map(|b| BridgeEntry {
                config: b.clone(),
                ports: s
                    .ports
                    .iter()
                    .filter(
                        |(_, a)| matches!(a, Attach::Bridge { bridge, .. } if *bridge == b.name),
                    )
                    .map(|(p, _)| p.name().to_string())
                    .collect(),
                fdb_entries: 0,
                fdb_full_drops: 0,
            })
            .collect())
    }
    fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, DpError> {
        let s = self.state();
        if !s.bridges.iter().any(|b| b.name == bridge) {
            return Err(DpError::NotFound(format!("bridge {bridge}")));
        }
        Ok(Vec::new())
    }
    fn worker_stats(&self, clear: bool) -> Result<WorkerStats, DpError> {
        let mut s = self.state();
        let w = s.worker.clone();
        if clear {
            s.worker = WorkerStats {
                core: w.core,
                burst: w.burst,
                ..WorkerStats::default()
            };
        }
        Ok(w)
    }
    fn stop(self: Box<Self>) {
        let mut s = self.state();
        s.stopped = true;
        s.ports.clear();
    }
}

/// A port that moves nothing: link down, zero counters (settable through `stats`).
pub struct FakePort {
    pub cfg: PortConfig,
    pub stats: PortStats,
}

impl FakePort {
    pub fn new(cfg: &PortConfig) -> Self {
        let queues = cfg.kind.queues() as usize;
        let stats = PortStats {
            name: cfg.name.clone(),
            queues: vec![QueueStats::default(); queues],
            ..PortStats::default()
        };
        FakePort {
            cfg: cfg.clone(),
            stats,
        }
    }
}

impl Port for FakePort {
    fn name(&self) -> &str {
        &self.cfg.name
    }
    fn poll_control(&mut self, _now: std::time::Instant) {}
    fn link_up(&self) -> bool {
        false
    }
    fn rx_queues(&self) -> usize {
        0
    }
    fn tx_queues(&self) -> usize {
        0
    }
    fn rx_burst(&mut self, _q: usize, _out: &mut [PktRef]) -> usize {
        0
    }
    fn rx_release(&mut self, _q: usize) {}
    fn tx_burst(&mut self, _q: usize, _pkts: &[PktRef], _items: &[TxItem]) -> usize {
        0
    }
    fn stats(&self) -> PortStats {
        self.stats.clone()
    }
    fn clear_stats(&mut self) {
        let n = self.stats.queues.len();
        self.stats = PortStats {
            name: self.cfg.name.clone(),
            queues: vec![QueueStats::default(); n],
            ..PortStats::default()
        };
    }
    fn info(&self) -> PortInfo {
        let mut details = serde_json::Map::new();
        let kind = match &self.cfg.kind {
            PortKind::Memif(m) => {
                let role = match m.role {
                    MemifRole::Server => "server",
                    MemifRole::Client => "client",
                };
                details.insert("role".into(), role.into());
                details.insert("id".into(), m.id.into());
                "memif"
            }
            PortKind::VhostUser(v) => {
                let mode = match v.mode {
                    crate::config::VhostUserMode::Server => "server",
                    crate::config::VhostUserMode::Client => "client",
                };
                details.insert("mode".into(), mode.into());
                "vhost-user"
            }
            PortKind::Kernel(k) => {
                details.insert("iface".into(), k.iface.as_str().into());
                details.insert("frame_size".into(), k.frame_size.into());
                "kernel"
            }
            PortKind::Dpdk(d) => {
                details.insert("devargs".into(), d.devargs.as_str().into());
                "dpdk"
            }
        };
        if let Some(socket) = self.cfg.kind.socket() {
            details.insert("socket".into(), socket.into());
        }
        details.insert("queues".into(), self.cfg.kind.queues().into());
        details.insert("memory".into(), "fake".into());
        PortInfo {
            name: self.cfg.name.clone(),
            kind: kind.into(),
            link_up: false,
            details,
            ..PortInfo::default()
        }
    }
    fn count_no_route(&mut self, _q: usize, _n: u64) {}
}

/// Factory for [`FakePort`]s. Like a real server port it fails when the socket's directory
/// does not exist (nothing is bound, so no file is created); like a real kernel port it fails
/// when the interface does not exist (nothing is opened).
pub fn fake_port_factory() -> PortFactory {
    Box::new(|pc: &PortConfig, _| {
        let binds = match &pc.kind {
            PortKind::Memif(m) => m.role == MemifRole::Server && !m.is_abstract(),
            PortKind::VhostUser(v) => v.mode == crate::config::VhostUserMode::Server,
            PortKind::Kernel(k) => {
                if !Path::new("/sys/class/net").join(&k.iface).exists() {
                    return Err(format!("interface {} does not exist", k.iface));
                }
                false
            }
            PortKind::Dpdk(_) => false,
        };
        if let (true, Some(socket)) = (binds, pc.kind.socket()) {
            let dir = Path::new(socket).parent().unwrap_or(Path::new("/"));
            if !dir.is_dir() {
                return Err(format!(
                    "bind {}: directory {} does not exist",
                    socket,
                    dir.display()
                ));
            }
        }
        Ok(Box::new(FakePort::new(pc)) as Box<dyn Port>)
    })
}
