//! memif (shared memory packet interface) v2.0: wire format, rings, and the memif port.
//! (STUB: signatures only; the memif work replaces this.)
use crate::config::MemifConfig;
use crate::port::{Port, PortInfo, PortStats, PktRef, TxItem};

#[derive(Debug, thiserror::Error)]
pub enum MemifError {
    #[error("{0}")]
    Io(String),
}

pub struct MemifPort {}

impl MemifPort {
    /// Server role: binds (and listens on) the socket before returning, so a bad path fails here.
    /// Client role: returns at once; connection attempts happen in `poll_control` with backoff.
    pub fn new(name: &str, cfg: &MemifConfig) -> Result<MemifPort, MemifError> {
        let _ = (name, cfg);
        unimplemented!()
    }
}

impl Port for MemifPort {
    fn name(&self) -> &str {
        unimplemented!()
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
        unimplemented!()
    }
    fn clear_stats(&mut self) {}
    fn info(&self) -> PortInfo {
        unimplemented!()
    }
    fn count_no_route(&mut self, _q: usize, _n: u64) {}
}
