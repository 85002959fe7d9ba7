//! Declarative configuration of the switch: bridges, ports, xconnects.
//!
//! The same types are used for the `--config` file (JSON or TOML), the state file
//! (`/var/lib/uswitch/state.json`), and the bodies of control API requests. They carry
//! intent only; validation of one item lives here ([`PortConfig::validate`]), validation
//! against the rest of the switch (bridge exists, name unique) lives in `control`.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything the switch should have. Order of `ports` is the order they are created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    #[serde(default)]
    pub bridges: Vec<BridgeConfig>,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub xconnects: Vec<XconnectConfig>,
    /// DPDK EAL settings (used only by a uswitchd built with the cargo feature `dpdk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpdk: Option<DpdkSettings>,
}

/// Process-wide DPDK settings: the EAL is initialised once, at the first DPDK port (or at
/// start with `uswitchd --dpdk-eal-args`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkSettings {
    /// EAL arguments without the program name, e.g. `["-l", "0", "--file-prefix", "usw",
    /// "--no-pci"]` or `["-a", "0000:af:00.0"]`.
    #[serde(default)]
    pub eal_args: Vec<String>,
    /// Mbufs per NUMA socket pool (default 16383; `MIN_DPDK_MBUFS..=MAX_DPDK_MBUFS`). Every
    /// DPDK port's rx rings hold `queues × ring_size` of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbufs: Option<u32>,
}

pub const MIN_DPDK_MBUFS: u32 = 1023;
pub const MAX_DPDK_MBUFS: u32 = 4 * 1024 * 1024 - 1;

impl DpdkSettings {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = self.mbufs {
            if !(MIN_DPDK_MBUFS..=MAX_DPDK_MBUFS).contains(&n) {
                return Err(format!(
                    "dpdk.mbufs must be {MIN_DPDK_MBUFS}..={MAX_DPDK_MBUFS}, got {n}"
                ));
            }
        }
        if self.eal_args.iter().any(|a| a.as_bytes().contains(&0)) {
            return Err("dpdk.eal_args: an argument contains a NUL byte".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub name: String,
    /// MAC aging in seconds (default 300).
    #[serde(default = "default_aging")]
    pub aging_secs: u32,
    /// Maximum MAC table entries (default 4096); learning stops and is counted when full.
    #[serde(default = "default_fdb_max")]
    pub fdb_max: u32,
}

pub fn default_aging() -> u32 {
    300
}
pub fn default_fdb_max() -> u32 {
    4096
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XconnectConfig {
    pub a: String,
    pub b: String,
}

/// One port. `bridge` and an xconnect are mutually exclusive.
/// (Unknown fields cannot be rejected here: serde's `flatten` does not support it.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub name: String,
    #[serde(flatten)]
    pub kind: PortKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "VlanMode::is_none")]
    pub vlan: VlanMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PortKind {
    Memif(MemifConfig),
    VhostUser(VhostUserConfig),
    /// A Linux network interface through an AF_PACKET socket (no Unix socket).
    Kernel(KernelConfig),
    /// A DPDK ethdev (NIC by PCI address, or a vdev such as `net_tap0,iface=t0`). Parsed in
    /// every build; only a build with the cargo feature `dpdk` can create it.
    Dpdk(DpdkConfig),
}

impl PortKind {
    /// The `"type"` of the port as it appears in the API and config files.
    pub fn type_name(&self) -> &'static str {
        match self {
            PortKind::Memif(_) => "memif",
            PortKind::VhostUser(_) => "vhost-user",
            PortKind::Kernel(_) => "kernel",
            PortKind::Dpdk(_) => "dpdk",
        }
    }
    /// The Unix socket path of the port (memif, vhost-user); None for kinds without a socket.
    pub fn socket(&self) -> Option<&str> {
        match self {
            PortKind::Memif(m) => Some(&m.socket),
            PortKind::VhostUser(v) => Some(&v.socket),
            PortKind::Kernel(_) | PortKind::Dpdk(_) => None,
        }
    }
    /// Queue pairs the port is configured for.
    pub fn queues(&self) -> u16 {
        match self {
            PortKind::Memif(m) => m.queues,
            PortKind::VhostUser(v) => v.queues,
            PortKind::Kernel(_) => 1,
            PortKind::Dpdk(d) => d.queues,
        }
    }
}

