//! vhost-user ports: uswitch as the vhost-user *backend* (the virtio-net device) for DPDK
//! `virtio_user`, QEMU and any other vhost-user frontend.
//!
//! Layers:
//! - [`mem`]: the frontend's memory table (SET_MEM_TABLE), mapped with the given offsets;
//!   every guest-physical or frontend-virtual address is translated with bounds checks.
//! - [`virtq`]: our split-virtqueue fast path (avail/used rings, descriptor chains, INDIRECT_DESC,
//!   MRG_RXBUF, EVENT_IDX, call eventfds). Hostile chains are dropped and counted, never trusted.
//! - [`handler`]: the vhost-user message handler (the rust-vmm `vhost` crate frames and parses
//!   the messages; we keep the negotiated state and build ready queues from it).
//! - [`session`]: the control thread that listens (server mode) or connects (client mode) and
//!   runs the blocking message loop, handing finished device state to the worker.
//! - [`port`]: [`VhostUserPort`], the [`crate::port::Port`] the dataplane polls.
//!
//! Threading rule: the message loop blocks on the socket, so it runs on its own thread. It never
//! touches a queue the worker uses; it builds a complete new [`virtq::Device`] and publishes it.
//! The worker swaps it in from `poll_control` (so never while Segs of the old memory are in
//! use), and the old mappings are unmapped when the last `Arc` of them drops.
pub mod handler;
pub mod mem;
pub mod port;
pub mod session;
pub mod virtq;

#[cfg(test)]
mod tests;

pub use port::VhostUserPort;

/// Offered virtio feature bits.
pub mod features {
    /// VIRTIO_NET_F_MRG_RXBUF: rx packets may span several chains (12-byte header).
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// VIRTIO_NET_F_MQ: more than one queue pair.
    pub const MQ: u64 = 1 << 22;
    /// VIRTIO_RING_F_INDIRECT_DESC.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// VIRTIO_RING_F_EVENT_IDX.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// VHOST_USER_F_PROTOCOL_FEATURES.
    pub const PROTOCOL_FEATURES: u64 = 1 << 30;
    /// VIRTIO_F_VERSION_1.
    pub const VERSION_1: u64 = 1 << 32;
    /// VIRTIO_F_IN_ORDER: we use every ring's chains in the order they were made available
    /// (`virtq` consumes avail entries in order and writes one used entry per chain in the
    /// same order, bad chains included), so we may say so; DPDK's virtio driver then takes
    /// its cheaper in-order rx/tx paths.
    pub const IN_ORDER: u64 = 1 << 35;
    /// Everything we offer.
    pub const OFFERED: u64 =
        MRG_RXBUF | MQ | INDIRECT_DESC | EVENT_IDX | PROTOCOL_FEATURES | VERSION_1 | IN_ORDER;
}

/// Control-path errors of a vhost-user port.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("socket {path}: {err}")]
    Socket { path: String, err: std::io::Error },
    #[error("memory table: {0}")]
    MemTable(String),
    #[error("vring {index}: {msg}")]
    Vring { index: usize, msg: String },
    #[error("mapping frontend memory: {0}")]
    Map(#[from] crate::shm::ShmError),
}
