//! Kernel ports: a Linux network interface (NIC, veth, bond, VLAN device...) as a switch port,
//! through an AF_PACKET socket with memory-mapped rings. No DPDK needed: this is the uplink of
//! a host without it.
//!
//! Layers:
//! - [`sys`]: the AF_PACKET socket, its options and the interface ioctls (control path).
//! - [`ring`]: the mapped TPACKET_V3 rx and tx rings, the only code that touches them; every
//!   header the kernel wrote is copied out and checked before use.
//! - [`port`]: [`KernelPort`], the batch [`crate::port::Port`]: link state, reopen after the
//!   interface disappears, counters.
//!
//! Rules the port enforces:
//! - **No per-packet syscalls.** rx reads closed blocks straight from the ring; tx fills ring
//!   frames and makes one `send()` kick per burst. Link state (`IFF_UP` and `IFF_RUNNING`), MTU,
//!   the interface index and the kernel's `PACKET_STATISTICS` drops are read in
//!   `poll_control`, every 100 ms, never per packet.
//! - **Socket options.** `TPACKET_V3`; `PACKET_VNET_HDR` (checksum completion on rx, copied
//!   frames on tx: see [`ring`]); `PACKET_LOSS` (a frame the kernel refuses does not stall the
//!   tx ring); `PACKET_IGNORE_OUTGOING` (we never receive frames sent on the interface, ours
//!   or the host's); `PACKET_QDISC_BYPASS` unless configured off (frames go straight to the
//!   driver: no tc, no qdisc lock; a full driver queue drops); promiscuous membership (so frames
//!   for any MAC reach the bridge); bound to the one interface with `ETH_P_ALL`.
//! - **Frame size.** One ring slot carries `frame_size - 58` bytes (Ethernet header and VLAN
//!   tag included): 1990 with the default 2048, enough for MTU 1500; MTU 9000 needs
//!   `frame_size` 16384. Longer frames, and frames the kernel truncated (GRO/GSO super-frames
//!   when the interface aggregates), are dropped and counted (`drop_no_buffer`). Frames longer
//!   than the interface MTU + 14 (+ 4 when tagged) are not sent (counted the same way).
//! - **Interface lifecycle.** Adding a port for a missing interface, or without CAP_NET_RAW,
//!   fails with a clear error and creates nothing. Once added, the port follows the
//!   interface: down/no carrier → link down; deleted → link down, socket and rings closed;
//!   created again (any new ifindex) → reopened (retry with backoff 100 ms..2 s if opening
//!   fails) and link up when it is running. Dropping the port closes the socket and unmaps
//!   the rings.
//!
//! Why TPACKET_V3 and not io_uring: V3 rx is zero-syscall (the kernel fills blocks we poll in
//! shared memory) and batches many frames per block, the tx ring needs one syscall per burst,
//! and both exist on every kernel we target (Debian 12's 6.1; `PACKET_IGNORE_OUTGOING` needs
//! 4.20). io_uring would still cost one `recvmsg`/`sendmsg` submission and a copy per packet.
//! V3's cost is latency at low rates: a block that is not full is handed to us when its retire
//! timer (1 ms here, rounded up to the kernel's timer tick) expires.
pub mod port;
pub mod ring;
pub mod sys;

pub use port::KernelPort;

/// Why a kernel port could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("opening an AF_PACKET socket on {0} is not permitted (uswitchd needs CAP_NET_RAW)")]
    NotPermitted(String),
    #[error("interface {iface} is not an Ethernet interface (hardware type {hw})")]
    NotEthernet { iface: String, hw: u16 },
    #[error("{iface}: {what}: {err}")]
    Sys {
        iface: String,
        what: &'static str,
        err: std::io::Error,
    },
}

#[cfg(test)]
mod veth_tests;
