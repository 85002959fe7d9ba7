//! uswitch engine: a userspace, polling-mode virtual switch.
//!
//! Layers (each only uses the ones before it):
//! - [`memif::wire`]: memif control messages and shared-memory layouts; parse/emit, no I/O, no unsafe.
//! - [`shm`], [`memif::ring`] and [`kernel::ring`]: mapped shared memory and rings; the only
//!   `unsafe` code besides the FFI calls of [`kernel::sys`] and [`dpdk`].
//! - [`port`]: the batch port trait (`rx_burst` / `tx_burst`) and packet references; ports live in
//!   [`memif`], [`vhost`], [`kernel`] (AF_PACKET) and [`dpdk`] (ethdevs, cargo feature `dpdk`).
//! - [`bridge`] and [`dataplane`]: MAC learning bridges, VLANs, xconnects, the polling worker.
//! - [`control`] and [`config`]: the JSON control API, config/state files, the daemon model.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod bridge;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod dpdk;
pub mod fakeport;
pub mod kernel;
pub mod memif;
pub mod port;
pub mod shm;
pub mod vhost;
