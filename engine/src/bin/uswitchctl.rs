//! `uswitchctl`: command-line client of the uswitchd control socket.
//!
//! Every command is one request through [`uswitch::control::client::call`]. Read commands
//! print tables, or the raw result JSON with `--json`. Errors go to stderr as
//! `uswitchctl: error: <message>` with exit code 1; usage errors exit with 2 (clap).
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use uswitch::config::{
    BridgeConfig, DpdkConfig, KernelConfig, MemifConfig, MemifMode, MemifRole, PortConfig,
    PortKind, VhostUserConfig, VhostUserMode, VlanMode, MAX_LOG2_RING, MIN_LOG2_RING,
};
use uswitch::control::api::{FdbEntry, PortEntry, Request, ShowResult, WorkerStats};
use uswitch::control::client::{call, ClientError, DEFAULT_CONTROL};
use uswitch::control::render;
use uswitch::port::PortStats;

#[derive(Parser, Debug)]
#[command(name = "uswitchctl", version, about = "Manage a running uswitchd")]
struct Cli {
    /// uswitchd control socket [default: $USWITCH_CONTROL, else /run/uswitch/uswitchd.sock].
    #[arg(long, global = true, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print the raw result JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the daemon's answer.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Bridges, ports, xconnects and worker in one view.
    Show,
    /// Add or delete bridges.
    Bridge {
        #[command(subcommand)]
        cmd: BridgeCmd,
    },
    /// Add, delete or list ports.
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// `xconnect A B` connects two unbridged ports back to back; `xconnect del A` removes it.
    Xconnect(XconnectArgs),
    /// Port counters (all ports, or one), or with --worker the worker's cycle accounting.
    Stats {
        port: Option<String>,
        /// Reset the counters after reading them.
        #[arg(long)]
        clear: bool,
        /// Show worker cycles (busy cycles per packet) instead of port counters.
        #[arg(long, conflicts_with = "port")]
        worker: bool,
    },
    /// MAC tables.
    Fdb {
        #[command(subcommand)]
        cmd: FdbCmd,
    },
}

