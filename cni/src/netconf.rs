//! The network config (stdin): Intel userspace-CNI fields accepted unchanged, plus our `uswitch`
//! block; and the names derived from it for one attachment.
//!
//! Rules enforced here: malformed JSON or a wrong field type is error 6, as is an unknown key in
//! our own `uswitch` block (typos); a missing or unsupported cniVersion is error 1. Everything
//! about values and combinations is checked when the config is resolved into a `Plan`
//! (`plan.rs`).
//!
//! Derived names ([`Names`]) depend only on the config's shared dir (and socket file name), the
//! container ID and the ifname, so DEL and GC find everything without state even when the rest of
//! the config no longer resolves.
use crate::error::{CniError, CniResult, Code};
use crate::types::{Attachment, Version};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use uswitch::config::MAX_SUN_PATH;

/// Default base of the per-pod directories (Intel's default).
pub const DEFAULT_SHARED_DIR: &str = "/var/lib/cni/usrspcni";
/// Default lock file serializing this plugin's invocations.
pub const DEFAULT_LOCK_FILE: &str = "/run/uswitch/cni.lock";

/// Intel `memif` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemifConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socketfile: Option<String>,
}

/// Intel `vhost` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socketfile: Option<String>,
}

/// Intel `bridge` block. `vlanId` is kept raw so a bad value gets error 7, not a decode error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeConf {
    #[serde(
        rename = "bridgeName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bridge_name: Option<String>,
    #[serde(rename = "bridgeId", default, skip_serializing_if = "Option::is_none")]
    pub bridge_id: Option<i64>,
    #[serde(rename = "vlanId", default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<serde_json::Value>,
}

/// Intel `host` / `container` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSpaceConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iftype: Option<String>,
    #[serde(rename = "netType", default, skip_serializing_if = "Option::is_none")]
    pub net_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memif: Option<MemifConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VhostConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeConf>,
}

/// Our own block: `"uswitch": {...}`. Unknown keys here are refused (typos).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UswitchConf {
    /// uswitchd control socket (default `/run/uswitch/uswitchd.sock`).
    pub control: Option<String>,
    /// Lock file (default `/run/uswitch/cni.lock`).
    pub lock_file: Option<String>,
    /// Create the bridge in uswitchd when it does not exist (default true).
    pub create_bridge: Option<bool>,
    /// netType interface: cross-connect the new port to this existing uswitch port.
    pub xconnect: Option<String>,
    /// Name of the per-pod directory: `auto` (default: the container ID, or its first 12
    /// characters when the full ID would make the socket path too long for `sun_path`),
    /// `containerID` (always the full ID) or `cid12` (always the first 12 characters).
    pub pod_dir_name: Option<String>,
    /// Owner of the pod directory and socket (default: left as created, root).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Control request timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// Queue pairs (memif or vhost-user), log2 ring size, buffer size of the port (engine defaults otherwise).
    pub queues: Option<u16>,
    pub ring_size: Option<u8>,
    pub buffer_size: Option<u32>,
    /// memif, uswitch as server: log2 of the largest ring the pod may create (HELLO cap).
    pub max_ring_size: Option<u8>,
    /// Start uswitch-agent for the pod (tap mode) in ADD, stop it in DEL.
    pub agent: Option<crate::agent::AgentConf>,
}

/// `runtimeConfig` keys we honour (others are passed to IPAM untouched).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(rename = "CNIDeviceInfoFile", alias = "deviceInfoFile", default)]
    pub device_info_file: Option<String>,
}

/// The whole config as read from stdin.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<serde_json::Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: RuntimeConfig,
    #[serde(rename = "sharedDir", default)]
    pub shared_dir: Option<String>,
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(rename = "logFile", alias = "LogFile", default)]
    pub log_file: Option<String>,
    #[serde(rename = "logLevel", alias = "LogLevel", default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub host: UserSpaceConf,
    #[serde(default)]
    pub container: UserSpaceConf,
    #[serde(default)]
    pub uswitch: UswitchConf,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Parses stdin. Malformed JSON or wrong field types: error 6.
    pub fn parse(bytes: &[u8]) -> CniResult<NetConf> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(|e| {
            CniError::with_details(
                Code::Decode,
                "cannot decode the network config",
                e.to_string(),
            )
        })?;
        Ok(conf)
    }

    /// The cniVersion, checked against the versions we speak (error 1 otherwise).
    pub fn version(&self) -> CniResult<Version> {
        if self.cni_version.is_empty() {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                "cniVersion is missing from the network config",
            ));
        }
        Version::supported(&self.cni_version)
    }

    pub fn control(&self) -> PathBuf {
        PathBuf::from(
            self.uswitch
                .control
                .as_deref()
                .unwrap_or(uswitch::control::client::DEFAULT_CONTROL),
        )
    }
    pub fn lock_file(&self) -> PathBuf {
        PathBuf::from(
            self.uswitch
                .lock_file
                .as_deref()
                .unwrap_or(DEFAULT_LOCK_FILE),
        )
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.uswitch.timeout_ms.unwrap_or(5000).clamp(100, 120_000))
    }
    /// The socket file name set in the host block for the configured iftype, if any.
    pub fn socket_file_conf(&self) -> Option<&str> {
        let f = match self.host.iftype.as_deref() {
            Some("vhostuser") => self.host.vhost.as_ref()?.socketfile.as_deref(),
            _ => self.host.memif.as_ref()?.socketfile.as_deref(),
        };
        f.filter(|s| !s.is_empty())
    }

    pub fn shared_dir(&self) -> PathBuf {
        PathBuf::from(
            self.shared_dir
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_SHARED_DIR),
        )
    }
}