/// A DPDK ethdev port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpdkConfig {
    /// Device arguments as `rte_dev_probe` takes them: a PCI address (`0000:af:00.0`) or a
    /// vdev (`net_tap0,iface=uswtap0`, `net_af_packet0,iface=eth1`). The part before the
    /// first comma names the device.
    pub devargs: String,
    /// rx/tx queue pairs (1..=MAX_QUEUES).
    #[serde(default = "default_queues")]
    pub queues: u16,
    /// Descriptors per rx and per tx queue (a power of two 64..=4096).
    #[serde(default = "default_dpdk_ring")]
    pub ring_size: u16,
}

pub fn default_dpdk_ring() -> u16 {
    512
}
/// Longest accepted devargs string.
pub const MAX_DEVARGS: usize = 256;

impl DpdkConfig {
    /// The device name: devargs up to the first comma (`net_tap0`, `0000:af:00.0`).
    pub fn device(&self) -> &str {
        self.devargs.split(',').next().unwrap_or("")
    }
}

/// A kernel network interface (e.g. a NIC, veth, bond) used as a port through AF_PACKET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelConfig {
    /// Interface name (1..=15 bytes, as `ip link` shows it).
    pub iface: String,
    /// Bytes per ring frame, a power of two; the largest frame the port carries is
    /// `frame_size` minus the ring header (see docs/kernel-port.md). 2048 fits MTU 1500
    /// (VLAN tagged); MTU 9000 needs 16384.
    #[serde(default = "default_kernel_frame_size")]
    pub frame_size: u32,
    /// Transmit straight to the driver, bypassing the interface's qdisc (no tc shaping on
    /// frames uswitch sends; a full driver queue drops instead of queueing).
    #[serde(default = "default_true")]
    pub qdisc_bypass: bool,
}

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
pub const MIN_KERNEL_FRAME: u32 = 2048;
pub const MAX_KERNEL_FRAME: u32 = 65536;

pub fn default_kernel_frame_size() -> u32 {
    2048
}
fn default_true() -> bool {
    true
}

/// Linux interface name rules (`dev_valid_name`): 1..=15 bytes, not `.` or `..`, no `/`,
/// `:`, whitespace or NUL.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(format!(
            "interface name {name:?} must be 1..={MAX_IFNAME} bytes"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is not allowed"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(format!(
            "interface name {name:?} contains '/', ':', whitespace or NUL"
        ));
    }
    Ok(())
}