#[derive(Subcommand, Debug)]
enum BridgeCmd {
    Add {
        name: String,
        /// MAC aging in seconds.
        #[arg(long, value_name = "S", default_value_t = uswitch::config::default_aging())]
        aging: u32,
        /// Maximum MAC table entries.
        #[arg(long, value_name = "N", default_value_t = uswitch::config::default_fdb_max())]
        fdb_max: u32,
    },
    Del {
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PortType {
    Memif,
    VhostUser,
    /// A Linux interface through AF_PACKET (`--iface`).
    Kernel,
    /// A DPDK ethdev (`--devargs`): NIC by PCI address or a vdev (needs uswitchd built with
    /// the cargo feature dpdk).
    Dpdk,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Server,
    Client,
}

/// memif: ethernet|ip|punt; vhost-user: server|client.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Ethernet,
    Ip,
    Punt,
    Server,
    Client,
}

#[derive(Args, Debug)]
struct PortAddArgs {
    name: String,
    #[arg(value_enum)]
    kind: PortType,
    /// memif, vhost-user: socket path (absolute), or @name for an abstract memif socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<String>,
    /// kernel: the Linux interface to attach (e.g. eth0, a veth end).
    #[arg(long, value_name = "IFNAME")]
    iface: Option<String>,
    /// kernel: bytes per ring frame, a power of two [default: 2048; 16384 for MTU 9000].
    #[arg(long, value_name = "N")]
    frame_size: Option<u32>,
    /// kernel: send through the interface's qdisc (tc) instead of straight to the driver.
    #[arg(long)]
    no_qdisc_bypass: bool,
    /// dpdk: device arguments: a PCI address (0000:af:00.0) or a vdev
    /// (net_tap0,iface=uswtap0; net_af_packet0,iface=eth1).
    #[arg(long, value_name = "S")]
    devargs: Option<String>,
    /// dpdk: descriptors per rx and per tx queue, a power of two 64..=4096 [default: 512].
    #[arg(long, value_name = "N")]
    descriptors: Option<u16>,
    /// memif: server (uswitch listens, the peer allocates memory) or client (uswitch connects).
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// memif interface id (must match the peer's) [memif default: 0].
    #[arg(long, value_name = "N")]
    id: Option<u32>,
    /// memif secret (at most 24 bytes; the peer must send the same).
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// memif, vhost-user, dpdk: queue pairs [default: 1].
    #[arg(long, value_name = "N")]
    queues: Option<u16>,
    /// memif ring size as log2 of slots (10 = 1024, like DPDK rsize), or a slot count (power
    /// of two) [memif default: 10].
    #[arg(long, value_name = "N", value_parser = parse_ring_size)]
    ring_size: Option<u8>,
    /// memif server: the largest ring a client may create, log2 or a slot count (HELLO
    /// max_log2_ring_size; DPDK and VPP clients shrink their rings to it) [default: 14].
    #[arg(long, value_name = "N", value_parser = parse_ring_size)]
    max_ring_size: Option<u8>,
    /// memif buffer size in bytes [memif default: 2048].
    #[arg(long, value_name = "N")]
    buffer_size: Option<u32>,
    /// memif interface mode (ethernet|ip|punt, default ethernet); vhost-user: server (uswitch
    /// listens, the frontend connects) or client (uswitch connects to a server=1 frontend).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Attach to this bridge.
    #[arg(long, value_name = "B")]
    bridge: Option<String>,
    /// Access port in this VLAN (needs --bridge).
    #[arg(long, value_name = "N", requires = "bridge", conflicts_with = "trunk")]
    vlan: Option<u16>,
    /// Trunk port carrying these VLANs, e.g. 10,20,30-32 (needs --bridge).
    #[arg(long, value_name = "LIST", requires = "bridge", value_parser = parse_vlan_list)]
    trunk: Option<VlanList>,
}

#[derive(Subcommand, Debug)]
enum PortCmd {
    /// Create a port (server sockets are bound before this returns).
    Add(PortAddArgs),
    /// Delete a port, its socket and its xconnect.
    Del { name: String },
    /// List ports: type, role, link, bridge/VLAN, socket or interface, memory backing, peer.
    List,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct XconnectArgs {
    #[command(subcommand)]
    del: Option<XconnectCmd>,
    #[arg(required = true)]
    a: Option<String>,
    #[arg(required = true)]
    b: Option<String>,
}

#[derive(Subcommand, Debug)]
enum XconnectCmd {
    /// Remove the xconnect port A is part of.
    Del { a: String },
}

#[derive(Subcommand, Debug)]
enum FdbCmd {
    Show { bridge: String },
}

/// A parsed VLAN list (newtype so clap does not treat it as a multi-value argument).
#[derive(Clone, Debug, PartialEq)]
struct VlanList(Vec<u16>);

/// Parses "10,20,30-32" into sorted, deduplicated VLAN ids 1..=4094.
fn parse_vlan_list(s: &str) -> Result<VlanList, String> {
    let vid = |t: &str| -> Result<u16, String> {
        let v: u16 = t
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a VLAN id"))?;
        if (1..=4094).contains(&v) {
            Ok(v)
        } else {
            Err(format!("VLAN id {v} out of range 1..=4094"))
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (vid(a)?, vid(b)?);
                if a > b {
                    return Err(format!("range {part:?} is backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(vid(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(VlanList(out))
}

/// Ring size: log2 (1..=14), or a power-of-two slot count (16..=16384).
fn parse_ring_size(s: &str) -> Result<u8, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (MIN_LOG2_RING as u32..=MAX_LOG2_RING as u32).contains(&n) {
        return Ok(n as u8);
    }
    if n.is_power_of_two() && (16..=1 << MAX_LOG2_RING).contains(&n) {
        return Ok(n.trailing_zeros() as u8);
    }
    Err(format!(
        "ring size {n}: give log2 of slots ({MIN_LOG2_RING}..={MAX_LOG2_RING}) or a power of two 16..={}",
        1u32 << MAX_LOG2_RING
    ))
}

/// Checks option combinations clap cannot express (which options belong to which port type).
fn check_port_add(a: &PortAddArgs) -> Result<(), String> {
    let memif_only = [
        (a.role.is_some(), "--role"),
        (a.id.is_some(), "--id"),
        (a.secret.is_some(), "--secret"),
        (a.ring_size.is_some(), "--ring-size"),
        (a.max_ring_size.is_some(), "--max-ring-size"),
        (a.buffer_size.is_some(), "--buffer-size"),
    ];
    let kernel_only = [
        (a.iface.is_some(), "--iface"),
        (a.frame_size.is_some(), "--frame-size"),
        (a.no_qdisc_bypass, "--no-qdisc-bypass"),
    ];
    let dpdk_only = [
        (a.devargs.is_some(), "--devargs"),
        (a.descriptors.is_some(), "--descriptors"),
    ];
    if !matches!(a.kind, PortType::Dpdk) {
        if let Some((_, opt)) = dpdk_only.iter().find(|(given, _)| *given) {
            return Err(format!("{opt} applies to dpdk ports only"));
        }
    }
    if matches!(a.kind, PortType::Memif | PortType::VhostUser) {
        if a.socket.is_none() {
            return Err("memif and vhost-user ports need --socket PATH".into());
        }
        if let Some((_, opt)) = kernel_only.iter().find(|(given, _)| *given) {
            return Err(format!("{opt} applies to kernel ports only"));
        }
    }
    match a.kind {
        PortType::Memif => {
            if a.role.is_none() {
                return Err("memif ports need --role server|client".into());
            }
            if matches!(a.mode, Some(ModeArg::Server | ModeArg::Client)) {
                return Err("memif --mode is ethernet, ip or punt (the side is --role)".into());
            }
            if a.max_ring_size.is_some() && matches!(a.role, Some(RoleArg::Client)) {
                return Err(
                    "--max-ring-size applies to --role server (a client sets --ring-size)".into(),
                );
            }
        }
        PortType::VhostUser => {
            if !matches!(a.mode, Some(ModeArg::Server | ModeArg::Client)) {
                return Err("vhost-user ports need --mode server|client".into());
            }
            if let Some((_, opt)) = memif_only.iter().find(|(given, _)| *given) {
                return Err(format!("{opt} applies to memif ports only"));
            }
        }
        PortType::Kernel => {
            if a.iface.is_none() {
                return Err("kernel ports need --iface IFNAME".into());
            }
            let not_kernel = [
                (a.socket.is_some(), "--socket"),
                (a.queues.is_some(), "--queues"),
                (a.mode.is_some(), "--mode"),
            ];
            if let Some((_, opt)) = memif_only
                .iter()
                .chain(not_kernel.iter())
                .find(|(given, _)| *given)
            {
                return Err(format!("{opt} does not apply to kernel ports"));
            }
        }
        PortType::Dpdk => {
            if a.devargs.is_none() {
                return Err("dpdk ports need --devargs (PCI address or vdev)".into());
            }
            let not_dpdk = [
                (a.socket.is_some(), "--socket"),
                (a.mode.is_some(), "--mode"),
            ];
            if let Some((_, opt)) = memif_only
                .iter()
                .chain(kernel_only.iter())
                .chain(not_dpdk.iter())
                .find(|(given, _)| *given)
            {
                return Err(format!("{opt} does not apply to dpdk ports"));
            }
        }
    }
    Ok(())
}

/// Parses the command line, then checks per-type options (usage error, exit code 2).
fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::CommandFactory;
    let cli = Cli::try_parse_from(args)?;
    if let Cmd::Port {
        cmd: PortCmd::Add(a),
    } = &cli.cmd
    {
        if let Err(msg) = check_port_add(a) {
            return Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg));
        }
    }
    Ok(cli)
}

fn port_config(a: PortAddArgs) -> PortConfig {
    let vlan = match (a.vlan, a.trunk) {
        (Some(v), _) => VlanMode::Access(v),
        (None, Some(l)) => VlanMode::Trunk(l.0),
        (None, None) => VlanMode::None,
    };
    let kind = match a.kind {
        PortType::Memif => PortKind::Memif(MemifConfig {
            socket: a.socket.unwrap_or_default(),
            role: match a.role {
                Some(RoleArg::Client) => MemifRole::Client,
                _ => MemifRole::Server,
            },
            id: a.id.unwrap_or(0),
            secret: a.secret,
            queues: a.queues.unwrap_or(uswitch::config::default_queues()),
            ring_size: a.ring_size.unwrap_or(uswitch::config::default_ring_size()),
            max_ring_size: a.max_ring_size,
            buffer_size: a
                .buffer_size
                .unwrap_or(uswitch::config::default_buffer_size()),
            mode: match a.mode {
                Some(ModeArg::Ip) => MemifMode::Ip,
                Some(ModeArg::Punt) => MemifMode::Punt,
                _ => MemifMode::Ethernet,
            },
        }),
        PortType::VhostUser => PortKind::VhostUser(VhostUserConfig {
            socket: a.socket.unwrap_or_default(),
            mode: match a.mode {
                Some(ModeArg::Client) => VhostUserMode::Client,
                _ => VhostUserMode::Server,
            },
            queues: a.queues.unwrap_or(uswitch::config::default_queues()),
        }),
        PortType::Kernel => PortKind::Kernel(KernelConfig {
            iface: a.iface.unwrap_or_default(),
            frame_size: a
                .frame_size
                .unwrap_or(uswitch::config::default_kernel_frame_size()),
            qdisc_bypass: !a.no_qdisc_bypass,
        }),
        PortType::Dpdk => PortKind::Dpdk(DpdkConfig {
            devargs: a.devargs.unwrap_or_default(),
            queues: a.queues.unwrap_or(uswitch::config::default_queues()),
            ring_size: a
                .descriptors
                .unwrap_or(uswitch::config::default_dpdk_ring()),
        }),
    };
    PortConfig {
        name: a.name,
        kind,
        bridge: a.bridge,
        vlan,
    }
}

/// What to print for a result.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Show,
    Ports,
    PortAdded,
    Stats,
    Worker,
    Fdb,
    Done,
}

fn request(cmd: Cmd) -> (Request, Output) {
    match cmd {
        Cmd::Show => (Request::Show, Output::Show),
        Cmd::Bridge {
            cmd:
                BridgeCmd::Add {
                    name,
                    aging,
                    fdb_max,
                },
        } => (
            Request::BridgeAdd {
                bridge: BridgeConfig {
                    name,
                    aging_secs: aging,
                    fdb_max,
                },
            },
            Output::Done,
        ),
        Cmd::Bridge {
            cmd: BridgeCmd::Del { name },
        } => (Request::BridgeDel { name }, Output::Done),
        Cmd::Port {
            cmd: PortCmd::Add(a),
        } => (
            Request::PortAdd {
                port: port_config(a),
            },
            Output::PortAdded,
        ),
        Cmd::Port {
            cmd: PortCmd::Del { name },
        } => (Request::PortDel { name }, Output::Done),
        Cmd::Port { cmd: PortCmd::List } => (Request::PortList, Output::Ports),
        Cmd::Xconnect(XconnectArgs {
            del: Some(XconnectCmd::Del { a }),
            ..
        }) => (Request::XconnectDel { a }, Output::Done),
        Cmd::Xconnect(XconnectArgs { a, b, .. }) => (
            Request::Xconnect {
                a: a.unwrap_or_default(),
                b: b.unwrap_or_default(),
            },
            Output::Done,
        ),
        Cmd::Stats {
            worker: true,
            clear,
            ..
        } => (Request::WorkerStats { clear }, Output::Worker),
        Cmd::Stats { port, clear, .. } => (Request::Stats { port, clear }, Output::Stats),
        Cmd::Fdb {
            cmd: FdbCmd::Show { bridge },
        } => (Request::FdbShow { bridge }, Output::Fdb),
    }
}

fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unexpected response from uswitchd: {e}"))
}

fn render(out: Output, v: serde_json::Value) -> Result<String, String> {
    Ok(match out {
        Output::Show => render::show(&typed::<ShowResult>(v)?),
        Output::Ports => render::ports(&typed::<Vec<PortEntry>>(v)?),
        Output::PortAdded => render::ports(&[typed::<PortEntry>(v)?]),
        Output::Stats => render::stats(&typed::<Vec<PortStats>>(v)?),
        Output::Worker => render::worker(&typed::<WorkerStats>(v)?),
        Output::Fdb => render::fdb(&typed::<Vec<FdbEntry>>(v)?),
        Output::Done => String::new(),
    })
}

/// `--control`, else `$USWITCH_CONTROL` (when set and not empty), else the default path.
fn control_path(arg: Option<PathBuf>, env: Option<std::ffi::OsString>) -> PathBuf {
    arg.or_else(|| env.filter(|e| !e.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL))
}

fn run(cli: Cli) -> Result<String, String> {
    let control = control_path(cli.control, std::env::var_os("USWITCH_CONTROL"));
    let (req, out) = request(cli.cmd);
    let v = call(&control, &req, Duration::from_secs(cli.timeout.max(1))).map_err(|e| match e {
        ClientError::Connect { .. } => {
            format!("{e} (is uswitchd running? set --control or USWITCH_CONTROL)")
        }
        e => e.to_string(),
    })?;
    if cli.json {
        let mut s = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
        s.push('\n');
        return Ok(s);
    }
    render(out, v)
}

fn main() -> ExitCode {
    let cli = match parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("uswitchctl: error: {msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        parse_cli(std::iter::once("uswitchctl").chain(args.split_whitespace()))
    }

    #[test]
    fn port_add_vhost_user() {
        let Request::PortAdd { port } = req(
            "port add v0 vhost-user --socket /run/v.sock --mode client --queues 2 --bridge br0",
        ) else {
            panic!()
        };
        let PortKind::VhostUser(v) = &port.kind else {
            panic!("not vhost-user")
        };
        assert_eq!(
            (v.socket.as_str(), v.mode, v.queues),
            ("/run/v.sock", VhostUserMode::Client, 2)
        );
        assert_eq!(port.bridge.as_deref(), Some("br0"));
        let Request::PortAdd { port } = req("port add v1 vhost-user --socket /v --mode server")
        else {
            panic!()
        };
        let PortKind::VhostUser(v) = &port.kind else {
            panic!("not vhost-user")
        };
        assert_eq!((v.mode, v.queues), (VhostUserMode::Server, 1));
        // Wrong or missing per-type options are usage errors (exit code 2).
        for bad in [
            "port add v vhost-user --socket /v",
            "port add v vhost-user --socket /v --mode ip",
            "port add v vhost-user --socket /v --mode server --role server",
            "port add v vhost-user --socket /v --mode server --ring-size 10",
            "port add m memif --socket /m",
            "port add m memif --socket /m --role server --mode client",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    fn req(args: &str) -> Request {
        request(parse(args).unwrap().cmd).0
    }

    #[test]
    fn port_add_kernel() {
        let Request::PortAdd { port } =
            req("port add up0 kernel --iface eth0 --bridge br0 --trunk 10,20")
        else {
            panic!()
        };
        let PortKind::Kernel(k) = &port.kind else {
            panic!("not kernel")
        };
        assert_eq!(
            (k.iface.as_str(), k.frame_size, k.qdisc_bypass),
            ("eth0", 2048, true)
        );
        assert_eq!(port.vlan, VlanMode::Trunk(vec![10, 20]));
        let Request::PortAdd { port } =
            req("port add up1 kernel --iface veth1 --frame-size 16384 --no-qdisc-bypass")
        else {
            panic!()
        };
        assert_eq!(
            port.kind,
            PortKind::Kernel(KernelConfig {
                iface: "veth1".into(),
                frame_size: 16384,
                qdisc_bypass: false
            })
        );
        for bad in [
            "port add up0 kernel",
            "port add up0 kernel --iface eth0 --socket /x",
            "port add up0 kernel --iface eth0 --queues 2",
            "port add up0 kernel --iface eth0 --role server",
            "port add up0 kernel --iface eth0 --mode server",
            "port add m memif --iface eth0 --socket /m --role server",
            "port add v vhost-user --frame-size 4096 --socket /v --mode server",
            "port add v vhost-user --mode server",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn port_add_dpdk() {
        let Request::PortAdd { port } =
            req("port add up0 dpdk --devargs 0000:af:00.0 --queues 2 --bridge br0 --vlan 7")
        else {
            panic!()
        };
        assert_eq!(
            port.kind,
            PortKind::Dpdk(DpdkConfig {
                devargs: "0000:af:00.0".into(),
                queues: 2,
                ring_size: 512
            })
        );
        assert_eq!(port.vlan, VlanMode::Access(7));
        let Request::PortAdd { port } =
            req("port add t0 dpdk --devargs net_tap0,iface=uswtap0 --descriptors 1024")
        else {
            panic!()
        };
        let PortKind::Dpdk(d) = &port.kind else {
            panic!("not dpdk")
        };
        assert_eq!((d.device(), d.ring_size), ("net_tap0", 1024));
        for bad in [
            "port add up0 dpdk",
            "port add up0 dpdk --devargs x --socket /x",
            "port add up0 dpdk --devargs x --iface eth0",
            "port add up0 dpdk --devargs x --role server",
            "port add up0 dpdk --devargs x --ring-size 10",
            "port add up0 kernel --iface eth0 --devargs x",
            "port add m memif --socket /m --role server --descriptors 512",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn trunk_list_parsing() {
        assert_eq!(
            parse_vlan_list("10,20,30-32"),
            Ok(VlanList(vec![10, 20, 30, 31, 32]))
        );
        assert_eq!(parse_vlan_list("5,3,4-5"), Ok(VlanList(vec![3, 4, 5])));
        for bad in ["", "0", "4095", "10-5", "a", "1,,2", "1-", "-3"] {
            assert!(parse_vlan_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ring_size_log2_or_slots() {
        assert_eq!(parse_ring_size("10"), Ok(10));
        assert_eq!(parse_ring_size("1024"), Ok(10));
        assert_eq!(parse_ring_size("16"), Ok(4));
        assert!(parse_ring_size("15").is_err());
        assert!(parse_ring_size("1000").is_err());
        assert!(parse_ring_size("32768").is_err());
        assert!(parse_ring_size("0").is_err());
    }

    #[test]
    fn port_add_full() {
        let r = req(
            "port add p0 memif --socket /run/a.sock --role client --id 3 --secret s --queues 2 \
                     --ring-size 256 --buffer-size 4096 --mode ip --bridge br0 --trunk 10,20,30-32",
        );
        let Request::PortAdd { port } = r else {
            panic!("{r:?}")
        };
        let PortKind::Memif(m) = &port.kind else {
            panic!("not memif")
        };
        assert_eq!(
            (m.role, m.id, m.queues, m.ring_size, m.buffer_size),
            (MemifRole::Client, 3, 2, 8, 4096)
        );
        assert_eq!((m.mode, m.secret.as_deref()), (MemifMode::Ip, Some("s")));
        assert_eq!(port.bridge.as_deref(), Some("br0"));
        assert_eq!(port.vlan, VlanMode::Trunk(vec![10, 20, 30, 31, 32]));
        let Request::PortAdd { port } =
            req("port add p1 memif --socket @x --role server --bridge b --vlan 7")
        else {
            panic!()
        };
        assert_eq!(port.vlan, VlanMode::Access(7));
        let PortKind::Memif(m) = &port.kind else {
            panic!("not memif")
        };
        assert_eq!(
            (m.ring_size, m.queues, m.mode),
            (10, 1, MemifMode::Ethernet)
        );
    }

    #[test]
    fn usage_errors() {
        use clap::error::ErrorKind;
        let base = "port add p0 memif --socket /a --role server";
        let e = parse(&format!("{base} --bridge b --vlan 10 --trunk 20")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            parse(&format!("{base} --vlan 10")).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&format!("{base} --bridge b --trunk 1-9999"))
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
        assert!(parse("port add p0 memif --role server").is_err());
        let e = parse("port add p0 memif --socket /a --role client --max-ring-size 256");
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("applies to --role server"));
        let e = parse("port add v vhost-user --socket /v --mode server --max-ring-size 8");
        assert!(e.unwrap_err().to_string().contains("memif ports only"));
        let Request::PortAdd { port } = req(&format!("{base} --max-ring-size 256")) else {
            panic!()
        };
        let PortKind::Memif(m) = &port.kind else {
            panic!("not memif")
        };
        assert_eq!(m.max_ring_size, Some(8));
        assert!(parse("port add p0 vhost --socket /a --role server").is_err());
        assert!(parse("xconnect a").is_err());
        assert!(parse("stats p0 --worker").is_err());
    }

    #[test]
    fn xconnect_add_and_del() {
        assert_eq!(
            req("xconnect a b"),
            Request::Xconnect {
                a: "a".into(),
                b: "b".into()
            }
        );
        assert_eq!(
            req("xconnect del a"),
            Request::XconnectDel { a: "a".into() }
        );
    }

    #[test]
    fn globals_and_reads() {
        let c = parse("--control /tmp/x.sock stats p0 --clear --json").unwrap();
        assert_eq!(c.control, Some(PathBuf::from("/tmp/x.sock")));
        assert_eq!(
            control_path(c.control.clone(), Some("/env".into())),
            PathBuf::from("/tmp/x.sock")
        );
        assert_eq!(
            control_path(None, Some("/env".into())),
            PathBuf::from("/env")
        );
        assert_eq!(
            control_path(None, Some("".into())),
            PathBuf::from(DEFAULT_CONTROL)
        );
        assert_eq!(control_path(None, None), PathBuf::from(DEFAULT_CONTROL));
        assert!(c.json);
        assert_eq!(
            request(c.cmd).0,
            Request::Stats {
                port: Some("p0".into()),
                clear: true
            }
        );
        assert_eq!(req("stats --worker"), Request::WorkerStats { clear: false });
        assert_eq!(
            req("fdb show br0"),
            Request::FdbShow {
                bridge: "br0".into()
            }
        );
        assert_eq!(
            req("bridge add br0 --aging 60 --fdb-max 10"),
            Request::BridgeAdd {
                bridge: BridgeConfig {
                    name: "br0".into(),
                    aging_secs: 60,
                    fdb_max: 10
                }
            }
        );
    }
}
