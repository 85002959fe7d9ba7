//! Talking to uswitchd: the few control API requests the plugin needs, with CNI error codes.
//!
//! Rules:
//! - uswitchd unreachable (no socket, refused, timeout) is error 11 (try again later) for ADD,
//!   DEL, CHECK and GC; STATUS turns it into 50;
//! - `ensure_port` creates the port or adopts an identical one left by an interrupted ADD; a
//!   different port under the same name is refused (error 100), never replaced;
//! - `del_port` of a port that is not there succeeds (DEL is idempotent);
//! - `ensure_bridge` creates a missing bridge; an existing one is fine.
use crate::error::{CniError, CniResult, Code};
use std::path::{Path, PathBuf};
use std::time::Duration;
use uswitch::config::{BridgeConfig, PortConfig};
use uswitch::control::api::{ErrorCode, PortEntry, Request};
use uswitch::control::client::{call, ClientError};

pub struct Switch {
    control: PathBuf,
    timeout: Duration,
}

/// What `ensure_port` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    /// An identical port was already there (an earlier ADD of this attachment).
    Adopted,
}

fn unreachable(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } => true,
        ClientError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        _ => false,
    }
}

impl Switch {
    pub fn new(control: &Path, timeout: Duration) -> Switch {
        Switch {
            control: control.to_path_buf(),
            timeout,
        }
    }

    pub fn control(&self) -> &Path {
        &self.control
    }

    fn call(&self, req: &Request) -> Result<serde_json::Value, ClientError> {
        call(&self.control, req, self.timeout)
    }

    fn to_cni(&self, what: &str, e: ClientError) -> CniError {
        if unreachable(&e) {
            CniError::with_details(
                Code::TryAgainLater,
                format!(
                    "uswitchd is not reachable at {} ({what})",
                    self.control.display()
                ),
                e.to_string(),
            )
        } else {
            let code = match e.code() {
                Some(ErrorCode::InvalidArgument) => Code::InvalidConfig,
                _ => Code::Switch,
            };
            CniError::with_details(code, format!("uswitchd refused {what}: {e}"), e.to_string())
        }
    }

    /// Liveness probe for STATUS: Ok when uswitchd answers at all.
    pub fn probe(&self) -> Result<(), ClientError> {
        match self.call(&Request::PortList) {
            Ok(_) => Ok(()),
            Err(e)
                if unreachable(&e) || matches!(e, ClientError::Io(_) | ClientError::Decode(_)) =>
            {
                Err(e)
            }
            Err(_) => Ok(()),
        }
    }

    pub fn ports(&self) -> CniResult<Vec<PortEntry>> {
        let v = self
            .call(&Request::PortList)
            .map_err(|e| self.to_cni("port list", e))?;
        serde_json::from_value(v).map_err(|e| {
            CniError::with_details(
                Code::Switch,
                "uswitchd sent an unreadable port list",
                e.to_string(),
            )
        })
    }

    pub fn port(&self, name: &str) -> CniResult<Option<PortEntry>> {
        Ok(self.ports()?.into_iter().find(|p| p.config.name == name))
    }

    pub fn ensure_bridge(&self, name: &str) -> CniResult<()> {
        match self.call(&Request::BridgeAdd {
            bridge: BridgeConfig::new(name),
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => Ok(()),
            Err(e) => Err(self.to_cni(&format!("bridge add {name}"), e)),
        }
    }

    /// Creates `port`, or adopts an identical existing one.
    pub fn ensure_port(&self, port: &PortConfig) -> CniResult<Ensured> {
        if let Some(existing) = self.port(&port.name)? {
            if existing.config == *port {
                return Ok(Ensured::Adopted);
            }
            return Err(CniError::with_details(
                Code::Switch,
                format!(
                    "uswitch port {} already exists with a different configuration",
                    port.name
                ),
                format!(
                    "existing: {}; wanted: {}",
                    serde_json::to_string(&existing.config).unwrap_or_default(),
                    serde_json::to_string(port).unwrap_or_default()
                ),
            ));
        }
        match self.call(&Request::PortAdd { port: port.clone() }) {
            Ok(_) => Ok(Ensured::Created),
            Err(e) if e.code() == Some(ErrorCode::NotFound) && port.bridge.is_some() => {
                Err(CniError::with_details(
                    Code::InvalidConfig,
                    format!(
                        "bridge {} does not exist in uswitchd",
                        port.bridge.as_deref().unwrap_or("")
                    ),
                    format!("{e}; create it, or drop \"createBridge\": false"),
                ))
            }
            Err(e) => Err(self.to_cni(&format!("port add {}", port.name), e)),
        }
    }

    /// Removes a port; a missing port is success.
    pub fn del_port(&self, name: &str) -> CniResult<()> {
        match self.call(&Request::PortDel {
            name: name.to_string(),
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(()),
            Err(e) => Err(self.to_cni(&format!("port del {name}"), e)),
        }
    }

    pub fn xconnect(&self, a: &str, b: &str) -> CniResult<()> {
        self.call(&Request::Xconnect {
            a: a.to_string(),
            b: b.to_string(),
        })
        .map(|_| ())
        .map_err(|e| self.to_cni(&format!("xconnect {a} {b}"), e))
    }
}
