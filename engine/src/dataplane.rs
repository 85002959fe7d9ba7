//! The polling worker. (STUB: signatures only; the bridge/dataplane work replaces the bodies.)
use crate::config::{BridgeConfig, VlanMode};
use crate::control::api::{BridgeEntry, FdbEntry, WorkerStats};
use crate::port::{Port, PortInfo, PortStats};

/// Where a new port is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// Not forwarding until put in an xconnect.
    None,
    Bridge { bridge: String, vlan: VlanMode },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DpError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Busy(String),
    #[error("dataplane worker is not running")]
    Stopped,
}

/// Handle to the worker thread. All state lives in the worker; calls are messages to it.
pub struct Dataplane {}

impl Dataplane {
    pub fn start(core: Option<usize>) -> std::io::Result<Dataplane> {
        let _ = core;
        unimplemented!()
    }
    pub fn add_bridge(&self, cfg: BridgeConfig) -> Result<(), DpError> {
        let _ = cfg;
        unimplemented!()
    }
    pub fn del_bridge(&self, name: &str) -> Result<(), DpError> {
        let _ = name;
        unimplemented!()
    }
    pub fn add_port(&self, port: Box<dyn Port>, attach: Attach) -> Result<(), DpError> {
        let _ = (port, attach);
        unimplemented!()
    }
    pub fn del_port(&self, name: &str) -> Result<(), DpError> {
        let _ = name;
        unimplemented!()
    }
    pub fn xconnect(&self, a: &str, b: &str) -> Result<(), DpError> {
        let _ = (a, b);
        unimplemented!()
    }
    pub fn del_xconnect(&self, a: &str) -> Result<(), DpError> {
        let _ = a;
        unimplemented!()
    }
    pub fn port_stats(&self, name: Option<&str>, clear: bool) -> Result<Vec<PortStats>, DpError> {
        let _ = (name, clear);
        unimplemented!()
    }
    pub fn port_infos(&self) -> Result<Vec<PortInfo>, DpError> {
        unimplemented!()
    }
    pub fn bridges(&self) -> Result<Vec<BridgeEntry>, DpError> {
        unimplemented!()
    }
    pub fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, DpError> {
        let _ = bridge;
        unimplemented!()
    }
    pub fn worker_stats(&self, clear: bool) -> Result<WorkerStats, DpError> {
        let _ = clear;
        unimplemented!()
    }
    pub fn stop(self) {}
}
