//! `uswitch-agent`: the pod side of a uswitch port.
//!
//! - `tap`: a kernel interface in the pod backed by the memif link (see [`tapmode`]).
//! - `passthrough`: the DPDK `--vdev` string and env vars for an app that opens the socket
//!   itself (see [`passthrough`]).
//! - `probe`: a smoltcp stack that answers ARP/ICMP and can ping (see [`probe`]).
//!
//! Configuration comes from the pod config data file written by `uswitch-cni` ADD, overridden
//! by flags or `USWITCH_AGENT_*` environment variables ([`podconf`]). Exit codes: 0 ok,
//! 1 runtime error, 2 usage, 3 config missing/bad, 4 socket absent, 5 netns, 6 tun/tap setup,
//! 7 ping without reply.
mod error;
mod link;
mod netns;
mod passthrough;
mod podconf;
mod probe;
mod shuttle;
mod signals;
mod tapdev;
mod tapio;
mod tapmode;
mod uring;

use clap::{Parser, Subcommand};
use error::AgentError;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "uswitch-agent",
    version,
    about = "Pod side of a uswitch port: tap, DPDK passthrough or smoltcp probe"
)]
struct Cli {
    /// Pod config data file written by uswitch-cni (default: discovered in --shared-dir).
    #[arg(long, global = true, value_name = "FILE", env = "USWITCH_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Shared directory the CNI writes pod directories into (default /run/uswitch).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "USWITCH_AGENT_SHARED_DIR"
    )]
    shared_dir: Option<PathBuf>,
    /// Container id (selects the pod directory when discovering the config file).
    #[arg(
        long,
        global = true,
        value_name = "ID",
        env = "USWITCH_AGENT_CONTAINER_ID"
    )]
    container_id: Option<String>,
    /// Pod interface name (selects the config file; the tap's name in tap mode).
    #[arg(long, global = true, value_name = "NAME", env = "USWITCH_AGENT_IFNAME")]
    ifname: Option<String>,
    /// memif socket path (`@name` = abstract); overrides the file, or replaces it.
    #[arg(long, global = true, value_name = "PATH", env = "USWITCH_AGENT_SOCKET")]
    socket: Option<String>,
    /// memif interface id (default 0).
    #[arg(long, global = true, value_name = "N", env = "USWITCH_AGENT_ID")]
    id: Option<u32>,
    /// MAC address of the pod interface.
    #[arg(long, global = true, value_name = "MAC", env = "USWITCH_AGENT_MAC")]
    mac: Option<String>,
    /// Address in CIDR form (repeatable; replaces the file's list).
    #[arg(
        long = "ip",
        global = true,
        value_name = "CIDR",
        env = "USWITCH_AGENT_IPS",
        value_delimiter = ','
    )]
    ips: Vec<String>,
    /// Route "DST" or "DST via GW", DST may be "default" (repeatable; replaces the file's list).
    #[arg(
        long = "route",
        global = true,
        value_name = "ROUTE",
        env = "USWITCH_AGENT_ROUTES",
        value_delimiter = ','
    )]
    routes: Vec<String>,
    /// Interface MTU (default 1500).
    #[arg(long, global = true, value_name = "BYTES", env = "USWITCH_AGENT_MTU")]
    mtu: Option<u16>,
    /// How long to wait at startup for the socket file to appear.
    #[arg(long, global = true, value_name = "MS", default_value_t = 5000)]
    wait_socket_ms: u64,
    /// Detach: start a new session and close inherited file descriptors above 2 (used when
    /// the CNI plugin starts the agent; stdio should already point at a log file).
    #[arg(long, global = true)]
    setsid: bool,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        default_value = "info",
        env = "USWITCH_AGENT_LOG"
    )]
    log_level: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Kernel interface (tap) in the pod, shuttling frames to/from the memif socket.
    Tap {
        /// Pod network namespace: a path (/proc/PID/ns/net, /var/run/netns/NAME) or an
        /// `ip netns` name. Default: the agent's own (sidecar).
        #[arg(long, value_name = "PATH|NAME", env = "USWITCH_AGENT_NETNS")]
        netns: Option<String>,
        /// Tap interface name (default: --ifname / the file's ifName).
        #[arg(long, value_name = "NAME")]
        tap_name: Option<String>,
        /// Tap I/O: io_uring when available (auto), io_uring or fail (uring), read/write (rw).
        #[arg(
            long,
            value_enum,
            value_name = "MODE",
            default_value = "auto",
            env = "USWITCH_AGENT_TAP_IO"
        )]
        tap_io: tapio::TapIoMode,
        /// Write this file (JSON: pid, tap, tapIo) once the tap is set up and the memif link
        /// is up; removed at exit.
        #[arg(long, value_name = "FILE")]
        ready_file: Option<PathBuf>,
    },
    /// Print the DPDK --vdev string; with --output write an env file for the app.
    Passthrough {
        /// Env file to write (KEY=value lines).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// DPDK port index in the vdev name (net_memif<N>).
        #[arg(long, value_name = "N", default_value_t = 0)]
        index: u32,
    },
    /// smoltcp stack on the memif port: answers ARP/ICMP echo; --ping sends echo requests.
    Probe {
        /// IPv4 address to ping; without it the probe answers until SIGTERM.
        #[arg(long, value_name = "ADDR")]
        ping: Option<Ipv4Addr>,
        /// Echo requests to send.
        #[arg(long, value_name = "N", default_value_t = 5)]
        count: u32,
        /// Milliseconds between requests.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
        /// Milliseconds to wait for replies after the last request.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
        /// Milliseconds to wait for the memif link before giving up.
        #[arg(long, value_name = "MS", default_value_t = 10000)]
        wait_link_ms: u64,
        /// Echo payload bytes.
        #[arg(long, value_name = "BYTES", default_value_t = 56)]
        size: usize,
    },
}