/// Interface type on the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfType {
    Memif,
    Vhostuser,
}

/// Names derived from the shared dir, container ID and ifname only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// uswitch port name, `c-<tag>-<ifname>` (see [`port_name`]).
    pub port: String,
    pub pod_dir: PathBuf,
    /// Default memif socket file name `memif-<cid12>-<ifname>.sock`.
    pub memif_socket_file: String,
    /// Default vhost-user socket file name `<cid12>-<ifname>`.
    pub vhost_socket_file: String,
    /// `<pod_dir>/configData-<cid12>-<ifname>.json`
    pub config_data: PathBuf,
    /// `<pod_dir>/.uswitch-<ifname>.json` (our record of the attachment).
    pub state: PathBuf,
}

pub fn cid12(container_id: &str) -> &str {
    // Container IDs are ASCII (validated in env.rs), so byte slicing is safe.
    &container_id[..container_id.len().min(12)]
}

/// FNV-1a (64 bit) of `parts` joined by `/`: a stable hash for derived names.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"/" };
        for b in sep.iter().chain(p.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The container part of a port name: the ID itself when it has at most 12 characters, else its
/// first 6 characters and 6 hex digits of a hash of the whole ID, so IDs that share a 12-char
/// prefix (e.g. `cnitool-…`) still get distinct ports.
pub fn port_tag(container_id: &str) -> String {
    if container_id.len() <= 12 {
        container_id.to_string()
    } else {
        let h = fnv1a(&[container_id]) & 0xff_ffff;
        format!("{}{h:06x}", &container_id[..6])
    }
}

/// uswitch port name for an attachment: `c-<tag>-<ifname>` ([`port_tag`]), characters outside
/// `[A-Za-z0-9._-]` replaced by `_` (at most 2+12+1+15 = 30 bytes).
pub fn port_name(container_id: &str, ifname: &str) -> String {
    let ifn: String = ifname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("c-{}-{}", port_tag(container_id), ifn)
}

impl Names {
    pub fn derive(conf: &NetConf, container_id: &str, ifname: &str) -> Names {
        let c12 = cid12(container_id);
        let memif_socket_file = format!("memif-{c12}-{ifname}.sock");
        let vhost_socket_file = format!("{c12}-{ifname}");
        let dir_name = match conf.uswitch.pod_dir_name.as_deref() {
            Some("cid12") => c12,
            Some("containerID") => container_id,
            _ => {
                // auto: the full ID unless the socket path would not fit.
                let sock = conf
                    .socket_file_conf()
                    .unwrap_or(match conf.host.iftype.as_deref() {
                        Some("vhostuser") => &vhost_socket_file,
                        _ => &memif_socket_file,
                    });
                let full = conf.shared_dir().join(container_id).join(sock);
                if full.as_os_str().len() > MAX_SUN_PATH {
                    c12
                } else {
                    container_id
                }
            }
        };
        let pod_dir = conf.shared_dir().join(dir_name);
        Names {
            port: port_name(container_id, ifname),
            config_data: pod_dir.join(format!("configData-{c12}-{ifname}.json")),
            state: pod_dir.join(format!(".uswitch-{ifname}.json")),
            memif_socket_file,
            vhost_socket_file,
            pod_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_are_valid_and_distinct() {
        assert_eq!(port_name("abc", "e:th"), "c-abc-e_th");
        assert_eq!(port_name("0123456789ab", "net1"), "c-0123456789ab-net1");
        let a = port_name("cnitool-usw-a1", "net1");
        let b = port_name("cnitool-usw-b2", "net1");
        assert_ne!(a, b, "IDs sharing 12 chars get different ports");
        assert!(a.starts_with("c-cnitoo"), "{a}");
        assert_eq!(a, port_name("cnitool-usw-a1", "net1"), "stable");
        let long = port_name(&"f".repeat(64), "0123456789abcde");
        assert!(long.len() <= 32, "{long}");
        uswitch::config::validate_name(&long).unwrap();
    }
}
