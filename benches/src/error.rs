//! Errors of the traffic tool (control path only: setup, handshakes, arguments).

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A memif link failed to come up or went down.
    #[error("memif {socket}: {msg}")]
    Link { socket: String, msg: String },
    /// Local setup: memory, eventfds, pinning.
    #[error("{0}")]
    Setup(String),
    /// A bad combination of command-line options.
    #[error("{0}")]
    Usage(String),
}