/// Which side of the vhost-user socket uswitch is. uswitch is always the vhost-user *backend*
/// (the device); only who listens differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VhostUserMode {
    /// uswitch listens; the frontend (DPDK virtio_user, QEMU `server=off`) connects.
    Server,
    /// uswitch connects to a listening frontend (`virtio_user ...,server=1`, QEMU `server=on`).
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostUserConfig {
    /// Socket path (filesystem path; vhost-user has no abstract sockets).
    pub socket: String,
    pub mode: VhostUserMode,
    /// Queue pairs offered (1..=MAX_QUEUES); the frontend may use fewer.
    #[serde(default = "default_queues")]
    pub queues: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemifRole {
    /// uswitch listens on the socket; the peer (client) allocates the memory.
    Server,
    /// uswitch connects to the peer's socket and allocates the memory.
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemifMode {
    #[default]
    Ethernet,
    Ip,
    Punt,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemifConfig {
    /// Socket path; a leading `@` means a Linux abstract socket.
    pub socket: String,
    pub role: MemifRole,
    /// memif interface id (must match the peer's).
    #[serde(default)]
    pub id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Queue pairs (1..=MAX_QUEUES).
    #[serde(default = "default_queues")]
    pub queues: u16,
    /// log2 of ring size (default 10 = 1024 slots). Client role: the rings we create (capped
    /// by the server's HELLO). A server takes the client's size; see `max_ring_size`.
    #[serde(default = "default_ring_size")]
    pub ring_size: u8,
    /// Server role only: log2 of the largest ring a client may create, sent as HELLO
    /// `max_log2_ring_size` (DPDK and VPP clients take the smaller of it and their own size; a
    /// client that asks for more is disconnected). Unset: 14 (16384 slots), like DPDK and VPP.
    /// Smaller rings keep the buffers a client cycles through (rings × slots × buffer size)
    /// small, which matters with many ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ring_size: Option<u8>,
    /// Buffer size in bytes (default 2048).
    #[serde(default = "default_buffer_size")]
    pub buffer_size: u32,
    #[serde(default)]
    pub mode: MemifMode,
}

pub const MAX_QUEUES: u16 = 16;
pub const MIN_LOG2_RING: u8 = 1;
pub const MAX_LOG2_RING: u8 = 14;
pub const MIN_BUFFER: u32 = 128;
pub const MAX_BUFFER: u32 = 65536;
/// Longest accepted secret (memif INIT carries 24 bytes).
pub const MAX_SECRET: usize = 24;
/// Longest `sun_path` (including the leading NUL of abstract sockets).
pub const MAX_SUN_PATH: usize = 107;

/// A memif ring size given as log2 of slots must be MIN_LOG2_RING..=MAX_LOG2_RING.
fn check_log2_ring(what: &str, log2: u8) -> Result<(), String> {
    if (MIN_LOG2_RING..=MAX_LOG2_RING).contains(&log2) {
        Ok(())
    } else {
        Err(format!(
            "{what} is log2 of slots, must be {MIN_LOG2_RING}..={MAX_LOG2_RING}, got {log2}"
        ))
    }
}

pub fn default_queues() -> u16 {
    1
}
pub fn default_ring_size() -> u8 {
    10
}
pub fn default_buffer_size() -> u32 {
    2048
}

/// VLAN handling of a bridge port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlanMode {
    /// Untagged port, VLAN 0 inside the bridge; tagged frames pass unchanged.
    #[default]
    None,
    /// Access port: untagged frames belong to this VLAN; tagged frames arriving are dropped.
    Access(u16),
    /// Trunk: tagged frames whose VLAN is in the list pass; others are dropped.
    Trunk(Vec<u16>),
}

impl VlanMode {
    pub fn is_none(&self) -> bool {
        matches!(self, VlanMode::None)
    }
}

/// A config item that cannot be used, with a message a user can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid name {0:?}: use 1-32 characters from [A-Za-z0-9._-]")]
    BadName(String),
    #[error("port {port}: {msg}")]
    BadPort { port: String, msg: String },
    #[error("bridge {bridge}: {msg}")]
    BadBridge { bridge: String, msg: String },
    #[error("invalid VLAN id {0}: must be 1..=4094")]
    BadVlan(u16),
}

pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadName(name.to_string()))
    }
}

fn check_vid(v: u16) -> Result<(), ConfigError> {
    if (1..=4094).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::BadVlan(v))
    }
}

impl VlanMode {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            VlanMode::None => Ok(()),
            VlanMode::Access(v) => check_vid(*v),
            VlanMode::Trunk(list) => list.iter().try_for_each(|v| check_vid(*v)),
        }
    }
}

impl BridgeConfig {
    pub fn new(name: &str) -> Self {
        BridgeConfig {
            name: name.to_string(),
            aging_secs: default_aging(),
            fdb_max: default_fdb_max(),
        }
    }
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        if self.fdb_max == 0 || self.fdb_max > 1 << 20 {
            return Err(ConfigError::BadBridge {
                bridge: self.name.clone(),
                msg: "fdb_max must be 1..=1048576".into(),
            });
        }
        Ok(())
    }
}

impl MemifConfig {
    /// The socket path as it goes into `sun_path`: abstract sockets (`@name`) get a leading NUL.
    pub fn is_abstract(&self) -> bool {
        self.socket.starts_with('@')
    }
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(&self.socket)
    }
}

