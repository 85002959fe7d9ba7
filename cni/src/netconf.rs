//! The network config (stdin): Intel userspace-CNI fields accepted unchanged, plus our `uswitch`
//! block, resolved into one [`Plan`] for an attachment.
//!
//! Rules enforced here (all before any side effect, so a bad config leaves nothing behind):
//! - `host.engine` is `uswitch` (or absent); `ovs-dpdk` and `vpp` are mapped onto uswitch with a
//!   log line; anything else is error 7;
//! - `iftype` is `memif` (default) or `vhostuser` (parsed, but refused with error 7 while uswitchd
//!   has no vhost-user ports); `netType` is `bridge`, `interface` or `none`;
//! - `netType: bridge` needs `bridge.bridgeName` (or the deprecated `bridgeId`; engine `ovs-dpdk`
//!   defaults to `br-0` as Intel's plugin did); `vlanId` 0 or absent means untagged, else 1..=4094;
//! - memif host/container roles must differ; socket file names are file names (no `/`);
//! - the socket path must fit `sun_path` (107 bytes);
//! - `kubeconfig` is accepted and ignored (pod config goes to a file in the pod directory).
//!
//! Derived names ([`Names`]) depend only on the shared dir, container ID and ifname, so DEL and GC
//! find everything without state even when the rest of the config no longer resolves.
use crate::env::CniEnv;
use crate::error::{CniError, CniResult, Code};
use crate::types::{Attachment, Version};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use uswitch::config::{validate_name, MemifMode, MemifRole, MAX_SUN_PATH};

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
    /// memif queue pairs, log2 ring size, buffer size of the port (engine defaults otherwise).
    pub queues: Option<u16>,
    pub ring_size: Option<u8>,
    pub buffer_size: Option<u32>,
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
    /// uswitch port name, `c-<cid12>-<ifname>`.
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

/// uswitch port name for an attachment: `c-<cid12>-<ifname>`, characters outside
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
    format!("c-{}-{}", cid12(container_id), ifn)
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

/// Everything ADD and CHECK need, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub names: Names,
    pub iftype: IfType,
    /// Engine named in the config (for logs and the pod config data).
    pub engine: String,
    pub role: MemifRole,
    pub mode: MemifMode,
    pub socket_path: String,
    pub bridge: Option<String>,
    pub vlan: Option<u16>,
    pub xconnect: Option<String>,
    pub net_type: String,
    pub mac: String,
    pub create_bridge: bool,
    pub device_info_file: Option<PathBuf>,
    /// The container block with defaults filled in (goes into the pod config data).
    pub container: UserSpaceConf,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

fn parse_role(s: Option<&str>, default: MemifRole, which: &str) -> CniResult<MemifRole> {
    match s {
        None | Some("") => Ok(default),
        Some("master") | Some("server") => Ok(MemifRole::Server),
        Some("slave") | Some("client") => Ok(MemifRole::Client),
        Some(o) => Err(bad(format!(
            "{which}.memif.role {o:?} is unknown: use master|slave (or server|client)"
        ))),
    }
}

fn parse_mode(s: Option<&str>) -> CniResult<MemifMode> {
    match s {
        None | Some("") | Some("ethernet") => Ok(MemifMode::Ethernet),
        Some("ip") => Ok(MemifMode::Ip),
        Some("inject-punt") | Some("punt") => Ok(MemifMode::Punt),
        Some(o) => Err(bad(format!(
            "memif.mode {o:?} is unknown: use ethernet|ip|inject-punt"
        ))),
    }
}

pub fn mode_str(m: MemifMode) -> &'static str {
    match m {
        MemifMode::Ethernet => "ethernet",
        MemifMode::Ip => "ip",
        MemifMode::Punt => "inject-punt",
    }
}

fn parse_vlan(v: Option<&serde_json::Value>) -> CniResult<Option<u16>> {
    let Some(v) = v else { return Ok(None) };
    match v.as_i64() {
        Some(0) => Ok(None),
        Some(n) if (1..=4094).contains(&n) => Ok(Some(n as u16)),
        _ => Err(CniError::with_details(
            Code::InvalidConfig,
            format!("bridge.vlanId {v} is invalid"),
            "vlanId must be an integer 1..=4094 (0 or absent: untagged)",
        )),
    }
}

/// A MAC "aa:bb:cc:dd:ee:ff", normalized to lower case; unicast only.
pub fn parse_mac(s: &str) -> CniResult<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    let first = parts
        .first()
        .and_then(|p| u8::from_str_radix(p, 16).ok())
        .unwrap_or(1);
    if !ok || first & 1 == 1 {
        return Err(bad(format!(
            "MAC {s:?} is not a unicast aa:bb:cc:dd:ee:ff address"
        )));
    }
    Ok(s.to_ascii_lowercase())
}

