//! The switch model: the desired [`SwitchConfig`], kept identical to what the backend runs and
//! to what the state file holds.
//!
//! Every change goes through three steps:
//! 1. **validate** against the whole model (names unique, bridge exists, a port is either on a
//!    bridge or in an xconnect, xconnect ports exist and are unbridged, a bridge with ports is
//!    busy, no two ports share a server socket, no two kernel ports share an interface, no two
//!    DPDK ports share a device, and DPDK ports only in a build with the feature `dpdk`).
//!    Nothing is created before this passes; e.g. a `port add` to a missing bridge never
//!    constructs the port, so no socket appears;
//! 2. **apply** to the backend; if the backend refuses, the model is untouched (the backend
//!    changes nothing on error, see [`super::backend`]);
//! 3. **persist** the new model to the state file; if that fails the change is undone in the
//!    backend and the model, and the caller gets an `io` error.
//!
//! Restoring a saved or configured [`SwitchConfig`] at startup ([`Switch::restore`]) runs the
//! same validate+apply per item, but keeps going: items that fail are logged and returned.
use crate::config::{
    BridgeConfig, ConfigError, MemifRole, PortConfig, PortKind, SwitchConfig, VlanMode,
    XconnectConfig,
};
use crate::control::api::{
    ApiError, ErrorCode, FdbEntry, PortEntry, ShowResult, WorkerStats, XconnectEntry,
};
use crate::control::backend::{Backend, PortFactory, PortOrigin};
use crate::control::state::{StateError, StateFile};
use crate::dataplane::{Attach, DpError};
use crate::port::{PortInfo, PortStats};

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Busy(String),
    /// A resource (e.g. a socket path) another object already uses.
    #[error("{0}")]
    Conflict(String),
    #[error("port {port}: {msg}")]
    PortCreate { port: String, msg: String },
    /// Not possible in this build (e.g. DPDK ports without the cargo feature `dpdk`).
    #[error("{0}")]
    Unsupported(String),
    #[error("dataplane: {0}")]
    Dataplane(#[from] DpError),
    #[error("{0}; the change was rolled back")]
    State(#[from] StateError),
}

impl SwitchError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SwitchError::Config(_) | SwitchError::Invalid(_) => ErrorCode::InvalidArgument,
            SwitchError::NotFound(_) => ErrorCode::NotFound,
            SwitchError::AlreadyExists(_) | SwitchError::Conflict(_) => ErrorCode::AlreadyExists,
            SwitchError::Busy(_) => ErrorCode::Busy,
            SwitchError::Unsupported(_) => ErrorCode::Unsupported,
            SwitchError::PortCreate { .. } | SwitchError::State(_) => ErrorCode::Io,
            SwitchError::Dataplane(d) => match d {
                DpError::NotFound(_) => ErrorCode::NotFound,
                DpError::AlreadyExists(_) => ErrorCode::AlreadyExists,
                DpError::Busy(_) => ErrorCode::Busy,
                DpError::Stopped => ErrorCode::Internal,
            },
        }
    }
}

impl From<SwitchError> for ApiError {
    fn from(e: SwitchError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

/// How to revert one applied change (model and backend).
enum Undo {
    DelBridge(String),
    AddBridge(usize, BridgeConfig),
    DelPort(String),
    AddPort {
        idx: usize,
        port: PortConfig,
        xc: Option<(usize, XconnectConfig)>,
    },
    DelXconnect(String),
    AddXconnect(usize, XconnectConfig),
}

// ---- validation against a model (pure) ----

fn find_port<'a>(m: &'a SwitchConfig, name: &str) -> Option<&'a PortConfig> {
    m.ports.iter().find(|p| p.name == name)
}

fn xconnect_of(m: &SwitchConfig, port: &str) -> Option<usize> {
    m.xconnects.iter().position(|x| x.a == port || x.b == port)
}

pub fn check_bridge_add(m: &SwitchConfig, b: &BridgeConfig) -> Result<(), SwitchError> {
    b.validate()?;
    if m.bridges.iter().any(|x| x.name == b.name) {
        return Err(SwitchError::AlreadyExists(format!("bridge {}", b.name)));
    }
    Ok(())
}