/// Makes the process independent of whoever spawned it: own session (no controlling
/// terminal, not in the spawner's process group) and no fds but stdio.
fn detach() -> Result<(), AgentError> {
    nix::unistd::setsid().map_err(|e| AgentError::io("setsid", std::io::Error::from(e)))?;
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| AgentError::io("/proc/self/fd", e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // The directory's own fd is among them and already closed: EBADF is fine.
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.setsid {
        if let Err(e) = detach() {
            eprintln!("uswitch-agent: error: {e}");
            return ExitCode::from(1);
        }
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "uswitch-agent: error: invalid --log-level {:?}: {e}",
                cli.log_level
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uswitch-agent: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), AgentError> {
    let o = podconf::Overrides {
        config: cli.config,
        shared_dir: cli.shared_dir,
        container_id: cli.container_id,
        ifname: cli.ifname,
        socket: cli.socket,
        id: cli.id,
        mac: cli.mac,
        ips: cli.ips,
        routes: cli.routes,
        mtu: cli.mtu,
    };
    let conf = podconf::PodConfig::load(&o)?;
    tracing::debug!(?conf, "configuration");
    let wait_socket = Duration::from_millis(cli.wait_socket_ms);
    match cli.mode {
        Mode::Passthrough { output, index } => passthrough::run(&conf, index, output.as_deref()),
        Mode::Tap {
            netns,
            tap_name,
            tap_io,
            ready_file,
        } => {
            let signals = signals::Signals::install()?;
            tapmode::run(
                &conf,
                &tapmode::TapOptions {
                    netns,
                    tap_name,
                    wait_socket,
                    tap_io,
                    ready_file,
                },
                signals,
            )
        }
        Mode::Probe {
            ping,
            count,
            interval_ms,
            timeout_ms,
            wait_link_ms,
            size,
        } => {
            if count as usize > usize::from(u16::MAX) {
                return Err(AgentError::bad("--count", "at most 65535 echo requests"));
            }
            let signals = signals::Signals::install()?;
            let opts = probe::ProbeOptions {
                ping,
                count,
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(timeout_ms),
                wait_link: Duration::from_millis(wait_link_ms),
                wait_socket,
                payload: size.min(1400),
            };
            probe::run(&conf, &opts, signals)
        }
    }
}