/// Stable locally administered MAC for an attachment (FNV-1a of containerID/ifname).
pub fn default_mac(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

fn socket_file_name(s: &Option<String>, default: &str) -> CniResult<String> {
    match s.as_deref() {
        None | Some("") => Ok(default.to_string()),
        Some(f) if f.contains('/') || f == "." || f == ".." || f.contains('\0') => Err(bad(
            format!("socketfile {f:?} must be a file name, not a path"),
        )),
        Some(f) => Ok(f.to_string()),
    }
}

impl Plan {
    /// Resolves and validates the config for one attachment. No side effects.
    pub fn resolve(conf: &NetConf, env: &CniEnv) -> CniResult<Plan> {
        let names = Names::derive(conf, &env.container_id, &env.ifname);
        if conf.kubeconfig.is_some() {
            tracing::debug!(
                "kubeconfig is ignored: pod config data goes to a file in the pod directory"
            );
        }
        let host = &conf.host;
        let engine = host.engine.clone().unwrap_or_else(|| "uswitch".into());
        match engine.as_str() {
            "uswitch" => {}
            "ovs-dpdk" | "vpp" => {
                tracing::info!(engine = %engine, "host.engine {engine} is served by uswitch (mapped unchanged)")
            }
            o => return Err(CniError::with_details(
                Code::InvalidConfig,
                format!("host.engine {o:?} is not supported"),
                "use \"uswitch\"; \"ovs-dpdk\" and \"vpp\" are accepted and mapped onto uswitch",
            )),
        }
        let iftype = match host.iftype.as_deref() {
            None | Some("") | Some("memif") => IfType::Memif,
            Some("vhostuser") => IfType::Vhostuser,
            Some(o) => {
                return Err(bad(format!(
                    "host.iftype {o:?} is unknown: use memif or vhostuser"
                )))
            }
        };
        if let Some(ct) = conf.container.iftype.as_deref() {
            if !ct.is_empty() && ct != host.iftype.as_deref().unwrap_or("memif") {
                return Err(bad(format!(
                    "container.iftype {ct:?} differs from host.iftype {:?}",
                    host.iftype.as_deref().unwrap_or("memif")
                )));
            }
        }
        let hm = host.memif.clone().unwrap_or_default();
        let role = parse_role(hm.role.as_deref(), MemifRole::Server, "host")?;
        let mode = parse_mode(hm.mode.as_deref())?;
        let cm = conf.container.memif.clone().unwrap_or_default();
        let other = if role == MemifRole::Server {
            MemifRole::Client
        } else {
            MemifRole::Server
        };
        let crole = parse_role(cm.role.as_deref(), other, "container")?;
        if crole == role {
            return Err(bad(
                "host.memif.role and container.memif.role must differ (one master, one slave)",
            ));
        }
        if let Some(cmode) = cm.mode.as_deref() {
            if parse_mode(Some(cmode))? != mode {
                return Err(bad("container.memif.mode must equal host.memif.mode"));
            }
        }
        let socket_file = match iftype {
            IfType::Memif => socket_file_name(&hm.socketfile, &names.memif_socket_file)?,
            IfType::Vhostuser => {
                let hv = host.vhost.clone().unwrap_or_default();
                match hv.mode.as_deref() {
                    None | Some("") | Some("client") | Some("server") => {}
                    Some(o) => {
                        return Err(bad(format!(
                            "host.vhost.mode {o:?} is unknown: use client|server"
                        )))
                    }
                }
                socket_file_name(&hv.socketfile, &names.vhost_socket_file)?
            }
        };
        let br = host.bridge.clone().unwrap_or_default();
        let vlan = parse_vlan(br.vlan_id.as_ref())?;
        let bridge_name = br
            .bridge_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| br.bridge_id.filter(|id| *id > 0).map(|id| id.to_string()));
        let net_type = match host.net_type.as_deref() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ if bridge_name.is_some() => "bridge".into(),
            _ => "interface".into(),
        };
        let bridge = match net_type.as_str() {
            "bridge" => {
                let name = match bridge_name {
                    Some(n) => n,
                    None if engine == "ovs-dpdk" => "br-0".to_string(),
                    None => {
                        return Err(CniError::with_details(
                            Code::InvalidConfig,
                            "host.netType is bridge but no bridge is named",
                            "set host.bridge.bridgeName",
                        ))
                    }
                };
                validate_name(&name).map_err(|e| bad(format!("host.bridge.bridgeName: {e}")))?;
                Some(name)
            }
            "interface" | "none" => None,
            o => {
                return Err(bad(format!(
                    "host.netType {o:?} is unknown: use bridge, interface or none"
                )))
            }
        };
        if bridge.is_none() && vlan.is_some() {
            return Err(bad("bridge.vlanId needs host.netType bridge"));
        }
        let xconnect = conf.uswitch.xconnect.clone().filter(|s| !s.is_empty());
        if let Some(x) = &xconnect {
            if net_type != "interface" {
                return Err(bad("uswitch.xconnect needs host.netType interface"));
            }
            validate_name(x).map_err(|e| bad(format!("uswitch.xconnect: {e}")))?;
        }
        match conf.uswitch.pod_dir_name.as_deref() {
            None | Some("auto") | Some("containerID") | Some("cid12") => {}
            Some(o) => {
                return Err(bad(format!(
                    "uswitch.podDirName {o:?} is unknown: use auto, containerID or cid12"
                )))
            }
        }
        let socket_path = names
            .pod_dir
            .join(&socket_file)
            .to_string_lossy()
            .into_owned();
        if socket_path.len() > MAX_SUN_PATH {
            return Err(CniError::with_details(
                Code::InvalidConfig,
                format!(
                    "socket path is {} bytes, longer than the {MAX_SUN_PATH} bytes a Unix socket allows",
                    socket_path.len()
                ),
                format!(
                    "{socket_path}: use a shorter sharedDir (e.g. /run/uswitch), socketfile or ifname"
                ),
            ));
        }
        let mac = match conf.runtime_config.mac.as_deref().or(env.arg("MAC")) {
            Some(m) => parse_mac(m)?,
            None => default_mac(&env.container_id, &env.ifname),
        };
        if conf.uswitch.uid.is_some() != conf.uswitch.gid.is_some() {
            return Err(bad("uswitch.uid and uswitch.gid must be given together"));
        }
        // Container block with defaults filled in, as the pod will read it.
        let mut container = conf.container.clone();
        container.iftype.get_or_insert_with(|| {
            if iftype == IfType::Memif {
                "memif"
            } else {
                "vhostuser"
            }
            .into()
        });
        container.net_type.get_or_insert_with(|| "interface".into());
        if iftype == IfType::Memif {
            let m = container.memif.get_or_insert_with(MemifConf::default);
            m.role = Some(
                if crole == MemifRole::Client {
                    "slave"
                } else {
                    "master"
                }
                .into(),
            );
            m.mode = Some(mode_str(mode).into());
            m.socketfile = Some(socket_file.clone());
        } else {
            let v = container.vhost.get_or_insert_with(VhostConf::default);
            v.socketfile = Some(socket_file.clone());
        }
        Ok(Plan {
            names,
            iftype,
            engine,
            role,
            mode,
            socket_path,
            bridge,
            vlan,
            xconnect,
            net_type,
            mac,
            create_bridge: conf.uswitch.create_bridge.unwrap_or(true),
            device_info_file: conf
                .runtime_config
                .device_info_file
                .clone()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            container,
        })
    }

    pub fn socket_path(&self) -> &Path {
        Path::new(&self.socket_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn env() -> CniEnv {
        CniEnv {
            container_id: "0123456789abcdef0123".into(),
            ifname: "net1".into(),
            netns: "/var/run/netns/t".into(),
            ..CniEnv::default()
        }
    }

    /// The standalone example of Intel's README, unchanged.
    const INTEL_README: &str = r#"{
        "cniVersion": "0.3.1", "type": "userspace", "name": "memif-network",
        "host": {"engine": "vpp", "iftype": "memif", "netType": "bridge",
                 "memif": {"role": "master", "mode": "ethernet"}, "bridge": {"bridgeName": "4"}},
        "container": {"engine": "vpp", "iftype": "memif", "netType": "interface",
                      "memif": {"role": "slave", "mode": "ethernet"}},
        "ipam": {"type": "host-local", "subnet": "10.56.217.0/24", "rangeStart": "10.56.217.131",
                 "rangeEnd": "10.56.217.190", "routes": [{"dst": "0.0.0.0/0"}], "gateway": "10.56.217.1"}}"#;

    #[test]
    fn intel_readme_example_resolves() {
        let c = NetConf::parse(INTEL_README.as_bytes()).unwrap();
        let p = Plan::resolve(&c, &env()).unwrap();
        assert_eq!(p.bridge.as_deref(), Some("4"));
        assert_eq!(p.role, MemifRole::Server);
        assert_eq!(
            p.socket_path,
            "/var/lib/cni/usrspcni/0123456789abcdef0123/memif-0123456789ab-net1.sock"
        );
        assert_eq!(p.names.port, "c-0123456789ab-net1");
        assert_eq!(
            p.container.memif.as_ref().unwrap().socketfile.as_deref(),
            Some("memif-0123456789ab-net1.sock")
        );
        assert_eq!(c.version().unwrap(), Version(0, 3, 1));
    }

    fn resolve(v: serde_json::Value) -> CniResult<Plan> {
        let c = NetConf::parse(v.to_string().as_bytes())?;
        Plan::resolve(&c, &env())
    }

    #[test]
    fn errors_have_code_7() {
        let base = json!({"cniVersion":"1.0.0","name":"n","type":"uswitch-cni",
            "host":{"engine":"uswitch","iftype":"memif","netType":"bridge","memif":{},
                    "bridge":{"bridgeName":"br0","vlanId":10}},
            "container":{}});
        assert_eq!(resolve(base.clone()).unwrap().vlan, Some(10));
        let cases = [
            ("/host/engine", json!("snabb"), "engine"),
            ("/host/iftype", json!("tap"), "iftype"),
            ("/host/bridge/bridgeName", json!(null), "no bridge"),
            ("/host/bridge/vlanId", json!(4095), "vlanId"),
            ("/host/bridge/vlanId", json!("x"), "vlanId"),
            ("/host/netType", json!("mesh"), "netType"),
            ("/host/memif", json!({"role":"leader"}), "role"),
            (
                "/host/memif",
                json!({"socketfile":"../x.sock"}),
                "file name",
            ),
            ("/container", json!({"memif":{"role":"master"}}), "differ"),
        ];
        for (ptr, val, needle) in cases {
            let mut v = base.clone();
            *v.pointer_mut(ptr).unwrap_or_else(|| panic!("{ptr}")) = val;
            let e = resolve(v).unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{ptr}: {e}");
            assert!(e.to_string().contains(needle), "{ptr}: {e}");
        }
        let mut long = base.clone();
        long["sharedDir"] = json!(format!("/{}", "d".repeat(90)));
        let e = resolve(long).unwrap_err();
        assert!(e.msg.contains("107 bytes"), "{e}");
        let mut typo = base.clone();
        typo["uswitch"] = json!({"contrl":"/x"});
        assert_eq!(resolve(typo).unwrap_err().code, Code::Decode);
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code, Code::Decode);
    }

    #[test]
    fn long_container_ids_use_short_pod_dirs() {
        let cid = "f".repeat(64);
        let mut e = env();
        e.container_id = cid.clone();
        let c = NetConf::parse(INTEL_README.as_bytes()).unwrap();
        let p = Plan::resolve(&c, &e).unwrap();
        assert_eq!(
            p.names.pod_dir,
            Path::new(DEFAULT_SHARED_DIR).join(&cid[..12])
        );
        assert!(p.socket_path.len() <= MAX_SUN_PATH);
        // Short IDs keep the full ID as directory name.
        let p = Plan::resolve(&c, &env()).unwrap();
        assert!(p.names.pod_dir.ends_with("0123456789abcdef0123"));
        // Forcing the full ID with a 64-char ID: too long, error 7.
        let mut v: serde_json::Value = serde_json::from_str(INTEL_README).unwrap();
        v["uswitch"] = json!({"podDirName": "containerID"});
        let c = NetConf::parse(v.to_string().as_bytes()).unwrap();
        let err = Plan::resolve(&c, &e).unwrap_err();
        assert_eq!(err.code, Code::InvalidConfig);
        assert!(err.msg.contains("longer than"), "{err}");
    }

    #[test]
    fn defaults_and_mapping() {
        let p = resolve(json!({"cniVersion":"1.1.0","name":"n","type":"userspace",
            "host":{"engine":"ovs-dpdk","iftype":"memif","netType":"bridge"}}))
        .unwrap();
        assert_eq!(p.bridge.as_deref(), Some("br-0"));
        let p = resolve(json!({"cniVersion":"1.1.0","name":"n","type":"userspace",
            "runtimeConfig":{"mac":"02:AA:00:00:00:01","CNIDeviceInfoFile":"/tmp/di.json"}}))
        .unwrap();
        assert_eq!(p.bridge, None);
        assert_eq!(p.mac, "02:aa:00:00:00:01");
        assert_eq!(
            p.device_info_file.as_deref(),
            Some(Path::new("/tmp/di.json"))
        );
        assert_eq!(default_mac("a", "net1"), default_mac("a", "net1"));
        assert_ne!(default_mac("a", "net1"), default_mac("b", "net1"));
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert_eq!(port_name("abc", "e:th"), "c-abc-e_th");
        assert!(port_name("0123456789abcdef", "0123456789abcde").len() <= 32);
    }
}
