//! The pod's view of its uswitch attachment: read from the pod config data file that
//! `uswitch-cni` ADD writes, then overridden field by field by flags / environment.
//!
//! Rules:
//! - File location: `--config FILE`, else discovered in the shared dir as
//!   `<shared>/<containerID or cid12>/configData-<cid12>-<ifname>.json` (the CNI's layout); with
//!   no container id, the one `configData-*-<ifname>.json` under `<shared>/*/` (several: error).
//! - Our flat fields (`socketPath`, `role`, `mac`, `ips`, `routes`, ...) win; a file written by
//!   Intel's userspace CNI (only `config` and `ipResult`) is understood too.
//! - With no file at all, `--socket` (plus optional MAC/IPs/routes) is enough to run.
//! - A socket path that is not visible in this mount namespace, but whose file name exists next
//!   to the config file, is taken from there (shared dir mounted elsewhere in the pod).
//! - Every value is validated here once; the modes get typed values only.
use crate::error::{AgentError, Result};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use uswitch::config::{MemifMode, MemifRole};

/// Default shared directory of the CNI (host side; mounted into pods).
pub const DEFAULT_SHARED_DIR: &str = "/run/uswitch";
/// Default MTU of the tap (the CNI result carries none).
pub const DEFAULT_MTU: u16 = 1500;
/// Largest MTU we accept: a frame (MTU + 14 + 4 VLAN) must fit `uswitch::port::MAX_FRAME`.
pub const MAX_MTU: u16 = 9198;

/// Host-side interface type (what the socket speaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfType {
    Memif,
    Vhostuser,
}

/// An address with prefix length, e.g. `10.56.217.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> std::result::Result<Cidr, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A route: destination, optional gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: Cidr,
    pub gw: Option<IpAddr>,
}

impl RouteSpec {
    /// `DST` or `DST via GW`; `default` means 0.0.0.0/0 (or ::/0 with an IPv6 gateway).
    pub fn parse(s: &str) -> std::result::Result<RouteSpec, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let (dst, gw) = match words.as_slice() {
            [d] => (*d, None),
            [d, "via", g] => {
                let gw: IpAddr = g
                    .parse()
                    .map_err(|_| format!("route {s:?}: gateway {g:?} is not an IP"))?;
                (*d, Some(gw))
            }
            _ => return Err(format!("route {s:?}: use \"DST\" or \"DST via GW\"")),
        };
        let dst = if dst == "default" {
            match gw {
                Some(IpAddr::V6(_)) => Cidr::parse("::/0")?,
                _ => Cidr::parse("0.0.0.0/0")?,
            }
        } else {
            Cidr::parse(dst)?
        };
        if gw.is_some_and(|g| g.is_ipv4() != dst.addr.is_ipv4()) {
            return Err(format!(
                "route {s:?}: gateway and destination differ in IP version"
            ));
        }
        Ok(RouteSpec { dst, gw })
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gw {
            Some(g) => write!(f, "{} via {}", self.dst, g),
            None => write!(f, "{}", self.dst),
        }
    }
}

pub fn parse_mac(s: &str) -> std::result::Result<[u8; 6], String> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(format!(
            "MAC {s:?}: use six hex bytes like 02:aa:00:00:00:01"
        ));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(format!(
                "MAC {s:?}: use six hex bytes like 02:aa:00:00:00:01"
            ));
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| format!("MAC {s:?}: {p:?} is not hex"))?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(format!("MAC {s:?} is multicast or zero"));
    }
    Ok(mac)
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Everything a mode needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PodConfig {
    /// The file read, if any.
    pub source: Option<PathBuf>,
    pub container_id: Option<String>,
    /// Pod interface name (the tap's name in tap mode).
    pub ifname: String,
    pub iftype: IfType,
    /// The pod's role on the socket (client when uswitchd is the memif server).
    pub role: MemifRole,
    pub mode: MemifMode,
    /// Socket path; `@name` is an abstract socket.
    pub socket: String,
    /// memif interface id.
    pub id: u32,
    pub mac: Option<[u8; 6]>,
    pub ips: Vec<Cidr>,
    pub routes: Vec<RouteSpec>,
    pub mtu: u16,
    pub vlan: Option<u16>,
    pub bridge: Option<String>,
    /// Queue pairs of the uswitch port (file field `queues`, default 1).
    pub queues: u16,
}