impl PortConfig {
    /// Checks this port alone (not whether its bridge exists).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        self.vlan.validate()?;
        let bad = |msg: String| ConfigError::BadPort {
            port: self.name.clone(),
            msg,
        };
        match &self.kind {
            PortKind::Memif(m) => {
                if m.socket.is_empty() || m.socket == "@" {
                    return Err(bad("socket path is empty".into()));
                }
                if !m.is_abstract() && !m.socket.starts_with('/') {
                    return Err(bad(format!(
                        "socket path {:?} must be absolute or @abstract",
                        m.socket
                    )));
                }
                if m.socket.len() > MAX_SUN_PATH {
                    return Err(bad(format!(
                        "socket path is {} bytes, longer than the {} bytes sun_path allows",
                        m.socket.len(),
                        MAX_SUN_PATH
                    )));
                }
                if m.socket.as_bytes().contains(&0) {
                    return Err(bad("socket path contains a NUL byte".into()));
                }
                if m.queues == 0 || m.queues > MAX_QUEUES {
                    return Err(bad(format!(
                        "queues must be 1..={MAX_QUEUES}, got {}",
                        m.queues
                    )));
                }
                check_log2_ring("ring-size", m.ring_size).map_err(bad)?;
                if let Some(max) = m.max_ring_size {
                    if m.role != MemifRole::Server {
                        return Err(bad(
                            "max-ring-size applies to server-role ports only (a client sets ring-size)"
                                .into(),
                        ));
                    }
                    check_log2_ring("max-ring-size", max).map_err(bad)?;
                }
                if !(MIN_BUFFER..=MAX_BUFFER).contains(&m.buffer_size) {
                    return Err(bad(format!(
                        "buffer-size must be {MIN_BUFFER}..={MAX_BUFFER}, got {}",
                        m.buffer_size
                    )));
                }
                if let Some(s) = &m.secret {
                    if s.len() > MAX_SECRET {
                        return Err(bad(format!("secret longer than {MAX_SECRET} bytes")));
                    }
                }
            }
            PortKind::VhostUser(v) => {
                if v.socket.is_empty() {
                    return Err(bad("socket path is empty".into()));
                }
                if !v.socket.starts_with('/') {
                    return Err(bad(format!("socket path {:?} must be absolute", v.socket)));
                }
                if v.socket.len() > MAX_SUN_PATH {
                    return Err(bad(format!(
                        "socket path is {} bytes, longer than the {} bytes sun_path allows",
                        v.socket.len(),
                        MAX_SUN_PATH
                    )));
                }
                if v.socket.as_bytes().contains(&0) {
                    return Err(bad("socket path contains a NUL byte".into()));
                }
                if v.queues == 0 || v.queues > MAX_QUEUES {
                    return Err(bad(format!(
                        "queues must be 1..={MAX_QUEUES}, got {}",
                        v.queues
                    )));
                }
            }
            PortKind::Kernel(k) => {
                validate_ifname(&k.iface).map_err(bad)?;
                if !k.frame_size.is_power_of_two()
                    || !(MIN_KERNEL_FRAME..=MAX_KERNEL_FRAME).contains(&k.frame_size)
                {
                    return Err(bad(format!(
                        "frame-size must be a power of two {MIN_KERNEL_FRAME}..={MAX_KERNEL_FRAME}, got {}",
                        k.frame_size
                    )));
                }
            }
            PortKind::Dpdk(d) => {
                if d.device().is_empty() {
                    return Err(bad(
                        "devargs is empty (give a PCI address or a vdev such as net_tap0,iface=t0)"
                            .into(),
                    ));
                }
                if d.devargs.len() > MAX_DEVARGS {
                    return Err(bad(format!("devargs longer than {MAX_DEVARGS} bytes")));
                }
                if d.devargs
                    .bytes()
                    .any(|b| b == 0 || b.is_ascii_whitespace() || !b.is_ascii())
                {
                    return Err(bad(
                        "devargs contains whitespace, NUL or non-ASCII bytes".into()
                    ));
                }
                if d.queues == 0 || d.queues > MAX_QUEUES {
                    return Err(bad(format!(
                        "queues must be 1..={MAX_QUEUES}, got {}",
                        d.queues
                    )));
                }
                if !d.ring_size.is_power_of_two() || !(64..=4096).contains(&d.ring_size) {
                    return Err(bad(format!(
                        "ring-size must be a power of two 64..=4096, got {}",
                        d.ring_size
                    )));
                }
            }
        }
        Ok(())
    }
}