pub fn check_bridge_del(m: &SwitchConfig, name: &str) -> Result<usize, SwitchError> {
    let idx = m
        .bridges
        .iter()
        .position(|b| b.name == name)
        .ok_or_else(|| SwitchError::NotFound(format!("bridge {name}")))?;
    let ports: Vec<&str> = m
        .ports
        .iter()
        .filter(|p| p.bridge.as_deref() == Some(name))
        .map(|p| p.name.as_str())
        .collect();
    if !ports.is_empty() {
        return Err(SwitchError::Busy(format!(
            "bridge {name} still has ports: {}",
            ports.join(", ")
        )));
    }
    Ok(idx)
}

pub fn check_port_add(m: &SwitchConfig, p: &PortConfig) -> Result<(), SwitchError> {
    p.validate()?;
    if find_port(m, &p.name).is_some() {
        return Err(SwitchError::AlreadyExists(format!("port {}", p.name)));
    }
    match &p.bridge {
        Some(b) if !m.bridges.iter().any(|x| &x.name == b) => {
            return Err(SwitchError::NotFound(format!("bridge {b}")));
        }
        None if p.vlan != VlanMode::None => {
            return Err(SwitchError::Invalid(format!(
                "port {}: a VLAN setting needs a bridge",
                p.name
            )));
        }
        _ => {}
    }
    // Two servers on one path would steal each other's socket; two clients with the same
    // socket and id would fight over one peer interface. A server and a client on the same
    // path (a loop through the switch) is allowed. vhost-user sockets are never shared.
    if let Some(socket) = p.kind.socket() {
        check_socket_free(m, p, socket)?;
    }
    // An interface has one kernel port: two AF_PACKET ports on it would each receive every
    // frame and each send into it, duplicating traffic.
    if let PortKind::Kernel(k) = &p.kind {
        let other = m.ports.iter().find(|o| match &o.kind {
            PortKind::Kernel(ok) => ok.iface == k.iface,
            _ => false,
        });
        if let Some(o) = other {
            return Err(SwitchError::Conflict(format!(
                "interface {} is already used by kernel port {}",
                k.iface, o.name
            )));
        }
    }
    if let PortKind::Dpdk(d) = &p.kind {
        if !crate::dpdk::BUILT_IN {
            return Err(SwitchError::Unsupported(format!(
                "port {}: {}",
                p.name,
                crate::dpdk::DpdkError::NotBuiltIn
            )));
        }
        // One ethdev, one port: two ports polling one device would split its traffic.
        let other = m.ports.iter().find(|o| match &o.kind {
            PortKind::Dpdk(od) => od.device() == d.device(),
            _ => false,
        });
        if let Some(o) = other {
            return Err(SwitchError::Conflict(format!(
                "DPDK device {} is already used by port {}",
                d.device(),
                o.name
            )));
        }
    }
    Ok(())
}

fn check_socket_free(m: &SwitchConfig, p: &PortConfig, socket: &str) -> Result<(), SwitchError> {
    for other in &m.ports {
        if other.kind.socket() != Some(socket) {
            continue;
        }
        let (PortKind::Memif(new), PortKind::Memif(o)) = (&p.kind, &other.kind) else {
            return Err(SwitchError::Conflict(format!(
                "socket {socket} is already used by port {}",
                other.name
            )));
        };
        if o.role != new.role {
            continue;
        }
        if new.role == MemifRole::Server {
            return Err(SwitchError::Conflict(format!(
                "socket {} is already served by port {}",
                new.socket, other.name
            )));
        }
        if o.id == new.id {
            return Err(SwitchError::Conflict(format!(
                "socket {} id {} is already used by client port {}",
                new.socket, o.id, other.name
            )));
        }
    }
    Ok(())
}

pub fn check_port_del(m: &SwitchConfig, name: &str) -> Result<usize, SwitchError> {
    m.ports
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| SwitchError::NotFound(format!("port {name}")))
}

pub fn check_xconnect(m: &SwitchConfig, a: &str, b: &str) -> Result<(), SwitchError> {
    if a == b {
        return Err(SwitchError::Invalid(format!(
            "cannot xconnect port {a} to itself"
        )));
    }
    for n in [a, b] {
        let p = find_port(m, n).ok_or_else(|| SwitchError::NotFound(format!("port {n}")))?;
        if let Some(br) = &p.bridge {
            return Err(SwitchError::Busy(format!("port {n} is on bridge {br}")));
        }
        if let Some(i) = xconnect_of(m, n) {
            let x = &m.xconnects[i];
            return Err(SwitchError::Busy(format!(
                "port {n} is already in xconnect {} <-> {}",
                x.a, x.b
            )));
        }
    }
    Ok(())
}

