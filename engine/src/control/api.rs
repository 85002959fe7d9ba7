//! The control API: JSON requests and responses over the control socket.
//!
//! Framing: a client connects to the `SOCK_STREAM` Unix socket (default
//! `/run/uswitch/uswitchd.sock`), writes one request as a single line of JSON, and reads one
//! response line. One request per connection.
//!
//! Request: `{"cmd":"port_add","port":{...PortConfig...}}` (see [`Request`]).
//! Response: `{"ok":true,"result":...}` or `{"ok":false,"error":{"code":"not_found","message":"..."}}`.
use crate::config::{BridgeConfig, PortConfig};
use crate::port::{PortInfo, PortStats};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Everything: bridges, ports (config + info), xconnects, worker. Result: [`ShowResult`].
    Show,
    /// Result: null.
    BridgeAdd {
        #[serde(flatten)]
        bridge: BridgeConfig,
    },
    /// Fails with `busy` while ports are attached. Result: null.
    BridgeDel { name: String },
    /// Creates the port (server sockets are bound before this returns). Result: [`PortEntry`].
    PortAdd { port: PortConfig },
    /// Result: null. Removes the port, its socket file and any xconnect it is in.
    PortDel { name: String },
    /// Result: `[PortEntry]`.
    PortList,
    /// Connects two ports back to back (no lookup). Neither may be on a bridge. Result: null.
    Xconnect { a: String, b: String },
    /// Removes the xconnect that port `a` is part of. Result: null.
    XconnectDel { a: String },
    /// Result: `[PortStats]` (one port when `port` is set). `clear` resets after reading.
    Stats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
        #[serde(default)]
        clear: bool,
    },
    /// Result: `[FdbEntry]`.
    FdbShow { bridge: String },
    /// Result: [`WorkerStats`]. `clear` resets after reading.
    WorkerStats {
        #[serde(default)]
        clear: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request or one of its values is malformed or out of range.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The object is in use (bridge with ports, port in an xconnect or bridge).
    Busy,
    /// Creating the port or talking to the OS failed (bind, mmap, state file write).
    Io,
    /// This uswitchd build cannot do it (e.g. a DPDK port without the cargo feature `dpdk`).
    Unsupported,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Response {
    pub fn ok(v: serde_json::Value) -> Self {
        Response {
            ok: true,
            result: Some(v),
            error: None,
        }
    }
    pub fn err(e: ApiError) -> Self {
        Response {
            ok: false,
            result: None,
            error: Some(e),
        }
    }
    pub fn into_result(self) -> Result<serde_json::Value, ApiError> {
        match (self.ok, self.error) {
            (true, _) => Ok(self.result.unwrap_or(serde_json::Value::Null)),
            (false, Some(e)) => Err(e),
            (false, None) => Err(ApiError::new(
                ErrorCode::Internal,
                "error response without error",
            )),
        }
    }
}

/// A port as `port list` / `show` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortEntry {
    pub config: PortConfig,
    pub info: PortInfo,
    /// Name of the peer port when in an xconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xconnect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeEntry {
    #[serde(flatten)]
    pub config: BridgeConfig,
    pub ports: Vec<String>,
    pub fdb_entries: u32,
    /// Learning attempts refused because the table was full.
    pub fdb_full_drops: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// "aa:bb:cc:dd:ee:ff"
    pub mac: String,
    /// 0 when untagged / no VLAN.
    pub vlan: u16,
    pub port: String,
    /// Seconds since last seen.
    pub age_secs: u64,
}

/// Per-worker cycle accounting (like OVS `pmd-stats-show`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub core: Option<usize>,
    /// Packets asked for per `rx_burst` (`uswitchd --burst`); 0 when unknown (a daemon that
    /// predates it, or the fake dataplane).
    #[serde(default)]
    pub burst: usize,
    /// TSC cycles in loop iterations that moved at least one packet.
    pub busy_cycles: u64,
    /// TSC cycles in iterations that moved nothing.
    pub idle_cycles: u64,
    pub iterations: u64,
    /// Iterations counted in `busy_cycles` (they moved packets and were not stalls).
    #[serde(default)]
    pub busy_iterations: u64,
    /// Packets received and forwarded (or dropped) by the worker.
    pub packets: u64,
    /// (packets - stall_packets) / busy_iterations: how full the bursts of a busy iteration
    /// are, summed over its ports (like VPP's vectors/call). Small values mean the peers, not
    /// the switch, set the rate, and per-burst costs weigh on every packet.
    #[serde(default)]
    pub packets_per_busy_iteration: f64,
    /// busy_cycles / (packets - stall_packets): cycles per packet without stalls.
    pub busy_cycles_per_packet: f64,
    /// Iterations longer than the stall limit (preemption, a time jump): their cycles are in
    /// `stall_cycles`, not in busy or idle cycles.
    #[serde(default)]
    pub stalls: u64,
    #[serde(default)]
    pub stall_cycles: u64,
    /// Packets moved in stalled iterations (included in `packets`).
    #[serde(default)]
    pub stall_packets: u64,
    /// (busy cycles + stalled iterations that moved packets) / packets: the figure with
    /// preemption left in, as testpmd and OVS count it.
    #[serde(default)]
    pub busy_cycles_per_packet_with_stalls: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XconnectEntry {
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowResult {
    pub version: String,
    pub bridges: Vec<BridgeEntry>,
    pub ports: Vec<PortEntry>,
    pub xconnects: Vec<XconnectEntry>,
    pub worker: WorkerStats,
    /// Items of the state/config file that failed to come up at startup (added by control).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_errors: Vec<String>,
}

/// Shape check so the CNI plugin and uswitchctl agree with the daemon.
pub type StatsResult = Vec<PortStats>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(r#"{"cmd":"bridge_add","name":"br0"}"#).unwrap();
        assert_eq!(
            r,
            Request::BridgeAdd {
                bridge: BridgeConfig::new("br0")
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"stats"}"#).unwrap();
        assert_eq!(
            r,
            Request::Stats {
                port: None,
                clear: false
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"nope"}"#).is_err());
        let j = serde_json::to_string(&Request::PortDel { name: "a".into() }).unwrap();
        assert_eq!(j, r#"{"cmd":"port_del","name":"a"}"#);
    }
}