impl SwitchConfig {
    /// Parses a config file: TOML when the path ends in `.toml`, JSON otherwise.
    pub fn parse(text: &str, toml_format: bool) -> Result<Self, String> {
        if toml_format {
            toml::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(text).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_json_roundtrip_and_defaults() {
        let p: PortConfig = serde_json::from_str(
            r#"{"name":"p0","type":"memif","socket":"/run/a.sock","role":"server","bridge":"br0","vlan":{"access":10}}"#,
        )
        .unwrap();
        let PortKind::Memif(m) = &p.kind else {
            panic!("not memif")
        };
        assert_eq!(
            (m.queues, m.ring_size, m.buffer_size, m.id),
            (1, 10, 2048, 0)
        );
        assert_eq!(p.vlan, VlanMode::Access(10));
        p.validate().unwrap();
        let back: PortConfig = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn toml_config() {
        let c = SwitchConfig::parse(
            "[[bridges]]\nname='br0'\n[[ports]]\nname='a'\ntype='memif'\nsocket='@a'\nrole='client'\nvlan={trunk=[10,20]}\n",
            true,
        )
        .unwrap();
        assert_eq!(c.bridges[0].aging_secs, 300);
        assert_eq!(c.ports[0].vlan, VlanMode::Trunk(vec![10, 20]));
    }

    #[test]
    fn rejects_bad_values() {
        let mut p: PortConfig = serde_json::from_str(
            r#"{"name":"p0","type":"memif","socket":"/run/a.sock","role":"server"}"#,
        )
        .unwrap();
        p.vlan = VlanMode::Access(4095);
        assert_eq!(p.validate(), Err(ConfigError::BadVlan(4095)));
        p.vlan = VlanMode::None;
        let PortKind::Memif(m) = &mut p.kind else {
            panic!("not memif")
        };
        m.socket = format!("/{}", "x".repeat(120));
        assert!(p.validate().unwrap_err().to_string().contains("sun_path"));
        assert!(validate_name("a b").is_err());
    }

    #[test]
    fn max_ring_size_is_server_only_and_bounded() {
        let mut p: PortConfig = serde_json::from_str(
            r#"{"name":"p0","type":"memif","socket":"/run/a.sock","role":"server","max_ring_size":8}"#,
        )
        .unwrap();
        assert_eq!(p.validate(), Ok(()));
        let PortKind::Memif(m) = &mut p.kind else {
            panic!("not memif")
        };
        assert_eq!(m.max_ring_size, Some(8));
        m.max_ring_size = Some(15);
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.contains("max-ring-size is log2 of slots, must be 1..=14, got 15"),
            "{e}"
        );
        let PortKind::Memif(m) = &mut p.kind else {
            panic!("not memif")
        };
        m.max_ring_size = Some(8);
        m.role = MemifRole::Client;
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("server-role ports only"), "{e}");
        // Unset stays out of the JSON: state files and `show` output look as before.
        let PortKind::Memif(m) = &mut p.kind else {
            panic!("not memif")
        };
        m.max_ring_size = None;
        assert!(!serde_json::to_string(&p).unwrap().contains("max_ring_size"));
    }

    #[test]
    fn vhost_user_port_config() {
        let p: PortConfig = serde_json::from_str(
            r#"{"name":"v0","type":"vhost-user","socket":"/run/v.sock","mode":"server","bridge":"br0"}"#,
        )
        .unwrap();
        let PortKind::VhostUser(v) = &p.kind else {
            panic!("not vhost-user")
        };
        assert_eq!((v.mode, v.queues), (VhostUserMode::Server, 1));
        p.validate().unwrap();
        let back: PortConfig = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let mut bad = p.clone();
        bad.kind = PortKind::VhostUser(VhostUserConfig {
            socket: "rel.sock".into(),
            mode: VhostUserMode::Client,
            queues: 1,
        });
        assert!(bad.validate().unwrap_err().to_string().contains("absolute"));
        bad.kind = PortKind::VhostUser(VhostUserConfig {
            socket: "/a".into(),
            mode: VhostUserMode::Client,
            queues: 0,
        });
        assert!(bad.validate().unwrap_err().to_string().contains("queues"));
    }

    #[test]
    fn kernel_port_config() {
        let p: PortConfig = serde_json::from_str(
            r#"{"name":"up0","type":"kernel","iface":"eth0","bridge":"br0","vlan":{"trunk":[10]}}"#,
        )
        .unwrap();
        let PortKind::Kernel(k) = &p.kind else {
            panic!("not kernel")
        };
        assert_eq!(
            (k.iface.as_str(), k.frame_size, k.qdisc_bypass),
            ("eth0", 2048, true)
        );
        assert_eq!(p.kind.socket(), None);
        assert_eq!(p.kind.type_name(), "kernel");
        p.validate().unwrap();
        let back: PortConfig = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let c = SwitchConfig::parse(
            "[[ports]]\nname='up0'\ntype='kernel'\niface='veth-a'\nframe_size=16384\n",
            true,
        )
        .unwrap();
        c.ports[0].validate().unwrap();
        for (iface, frame, want) in [
            ("", 2048, "1..=15"),
            ("sixteen-chars-xx", 2048, "1..=15"),
            ("a/b", 2048, "'/'"),
            ("a b", 2048, "whitespace"),
            ("eth0:1", 2048, "':'"),
            ("..", 2048, "not allowed"),
            ("eth0", 3000, "power of two"),
            ("eth0", 1024, "power of two"),
            ("eth0", 131072, "power of two"),
        ] {
            let mut q = p.clone();
            q.kind = PortKind::Kernel(KernelConfig {
                iface: iface.into(),
                frame_size: frame,
                qdisc_bypass: true,
            });
            let e = q.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{iface:?}/{frame}: {e}");
        }
        validate_ifname("x123456789abcde").unwrap();
    }

    #[test]
    fn dpdk_port_config() {
        let p: PortConfig = serde_json::from_str(
            r#"{"name":"up0","type":"dpdk","devargs":"net_tap0,iface=uswtap0","bridge":"br0"}"#,
        )
        .unwrap();
        let PortKind::Dpdk(d) = &p.kind else {
            panic!("not dpdk")
        };
        assert_eq!((d.device(), d.queues, d.ring_size), ("net_tap0", 1, 512));
        assert_eq!(p.kind.type_name(), "dpdk");
        assert_eq!(p.kind.socket(), None);
        p.validate().unwrap();
        let back: PortConfig = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        for (devargs, queues, ring, want) in [
            ("", 1, 512, "empty"),
            (",iface=x", 1, 512, "empty"),
            ("net_tap0 iface=x", 1, 512, "whitespace"),
            ("0000:af:00.0", 0, 512, "queues"),
            ("0000:af:00.0", 17, 512, "queues"),
            ("0000:af:00.0", 1, 100, "ring-size"),
            ("0000:af:00.0", 1, 8192, "ring-size"),
        ] {
            let mut q = p.clone();
            q.kind = PortKind::Dpdk(DpdkConfig {
                devargs: devargs.into(),
                queues,
                ring_size: ring,
            });
            let e = q.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{devargs:?}/{queues}/{ring}: {e}");
        }
        let c = SwitchConfig::parse(
            "[dpdk]\neal_args=['-l','0','--no-pci']\n[[ports]]\nname='up0'\ntype='dpdk'\ndevargs='0000:af:00.0'\nqueues=2\n",
            true,
        )
        .unwrap();
        let d = c.dpdk.clone().unwrap();
        assert_eq!(d.eal_args, ["-l", "0", "--no-pci"]);
        assert_eq!(d.mbufs, None);
        d.validate().unwrap();
        for (n, ok) in [(1022, false), (1023, true), (65535, true), (4 << 20, false)] {
            let s = DpdkSettings {
                eal_args: vec![],
                mbufs: Some(n),
            };
            assert_eq!(s.validate().is_ok(), ok, "{n}");
        }
        c.ports[0].validate().unwrap();
    }
}
