//! The pod's end of the memif link: checks that the socket is there, builds the engine's
//! [`MemifPort`] in the pod's role (client when uswitchd is the memif server), and logs link
//! changes.
//!
//! Rules:
//! - At startup a client waits up to `--wait-socket` for the socket file, then fails with
//!   [`AgentError::SocketAbsent`]. Abstract sockets cannot be checked without connecting; the
//!   port's own retries cover them.
//! - Afterwards reconnecting is the port's job: a client retries with backoff (100 ms → 2 s)
//!   forever, so a restarted uswitchd is picked up without touching the pod.
use crate::error::{AgentError, Result};
use crate::podconf::{IfType, PodConfig};
use std::time::{Duration, Instant};
use uswitch::config::{default_queues, default_ring_size, MemifConfig, MemifRole};
use uswitch::memif::MemifPort;
use uswitch::port::Port;

/// memif buffer size the agent allocates (client role).
pub const BUFFER_SIZE: u32 = 2048;

/// Waits until the socket file exists (client role, filesystem socket only).
pub fn wait_for_socket(c: &PodConfig, wait: Duration) -> Result<()> {
    let Some(path) = c.socket_file() else {
        return Ok(());
    };
    if c.role != MemifRole::Client {
        return Ok(());
    }
    let t0 = Instant::now();
    let mut logged = false;
    loop {
        if path.exists() {
            return Ok(());
        }
        if t0.elapsed() >= wait {
            return Err(AgentError::SocketAbsent {
                path: path.display().to_string(),
                waited_ms: wait.as_millis() as u64,
            });
        }
        if !logged {
            tracing::info!(socket = %path.display(), "waiting for the socket");
            logged = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The memif port of the pod side.
pub fn memif_port(c: &PodConfig) -> Result<MemifPort> {
    if c.iftype != IfType::Memif {
        return Err(AgentError::bad(
            c.source
                .as_ref()
                .map_or("(flags)".into(), |p| p.display().to_string()),
            "iftype vhostuser: only passthrough mode supports vhost-user sockets",
        ));
    }
    let cfg = MemifConfig {
        socket: c.socket.clone(),
        role: c.role,
        id: c.id,
        secret: None,
        queues: default_queues(),
        ring_size: default_ring_size(),
        max_ring_size: None,
        buffer_size: BUFFER_SIZE,
        mode: c.mode,
    };
    MemifPort::new(&c.ifname, &cfg).map_err(|e| AgentError::Memif(e.to_string()))
}

/// Tracks link up/down to log changes once.
#[derive(Default)]
pub struct LinkWatch {
    up: bool,
}

impl LinkWatch {
    /// Returns true when the state changed.
    pub fn update(&mut self, port: &impl Port) -> bool {
        let up = port.link_up();
        if up == self.up {
            return false;
        }
        self.up = up;
        if up {
            let i = port.info();
            tracing::info!(peer = ?i.peer_name, details = %serde_json::Value::Object(i.details), "memif link up");
        } else {
            let s = port.stats();
            tracing::warn!(reason = ?s.last_disconnect_reason, "memif link down; reconnecting");
        }
        true
    }
}
