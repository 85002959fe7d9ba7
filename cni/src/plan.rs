//! Resolution of a network config into one validated [`Plan`] for an attachment.
//!
//! Rules enforced here (all before any side effect, so a bad config leaves nothing behind):
//! - `host.engine` is `uswitch` (or absent); `ovs-dpdk` and `vpp` are mapped onto uswitch with a
//!   log line; anything else is error 7;
//! - `iftype` is `memif` (default) or `vhostuser` (uswitch is the vhost-user backend; `vhost.mode`
//!   says who listens); `netType` is `bridge`, `interface` or `none`;
//! - `netType: bridge` needs `bridge.bridgeName` (or the deprecated `bridgeId`; engine `ovs-dpdk`
//!   defaults to `br-0` as Intel's plugin did); `vlanId` 0 or absent means untagged, else 1..=4094;
//! - memif host/container roles must differ, modes and iftypes match; socket file names are file
//!   names (no `/`); the MAC is unicast;
//! - the socket path must fit `sun_path` (107 bytes);
//! - `kubeconfig` is accepted and ignored (pod config goes to a file in the pod directory).
use crate::env::CniEnv;
use crate::error::{CniError, CniResult, Code};
use crate::netconf::{IfType, MemifConf, Names, NetConf, UserSpaceConf, VhostConf};
use std::path::{Path, PathBuf};
use uswitch::config::{validate_name, MemifMode, MemifRole, MAX_SUN_PATH};

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

fn opposite(r: MemifRole) -> MemifRole {
    match r {
        MemifRole::Server => MemifRole::Client,
        MemifRole::Client => MemifRole::Server,
    }
}

/// "server" / "client": who listens on the socket.
pub fn side_str(r: MemifRole) -> &'static str {
    match r {
        MemifRole::Server => "server",
        MemifRole::Client => "client",
    }
}

fn parse_vhost_mode(s: Option<&str>, default: MemifRole, which: &str) -> CniResult<MemifRole> {
    match s {
        None | Some("") => Ok(default),
        Some("server") => Ok(MemifRole::Server),
        Some("client") => Ok(MemifRole::Client),
        Some(o) => Err(bad(format!(
            "{which}.vhost.mode {o:?} is unknown: use client|server"
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
    let b = crate::netconf::fnv1a(&[container_id, ifname]).to_be_bytes();
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
        let hv = host.vhost.clone().unwrap_or_default();
        // `role`: who listens on the socket (Server = uswitch), for memif and vhost-user alike.
        let (role, crole, mode, socket_file) = match iftype {
            IfType::Memif => {
                let role = parse_role(hm.role.as_deref(), MemifRole::Server, "host")?;
                let mode = parse_mode(hm.mode.as_deref())?;
                let cm = conf.container.memif.clone().unwrap_or_default();
                let crole = parse_role(cm.role.as_deref(), opposite(role), "container")?;
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
                let file = socket_file_name(&hm.socketfile, &names.memif_socket_file)?;
                (role, crole, mode, file)
            }
            IfType::Vhostuser => {
                let role = parse_vhost_mode(hv.mode.as_deref(), MemifRole::Server, "host")?;
                let cv = conf.container.vhost.clone().unwrap_or_default();
                let crole = parse_vhost_mode(cv.mode.as_deref(), opposite(role), "container")?;
                if crole == role {
                    return Err(bad(
                        "host.vhost.mode and container.vhost.mode must differ (one client, one server)",
                    ));
                }
                let file = socket_file_name(&hv.socketfile, &names.vhost_socket_file)?;
                (role, crole, MemifMode::Ethernet, file)
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
            v.mode = Some(side_str(crole).into());
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
    use crate::netconf::{port_name, DEFAULT_SHARED_DIR};
    use crate::types::Version;
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
        assert_eq!(p.names.port, port_name("0123456789abcdef0123", "net1"));
        assert!(p.names.port.starts_with("c-012345"));
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
        assert!(port_name("0123456789abcdef", "0123456789abcde").len() <= 32);
    }
}
