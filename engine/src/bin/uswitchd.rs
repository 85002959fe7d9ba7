//! `uswitchd`: the uswitch daemon. Starts the polling dataplane, restores the state file (or
//! applies `--config` on first start), serves the control socket, and shuts down cleanly on
//! SIGTERM/SIGINT (dataplane stopped, control socket removed, state file kept).
//! See `docs/control-api.md` and [`uswitch::control::daemon`] for the startup rules.
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use uswitch::control::backend::{real_port_factory, Backend};
use uswitch::control::client::DEFAULT_CONTROL;
use uswitch::control::daemon::{Daemon, DaemonOptions};
use uswitch::control::fake::{fake_port_factory, FakeBackend};
use uswitch::control::state::DEFAULT_STATE;
use uswitch::dataplane::Dataplane;

#[derive(Parser, Debug)]
#[command(
    name = "uswitchd",
    version,
    about = "uswitch daemon: userspace polling-mode virtual switch"
)]
struct Args {
    /// Initial configuration (JSON, or TOML when the name ends in .toml). Used only when the
    /// state file does not exist: the state file wins.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    control: PathBuf,
    /// State file: rewritten after every change, restored at startup.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATE, conflicts_with = "no_state")]
    state: PathBuf,
    /// Keep no state file (changes are lost on restart).
    #[arg(long)]
    no_state: bool,
    /// Pin the dataplane worker to this CPU.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// Packets the worker asks each rx queue for per poll (like testpmd's `--burst`); also
    /// the most packets one `tx_burst` carries. Larger bursts spread per-burst costs (ring
    /// counters, notifications) over more packets at the price of latency.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=uswitch::port::MAX_BURST as i64))]
    burst: u16,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// DPDK EAL arguments, one string split at whitespace (e.g. "-l 0 --file-prefix usw
    /// --no-pci"); the EAL is then initialised at start (a failure is fatal). Wins over the
    /// config/state file's `dpdk.eal_args` (which initialise the EAL at the first DPDK port).
    /// Needs a build with the cargo feature `dpdk`.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    dpdk_eal_args: Option<String>,
    /// Mbufs per NUMA socket pool of DPDK ports [default: 16383, or the config's
    /// `dpdk.mbufs`]; range 1023..=4194303.
    #[arg(long, value_name = "N")]
    dpdk_mbufs: Option<u32>,
    /// Testing only: run the control plane against an in-memory dataplane that moves no packets.
    #[arg(long, hide = true)]
    fake_dataplane: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "uswitchd: error: invalid --log-level {:?}: {e}",
                args.log_level
            );
            return ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // Block the shutdown signals in every thread (threads inherit the mask); main waits for them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    if let Err(e) = signals.thread_block() {
        eprintln!("uswitchd: error: blocking signals: {e}");
        return ExitCode::from(1);
    }

    if let Some(n) = args.dpdk_mbufs {
        let s = uswitch::config::DpdkSettings {
            eal_args: vec![],
            mbufs: Some(n),
        };
        if let Err(e) = s.validate() {
            eprintln!("uswitchd: error: --dpdk-mbufs: {e}");
            return ExitCode::from(1);
        }
        uswitch::dpdk::set_mbufs(n);
    }
    if let Some(eal) = &args.dpdk_eal_args {
        uswitch::dpdk::set_eal_args(eal.split_whitespace().map(String::from).collect());
        if let Err(e) = uswitch::dpdk::init_now() {
            tracing::error!("{e}");
            eprintln!("uswitchd: error: {e}");
            return ExitCode::from(1);
        }
    }

    let opts = DaemonOptions {
        config: args.config.clone(),
        control: args.control.clone(),
        state: if args.no_state {
            None
        } else {
            Some(args.state.clone())
        },
        worker_core: args.core,
    };
    let core = args.core;
    let burst = usize::from(args.burst);
    let started = if args.fake_dataplane {
        tracing::warn!("running with the fake dataplane: no packets are forwarded");
        Daemon::start(
            &opts,
            || Ok(Box::new(FakeBackend::new()) as Box<dyn Backend>),
            fake_port_factory(),
        )
    } else {
        Daemon::start(
            &opts,
            || {
                let dp = Dataplane::start(core)?;
                dp.set_burst(burst).map_err(std::io::Error::other)?;
                Ok(Box::new(dp) as Box<dyn Backend>)
            },
            real_port_factory(),
        )
    };
    let daemon = match started {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("uswitchd: error: {e}");
            return ExitCode::from(1);
        }
    };
    match signals.wait() {
        Ok(sig) => tracing::info!(signal = ?sig, "shutting down"),
        Err(e) => tracing::error!("waiting for signals failed: {e}; shutting down"),
    }
    daemon.shutdown();
    ExitCode::SUCCESS
}