pub fn check_xconnect_del(m: &SwitchConfig, a: &str) -> Result<usize, SwitchError> {
    if find_port(m, a).is_none() {
        return Err(SwitchError::NotFound(format!("port {a}")));
    }
    xconnect_of(m, a).ok_or_else(|| SwitchError::NotFound(format!("xconnect of port {a}")))
}

/// Checks a whole config (e.g. `--config FILE`) as if its items were added in order.
pub fn validate_config(c: &SwitchConfig) -> Result<(), SwitchError> {
    if let Some(d) = &c.dpdk {
        d.validate().map_err(SwitchError::Invalid)?;
    }
    let mut m = SwitchConfig::default();
    for b in &c.bridges {
        check_bridge_add(&m, b)?;
        m.bridges.push(b.clone());
    }
    for p in &c.ports {
        check_port_add(&m, p)?;
        m.ports.push(p.clone());
    }
    for x in &c.xconnects {
        check_xconnect(&m, &x.a, &x.b)?;
        m.xconnects.push(x.clone());
    }
    Ok(())
}

/// "what: error", without repeating `what` when the error message already starts with it.
fn prefixed(what: &str, e: &SwitchError) -> String {
    let msg = e.to_string();
    if msg.starts_with(what) {
        msg
    } else {
        format!("{what}: {msg}")
    }
}

fn attach_of(p: &PortConfig) -> Attach {
    match &p.bridge {
        Some(b) => Attach::Bridge {
            bridge: b.clone(),
            vlan: p.vlan.clone(),
        },
        None => Attach::None,
    }
}

/// The model plus the backend it drives and the state file it persists to.
pub struct Switch {
    cfg: SwitchConfig,
    backend: Box<dyn Backend>,
    factory: PortFactory,
    state: Option<StateFile>,
    restore_errors: Vec<String>,
}

impl Switch {
    /// An empty switch. With `state` = None nothing is persisted (tests, `--state none`).
    pub fn new(
        backend: Box<dyn Backend>,
        factory: PortFactory,
        state: Option<StateFile>,
    ) -> Switch {
        Switch {
            cfg: SwitchConfig::default(),
            backend,
            factory,
            state,
            restore_errors: Vec::new(),
        }
    }

    pub fn config(&self) -> &SwitchConfig {
        &self.cfg
    }

    /// Items that failed to come up at startup (also in `show`).
    pub fn restore_errors(&self) -> &[String] {
        &self.restore_errors
    }

    /// Writes the current model to the state file (no-op without one).
    pub fn save(&self) -> Result<(), StateError> {
        match &self.state {
            Some(s) => s.save(&self.cfg),
            None => Ok(()),
        }
    }

    /// Applies every item of `c` in order (bridges, ports, xconnects) without persisting.
    /// Failed items are logged, skipped and returned as messages; the rest come up.
    pub fn restore(&mut self, c: &SwitchConfig) -> Vec<String> {
        let mut errs = Vec::new();
        if let Some(d) = &c.dpdk {
            // Kept in the model (and so in the state file); `uswitchd --dpdk-*` options win.
            match d.validate() {
                Ok(()) => {
                    self.cfg.dpdk = Some(d.clone());
                    crate::dpdk::apply_settings(d);
                }
                Err(e) => errs.push(e),
            }
        }
        for b in &c.bridges {
            if let Err(e) = self.apply_bridge_add(b.clone()) {
                errs.push(prefixed(&format!("bridge {}", b.name), &e));
            }
        }
        for p in &c.ports {
            if let Err(e) = self.apply_port_add(p.clone(), PortOrigin::Restore) {
                errs.push(prefixed(&format!("port {}", p.name), &e));
            }
        }
        for x in &c.xconnects {
            if let Err(e) = self.apply_xconnect(&x.a, &x.b) {
                errs.push(format!("xconnect {} <-> {}: {e}", x.a, x.b));
            }
        }
        for e in &errs {
            tracing::error!("not restored: {e}");
        }
        self.restore_errors.extend(errs.iter().cloned());
        errs
    }

    // ---- changes ----

    pub fn add_bridge(&mut self, b: BridgeConfig) -> Result<(), SwitchError> {
        let name = b.name.clone();
        let undo = self.apply_bridge_add(b)?;
        self.persist_or_undo(undo)?;
        tracing::info!(bridge = %name, "bridge added");
        Ok(())
    }

