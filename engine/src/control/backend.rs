//! What the switch model drives: the dataplane ([`Backend`]) and the port constructor
//! ([`PortFactory`]).
//!
//! The model in [`super::switch`] never talks to [`Dataplane`] or [`MemifPort`] directly, only
//! through these two seams, so its validation and rollback rules are tested against the
//! in-memory fake in [`super::fake`] and run unchanged against the real worker.
//!
//! Rules the model relies on (and the fake enforces):
//! - every call either fully succeeds or changes nothing;
//! - `add_port` takes ownership of the port; on error the port is dropped (closing its socket);
//! - `del_port` drops the port (a server port removes its socket file when dropped).
use crate::config::{BridgeConfig, PortConfig, PortKind};
use crate::control::api::{BridgeEntry, FdbEntry, WorkerStats};
use crate::dataplane::{Attach, Dataplane, DpError};
use crate::kernel::KernelPort;
use crate::memif::MemifPort;
use crate::port::{Port, PortInfo, PortStats};
use crate::vhost::VhostUserPort;

/// The dataplane operations the control plane uses. Implemented by [`Dataplane`] (the real
/// polling worker) and by [`super::fake::FakeBackend`].
pub trait Backend: Send {
    fn add_bridge(&self, cfg: BridgeConfig) -> Result<(), DpError>;
    fn del_bridge(&self, name: &str) -> Result<(), DpError>;
    fn add_port(&self, port: Box<dyn Port>, attach: Attach) -> Result<(), DpError>;
    fn del_port(&self, name: &str) -> Result<(), DpError>;
    fn xconnect(&self, a: &str, b: &str) -> Result<(), DpError>;
    fn del_xconnect(&self, a: &str) -> Result<(), DpError>;
    fn port_stats(&self, name: Option<&str>, clear: bool) -> Result<Vec<PortStats>, DpError>;
    fn port_infos(&self) -> Result<Vec<PortInfo>, DpError>;
    fn bridges(&self) -> Result<Vec<BridgeEntry>, DpError>;
    fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, DpError>;
    fn worker_stats(&self, clear: bool) -> Result<WorkerStats, DpError>;
    /// Stops the worker; every port is dropped.
    fn stop(self: Box<Self>);
}

impl Backend for Dataplane {
    fn add_bridge(&self, cfg: BridgeConfig) -> Result<(), DpError> {
        Dataplane::add_bridge(self, cfg)
    }
    fn del_bridge(&self, name: &str) -> Result<(), DpError> {
        Dataplane::del_bridge(self, name)
    }
    fn add_port(&self, port: Box<dyn Port>, attach: Attach) -> Result<(), DpError> {
        Dataplane::add_port(self, port, attach)
    }
    fn del_port(&self, name: &str) -> Result<(), DpError> {
        Dataplane::del_port(self, name)
    }
    fn xconnect(&self, a: &str, b: &str) -> Result<(), DpError> {
        Dataplane::xconnect(self, a, b)
    }
    fn del_xconnect(&self, a: &str) -> Result<(), DpError> {
        Dataplane::del_xconnect(self, a)
    }
    fn port_stats(&self, name: Option<&str>, clear: bool) -> Result<Vec<PortStats>, DpError> {
        Dataplane::port_stats(self, name, clear)
    }
    fn port_infos(&self) -> Result<Vec<PortInfo>, DpError> {
        Dataplane::port_infos(self)
    }
    fn bridges(&self) -> Result<Vec<BridgeEntry>, DpError> {
        Dataplane::bridges(self)
    }
    fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, DpError> {
        Dataplane::fdb(self, bridge)
    }
    fn worker_stats(&self, clear: bool) -> Result<WorkerStats, DpError> {
        Dataplane::worker_stats(self, clear)
    }
    fn stop(self: Box<Self>) {
        Dataplane::stop(*self)
    }
}

/// Why a port object is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOrigin {
    /// A `port_add` request: every problem is an error and nothing is created.
    Request,
    /// Startup from the state file (or re-creating a port a failed change removed): a port
    /// whose device is merely absent for now (a kernel port's interface) is created down and
    /// comes up when the device appears, as OVS does with a missing netdev.
    Restore,
}

/// Builds the port object for a validated [`PortConfig`]. Errors are messages for the user
/// (e.g. "bind /run/x.sock: permission denied"). Server ports must bind before returning.
pub type PortFactory = Box<dyn Fn(&PortConfig, PortOrigin) -> Result<Box<dyn Port>, String> + Send>;

/// The real factory: memif ports via [`MemifPort::new`], vhost-user ports via
/// [`VhostUserPort::new`], kernel ports via [`KernelPort::new`],
/// DPDK ports via [`crate::dpdk::new_port`] (an error without the feature `dpdk`).
pub fn real_port_factory() -> PortFactory {
    Box::new(|pc: &PortConfig, origin: PortOrigin| match &pc.kind {
        PortKind::Memif(m) => match MemifPort::new(&pc.name, m) {
            Ok(p) => Ok(Box::new(p) as Box<dyn Port>),
            Err(e) => Err(e.to_string()),
        },
        PortKind::VhostUser(v) => match VhostUserPort::new(&pc.name, v) {
            Ok(p) => Ok(Box::new(p) as Box<dyn Port>),
            Err(e) => Err(e.to_string()),
        },
        PortKind::Kernel(k) => {
            let made = match origin {
                PortOrigin::Request => KernelPort::new(&pc.name, k),
                PortOrigin::Restore => KernelPort::restore(&pc.name, k),
            };
            made.map(|p| Box::new(p) as Box<dyn Port>)
                .map_err(|e| e.to_string())
        }
        PortKind::Dpdk(d) => crate::dpdk::new_port(&pc.name, d).map_err(|e| e.to_string()),
    })
}
