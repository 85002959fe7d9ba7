//! memif (shared memory packet interface) v2.0: wire format, rings, and the memif port.
//!
//! - [`wire`]: control messages and ring/descriptor layouts (no I/O, no unsafe).
//! - [`ring`]: one ring in a mapped region: header atomics, descriptor copies, ordering rules.
//! - [`queue`]: rx/tx bursts for both roles.
//! - [`socket`]: the SEQPACKET control channel with fd passing.
//! - [`conn`]: the handshake state machine of one control connection (server and client role).
//! - [`port`]: [`MemifPort`], the `Port` implementation (accept/connect, backoff, stats, info).
pub mod conn;
pub mod port;
pub mod queue;
pub mod ring;
pub mod socket;
pub mod wire;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod interop_tests;
#[cfg(test)]
mod tests;

pub use port::MemifPort;

#[derive(Debug, thiserror::Error)]
pub enum MemifError {
    #[error("{0}")]
    Io(String),
    #[error("memif socket {path}: {msg}")]
    Socket { path: String, msg: String },
    #[error("memif config: {0}")]
    Config(String),
}