    pub fn del_bridge(&mut self, name: &str) -> Result<(), SwitchError> {
        let idx = check_bridge_del(&self.cfg, name)?;
        self.backend.del_bridge(name)?;
        let b = self.cfg.bridges.remove(idx);
        self.persist_or_undo(Undo::AddBridge(idx, b))?;
        tracing::info!(bridge = %name, "bridge deleted");
        Ok(())
    }

    /// Adds a port; returns its entry (config + info).
    pub fn add_port(&mut self, p: PortConfig) -> Result<PortEntry, SwitchError> {
        let name = p.name.clone();
        let undo = self.apply_port_add(p, PortOrigin::Request)?;
        self.persist_or_undo(undo)?;
        tracing::info!(port = %name, "port added");
        let entry = self
            .port_list()?
            .into_iter()
            .find(|e| e.config.name == name);
        entry.ok_or_else(|| SwitchError::NotFound(format!("port {name}")))
    }

    /// Deletes a port and the xconnect it is in.
    pub fn del_port(&mut self, name: &str) -> Result<(), SwitchError> {
        let idx = check_port_del(&self.cfg, name)?;
        let xc = xconnect_of(&self.cfg, name);
        if xc.is_some() {
            self.backend.del_xconnect(name)?;
        }
        if let Err(e) = self.backend.del_port(name) {
            if let Some(i) = xc {
                let x = &self.cfg.xconnects[i];
                if let Err(e2) = self.backend.xconnect(&x.a, &x.b) {
                    tracing::error!(a = %x.a, b = %x.b, "could not restore xconnect: {e2}");
                }
            }
            return Err(e.into());
        }
        let xc = xc.map(|i| (i, self.cfg.xconnects.remove(i)));
        let port = self.cfg.ports.remove(idx);
        self.persist_or_undo(Undo::AddPort { idx, port, xc })?;
        tracing::info!(port = %name, "port deleted");
        Ok(())
    }

    pub fn xconnect(&mut self, a: &str, b: &str) -> Result<(), SwitchError> {
        let undo = self.apply_xconnect(a, b)?;
        self.persist_or_undo(undo)?;
        tracing::info!(%a, %b, "xconnect added");
        Ok(())
    }

    pub fn del_xconnect(&mut self, a: &str) -> Result<(), SwitchError> {
        let idx = check_xconnect_del(&self.cfg, a)?;
        self.backend.del_xconnect(a)?;
        let x = self.cfg.xconnects.remove(idx);
        self.persist_or_undo(Undo::AddXconnect(idx, x))?;
        tracing::info!(%a, "xconnect deleted");
        Ok(())
    }

    fn apply_bridge_add(&mut self, b: BridgeConfig) -> Result<Undo, SwitchError> {
        check_bridge_add(&self.cfg, &b)?;
        self.backend.add_bridge(b.clone())?;
        let name = b.name.clone();
        self.cfg.bridges.push(b);
        Ok(Undo::DelBridge(name))
    }

    fn apply_port_add(&mut self, p: PortConfig, origin: PortOrigin) -> Result<Undo, SwitchError> {
        check_port_add(&self.cfg, &p)?;
        let port = (self.factory)(&p, origin).map_err(|msg| SwitchError::PortCreate {
            port: p.name.clone(),
            msg,
        })?;
        self.backend.add_port(port, attach_of(&p))?;
        let name = p.name.clone();
        self.cfg.ports.push(p);
        Ok(Undo::DelPort(name))
    }

    fn apply_xconnect(&mut self, a: &str, b: &str) -> Result<Undo, SwitchError> {
        check_xconnect(&self.cfg, a, b)?;
        self.backend.xconnect(a, b)?;
        self.cfg.xconnects.push(XconnectConfig {
            a: a.to_string(),
            b: b.to_string(),
        });
        Ok(Undo::DelXconnect(a.to_string()))
    }

    fn persist_or_undo(&mut self, undo: Undo) -> Result<(), SwitchError> {
        let Err(e) = self.save() else { return Ok(()) };
        tracing::error!("{e}; rolling back");
        self.undo(undo);
        Err(e.into())
    }

