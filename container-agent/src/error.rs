//! Typed errors of the agent, each with a message a user can act on, and the process exit code
//! that goes with it (documented in `docs/agent.md`).
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No pod config data file and not enough flags to run without one.
    #[error("missing config: {0}")]
    MissingConfig(String),
    /// The config file (or a flag / env override) has a value we cannot use.
    #[error("bad config {source_name}: {msg}")]
    BadConfig { source_name: String, msg: String },
    /// The memif / vhost-user socket does not exist (uswitchd not running, port not created).
    #[error("socket {path} is absent after waiting {waited_ms} ms: is uswitchd running and does it have the port? (check `uswitchctl port list`)")]
    SocketAbsent { path: String, waited_ms: u64 },
    #[error("netns {path}: {msg}")]
    Netns { path: PathBuf, msg: String },
    /// /dev/net/tun missing, not permitted, or TUNSETIFF refused.
    #[error("tun unavailable: {0}")]
    TunUnavailable(String),
    /// Setting up the tap (MAC, MTU, addresses, routes, link up) failed.
    #[error("configuring {ifname}: {msg}")]
    Netconf { ifname: String, msg: String },
    #[error("memif: {0}")]
    Memif(String),
    #[error("I/O: {what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// A ping run finished without a single reply.
    #[error("no reply from {0}")]
    NoReply(String),
}

impl AgentError {
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        AgentError::Io {
            what: what.into(),
            err,
        }
    }

    pub fn bad(source_name: impl Into<String>, msg: impl Into<String>) -> Self {
        AgentError::BadConfig {
            source_name: source_name.into(),
            msg: msg.into(),
        }
    }

    /// Process exit code (0 is success; clap uses 2 for usage errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Io { .. } | AgentError::Memif(_) => 1,
            AgentError::MissingConfig(_) | AgentError::BadConfig { .. } => 3,
            AgentError::SocketAbsent { .. } => 4,
            AgentError::Netns { .. } => 5,
            AgentError::TunUnavailable(_) | AgentError::Netconf { .. } => 6,
            AgentError::NoReply(_) => 7,
        }
    }
}

pub type Result<T> = std::result::Result<T, AgentError>;