/// Flag / environment values that select the file and override its fields.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub shared_dir: Option<PathBuf>,
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub socket: Option<String>,
    pub id: Option<u32>,
    pub mac: Option<String>,
    pub ips: Vec<String>,
    pub routes: Vec<String>,
    pub mtu: Option<u16>,
}

// --- the file -------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataFile {
    container_id: Option<String>,
    if_name: Option<String>,
    iftype: Option<String>,
    role: Option<String>,
    mode: Option<String>,
    socket_path: Option<String>,
    mac: Option<String>,
    ips: Option<Vec<String>>,
    routes: Option<Vec<FileRoute>>,
    mtu: Option<u16>,
    vlan: Option<u16>,
    bridge: Option<String>,
    queues: Option<u16>,
    config: Option<IntelConf>,
    ip_result: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct FileRoute {
    dst: String,
    gw: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct IntelConf {
    iftype: Option<String>,
    memif: Option<IntelMemif>,
    vhost: Option<IntelVhost>,
}

#[derive(Debug, Default, Deserialize)]
struct IntelMemif {
    role: Option<String>,
    mode: Option<String>,
    socketfile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct IntelVhost {
    mode: Option<String>,
    socketfile: Option<String>,
}

fn cid12(cid: &str) -> &str {
    cid.get(..12).unwrap_or(cid)
}

/// Finds the config data file in `shared` for the given container id / ifname.
pub fn discover(shared: &Path, cid: Option<&str>, ifname: Option<&str>) -> Result<PathBuf> {
    if !shared.is_dir() {
        return Err(AgentError::MissingConfig(format!(
            "shared dir {} does not exist (give --config FILE, --shared-dir DIR or --socket PATH)",
            shared.display()
        )));
    }
    if let (Some(cid), Some(ifn)) = (cid, ifname) {
        let file = format!("configData-{}-{ifn}.json", cid12(cid));
        for dir in [cid, cid12(cid)] {
            let p = shared.join(dir).join(&file);
            if p.is_file() {
                return Ok(p);
            }
        }
        return Err(AgentError::MissingConfig(format!(
            "no {file} under {}/{{{cid},{}}} (has uswitch-cni ADD run for this pod?)",
            shared.display(),
            cid12(cid)
        )));
    }
    let c12 = cid.map(cid12);
    let pattern = format!(
        "configData-{}-{}.json",
        c12.unwrap_or("*"),
        ifname.unwrap_or("*")
    );
    let mut found = Vec::new();
    let dirs = std::fs::read_dir(shared)
        .map_err(|e| AgentError::io(format!("reading {}", shared.display()), e))?;
    for d in dirs.flatten() {
        let dname = d.file_name().to_string_lossy().into_owned();
        if cid.is_some_and(|c| dname != c && Some(dname.as_str()) != c12) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let n = f.file_name().to_string_lossy().into_owned();
            let Some(rest) = n
                .strip_prefix("configData-")
                .and_then(|r| r.strip_suffix(".json"))
            else {
                continue;
            };
            let cid_ok = c12.is_none_or(|c| rest.starts_with(&format!("{c}-")));
            let if_ok = ifname.is_none_or(|i| rest.ends_with(&format!("-{i}")));
            if cid_ok && if_ok {
                found.push(f.path());
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(AgentError::MissingConfig(format!(
            "no {pattern} under {}/*/ (has uswitch-cni ADD run? give --config FILE)",
            shared.display()
        ))),
        n => Err(AgentError::MissingConfig(format!(
            "{n} pod config files {pattern} under {} match; choose one with --container-id / --ifname or --config",
            shared.display()
        ))),
    }
}

fn read_file(path: &Path) -> Result<DataFile> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AgentError::MissingConfig(format!("config file {} does not exist", path.display()))
        } else {
            AgentError::io(format!("reading {}", path.display()), e)
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        AgentError::bad(
            path.display().to_string(),
            format!("not a pod config data file: {e}"),
        )
    })
}