    /// Reverts one applied change. Backend failures here are logged (the model follows what
    /// the backend really has).
    fn undo(&mut self, u: Undo) {
        let log = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!("rollback of {what} failed: {e}")
        };
        match u {
            Undo::DelBridge(n) => {
                if let Err(e) = self.backend.del_bridge(&n) {
                    log("bridge add", &e);
                }
                self.cfg.bridges.retain(|b| b.name != n);
            }
            Undo::AddBridge(i, b) => match self.backend.add_bridge(b.clone()) {
                Ok(()) => self.cfg.bridges.insert(i, b),
                Err(e) => log("bridge delete", &e),
            },
            Undo::DelPort(n) => {
                if let Err(e) = self.backend.del_port(&n) {
                    log("port add", &e);
                }
                self.cfg.ports.retain(|p| p.name != n);
            }
            Undo::AddPort { idx, port, xc } => {
                let made = (self.factory)(&port, PortOrigin::Restore)
                    .map_err(|m| SwitchError::PortCreate {
                        port: port.name.clone(),
                        msg: m,
                    })
                    .and_then(|obj| Ok(self.backend.add_port(obj, attach_of(&port))?));
                match made {
                    Ok(()) => {
                        self.cfg.ports.insert(idx, port);
                        if let Some((i, x)) = xc {
                            match self.backend.xconnect(&x.a, &x.b) {
                                Ok(()) => self.cfg.xconnects.insert(i, x),
                                Err(e) => log("xconnect removal", &e),
                            }
                        }
                    }
                    Err(e) => log("port delete", &e),
                }
            }
            Undo::DelXconnect(a) => {
                if let Err(e) = self.backend.del_xconnect(&a) {
                    log("xconnect add", &e);
                }
                self.cfg.xconnects.retain(|x| x.a != a && x.b != a);
            }
            Undo::AddXconnect(i, x) => match self.backend.xconnect(&x.a, &x.b) {
                Ok(()) => self.cfg.xconnects.insert(i, x),
                Err(e) => log("xconnect delete", &e),
            },
        }
    }

    // ---- queries ----

    pub fn port_list(&self) -> Result<Vec<PortEntry>, SwitchError> {
        let infos = self.backend.port_infos()?;
        Ok(self
            .cfg
            .ports
            .iter()
            .map(|p| {
                let info = infos
                    .iter()
                    .find(|i| i.name == p.name)
                    .cloned()
                    .unwrap_or_else(|| PortInfo {
                        name: p.name.clone(),
                        kind: p.kind.type_name().into(),
                        ..PortInfo::default()
                    });
                let xconnect = xconnect_of(&self.cfg, &p.name).map(|i| {
                    let x = &self.cfg.xconnects[i];
                    if x.a == p.name {
                        x.b.clone()
                    } else {
                        x.a.clone()
                    }
                });
                PortEntry {
                    config: p.clone(),
                    info,
                    xconnect,
                }
            })
            .collect())
    }

    pub fn show(&self) -> Result<ShowResult, SwitchError> {
        let mut bridges = self.backend.bridges()?;
        // Report bridges in model order.
        bridges.sort_by_key(|b| {
            self.cfg
                .bridges
                .iter()
                .position(|x| x.name == b.config.name)
        });
        Ok(ShowResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            bridges,
            ports: self.port_list()?,
            xconnects: self
                .cfg
                .xconnects
                .iter()
                .map(|x| XconnectEntry {
                    a: x.a.clone(),
                    b: x.b.clone(),
                })
                .collect(),
            worker: self.backend.worker_stats(false)?,
            restore_errors: self.restore_errors.clone(),
        })
    }

    pub fn stats(&self, port: Option<&str>, clear: bool) -> Result<Vec<PortStats>, SwitchError> {
        if let Some(p) = port {
            check_port_del(&self.cfg, p)?;
        }
        Ok(self.backend.port_stats(port, clear)?)
    }

    pub fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, SwitchError> {
        if !self.cfg.bridges.iter().any(|b| b.name == bridge) {
            return Err(SwitchError::NotFound(format!("bridge {bridge}")));
        }
        Ok(self.backend.fdb(bridge)?)
    }

    pub fn worker_stats(&self, clear: bool) -> Result<WorkerStats, SwitchError> {
        Ok(self.backend.worker_stats(clear)?)
    }

    /// Stops the backend (all ports are dropped). The state file is kept.
    pub fn shutdown(self) {
        self.backend.stop();
    }
}

#[cfg(test)]
#[path = "switch_tests.rs"]
mod tests;