fn pod_role(s: &str) -> Option<MemifRole> {
    match s {
        // Ours names the pod's side; Intel names it master/slave.
        "client" | "slave" => Some(MemifRole::Client),
        "server" | "master" => Some(MemifRole::Server),
        _ => None,
    }
}

fn memif_mode(s: &str) -> Option<MemifMode> {
    match s {
        "" | "ethernet" => Some(MemifMode::Ethernet),
        "ip" => Some(MemifMode::Ip),
        "inject-punt" | "punt" => Some(MemifMode::Punt),
        _ => None,
    }
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl PodConfig {
    /// Reads the file (given or discovered) and applies the overrides.
    pub fn load(o: &Overrides) -> Result<PodConfig> {
        let path = match (&o.config, &o.socket) {
            (Some(p), _) => Some(p.clone()),
            // Enough flags to run without a file: do not go looking for one.
            (None, Some(_)) if o.shared_dir.is_none() => None,
            (None, _) => {
                let shared = o
                    .shared_dir
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SHARED_DIR.into());
                match discover(&shared, o.container_id.as_deref(), o.ifname.as_deref()) {
                    Ok(p) => Some(p),
                    Err(_) if o.socket.is_some() => None,
                    Err(e) => return Err(e),
                }
            }
        };
        let file = match &path {
            Some(p) => read_file(p)?,
            None => DataFile::default(),
        };
        Self::build(path, file, o)
    }

    fn build(path: Option<PathBuf>, f: DataFile, o: &Overrides) -> Result<PodConfig> {
        let src = path
            .as_ref()
            .map_or("(flags)".to_string(), |p| p.display().to_string());
        let bad = |m: String| AgentError::bad(src.clone(), m);
        let intel = f.config.unwrap_or_default();
        let ipr = f.ip_result.unwrap_or(serde_json::Value::Null);

        let iftype = match f
            .iftype
            .as_deref()
            .or(intel.iftype.as_deref())
            .unwrap_or("memif")
        {
            "memif" => IfType::Memif,
            "vhostuser" => IfType::Vhostuser,
            o => return Err(bad(format!("iftype {o:?} is unknown (memif or vhostuser)"))),
        };
        let role_s = f.role.clone().or_else(|| match iftype {
            IfType::Memif => intel.memif.as_ref().and_then(|m| m.role.clone()),
            IfType::Vhostuser => intel.vhost.as_ref().and_then(|v| v.mode.clone()),
        });
        let role = match role_s.as_deref() {
            None => MemifRole::Client,
            Some(r) => pod_role(r).ok_or_else(|| bad(format!("role {r:?} is unknown")))?,
        };
        let mode_s = f
            .mode
            .clone()
            .or_else(|| intel.memif.as_ref().and_then(|m| m.mode.clone()));
        let mode = memif_mode(mode_s.as_deref().unwrap_or("")).ok_or_else(|| {
            bad(format!(
                "mode {mode_s:?} is unknown (ethernet, ip, inject-punt)"
            ))
        })?;

        // Socket: flag, our field, Intel's socketfile (relative to the file's directory).
        let dir = path
            .as_ref()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let intel_sock = match iftype {
            IfType::Memif => intel.memif.as_ref().and_then(|m| m.socketfile.clone()),
            IfType::Vhostuser => intel.vhost.as_ref().and_then(|v| v.socketfile.clone()),
        };
        let socket = o
            .socket
            .clone()
            .or(f.socket_path.clone())
            .or(intel_sock)
            .ok_or_else(|| {
                AgentError::MissingConfig(format!(
                    "{src}: no socket path (socketPath / config.memif.socketfile); give --socket PATH"
                ))
            })?;
        let socket = resolve_socket(&socket, dir.as_deref());
        if socket.len() > uswitch::config::MAX_SUN_PATH || socket.is_empty() || socket == "@" {
            return Err(bad(format!(
                "socket path {socket:?} is empty or longer than 107 bytes"
            )));
        }

        let ifname = o
            .ifname
            .clone()
            .or(f.if_name.clone())
            .unwrap_or_else(|| "net1".to_string());
        if !valid_ifname(&ifname) {
            return Err(bad(format!(
                "interface name {ifname:?}: use 1-15 of [A-Za-z0-9._-]"
            )));
        }

        let mac_s = o.mac.clone().or(f.mac.clone()).or_else(|| {
            ipr.get("interfaces")?
                .get(0)?
                .get("mac")?
                .as_str()
                .map(str::to_string)
        });
        let mac = mac_s.as_deref().map(parse_mac).transpose().map_err(&bad)?;

        let ip_strs: Vec<String> = if !o.ips.is_empty() {
            o.ips.clone()
        } else if let Some(ips) = f.ips {
            ips
        } else {
            ipr.get("ips")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.get("address")?.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let ips = ip_strs
            .iter()
            .map(|s| Cidr::parse(s))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(&bad)?;

        let routes = if !o.routes.is_empty() {
            o.routes
                .iter()
                .map(|s| RouteSpec::parse(s))
                .collect::<std::result::Result<Vec<_>, _>>()
        } else {
            let file_routes: Vec<FileRoute> = match f.routes {
                Some(r) => r,
                None => ipr
                    .get("routes")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default(),
            };
            file_routes
                .iter()
                .map(|r| {
                    let s = match &r.gw {
                        Some(g) => format!("{} via {g}", r.dst),
                        None => r.dst.clone(),
                    };
                    RouteSpec::parse(&s)
                })
                .collect()
        }
        .map_err(&bad)?;

        let mtu = o.mtu.or(f.mtu).unwrap_or(DEFAULT_MTU);
        if !(68..=MAX_MTU).contains(&mtu) {
            return Err(bad(format!("MTU {mtu} must be 68..={MAX_MTU}")));
        }
        let queues = f.queues.unwrap_or(1);
        if !(1..=uswitch::config::MAX_QUEUES).contains(&queues) {
            return Err(bad(format!(
                "queues {queues} must be 1..={}",
                uswitch::config::MAX_QUEUES
            )));
        }
        Ok(PodConfig {
            source: path,
            container_id: o.container_id.clone().or(f.container_id),
            ifname,
            iftype,
            role,
            mode,
            socket,
            id: o.id.unwrap_or(0),
            mac,
            ips,
            routes,
            mtu,
            vlan: f.vlan,
            bridge: f.bridge,
            queues,
        })
    }

    /// The MAC to use: configured, else a locally administered one derived from the socket path
    /// (stable across restarts of the agent).
    pub fn mac_or_derived(&self) -> [u8; 6] {
        if let Some(m) = self.mac {
            return m;
        }
        // FNV-1a over the socket path.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.socket.bytes().chain(self.ifname.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        [0x02, b[1], b[2], b[3], b[4], b[5]]
    }

    /// The socket as a filesystem path (None for abstract sockets).
    pub fn socket_file(&self) -> Option<&Path> {
        (!self.socket.starts_with('@')).then(|| Path::new(&self.socket))
    }
}

fn resolve_socket(sock: &str, cfg_dir: Option<&Path>) -> String {
    if sock.starts_with('@') {
        return sock.to_string();
    }
    let p = Path::new(sock);
    let p = match (p.is_relative(), cfg_dir) {
        (true, Some(d)) => d.join(p),
        _ => p.to_path_buf(),
    };
    if !p.exists() {
        if let (Some(d), Some(name)) = (cfg_dir, p.file_name()) {
            let alt = d.join(name);
            if alt.exists() {
                return alt.display().to_string();
            }
        }
    }
    p.display().to_string()
}

#[cfg(test)]
#[path = "podconf_tests.rs"]
mod tests;
