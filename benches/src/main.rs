//! `uswitch-bench`: a memif traffic endpoint for benchmarking any memif switch (uswitch, VPP,
//! testpmd, OVS-DPDK).
//!
//! It is always the memif **client** (it allocates the memory; the switch listens):
//! `tx`, `rx`, `latency` and the zero-copy `reflect`. See `docs/benchmarks.md`.
//!
//! Modules: [`packet`] (frames), [`flows`] (MAC/IP sets), [`handshake`] (memif client
//! handshake into a shared region), [`endpoint`] (rings, buffer pool, zero-copy forward),
//! [`run`] (the polling loop per mode), [`latency`] (histogram), [`report`] (progress, results).
mod endpoint;
mod error;
mod flows;
mod handshake;
mod latency;
mod packet;
mod report;
mod run;

use clap::Parser;
use error::BenchError;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "uswitch-bench",
    version,
    about = "memif traffic generator, sink, latency meter and zero-copy reflector"
)]
struct Args {
    /// tx: send; rx: receive; latency: send stamped packets on the first socket and measure on
    /// all; reflect: forward each pair of sockets (1st<->2nd, 3rd<->4th, ...) without copying.
    #[arg(value_enum)]
    mode: run::Mode,
    /// memif server socket to connect to (repeat for more links; @name = abstract socket).
    #[arg(long, short = 's', value_name = "PATH", required = true)]
    socket: Vec<String>,
    /// memif interface id: once for all sockets, or once per socket.
    #[arg(long, value_name = "N")]
    id: Vec<u32>,
    /// memif secret.
    #[arg(long, value_name = "S")]
    secret: Option<String>,
    /// Frame size in bytes (without FCS).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    size: usize,
    /// Packets per burst (rx, tx, forward).
    #[arg(long, value_name = "N", default_value_t = 32)]
    burst: usize,
    /// Total send rate in packets per second over all sending links; 0 = as fast as possible.
    #[arg(long, value_name = "PPS", default_value_t = 0)]
    rate: u64,
    /// tx/latency: send exactly this many packets in total, then stop. rx: stop once this many
    /// were received (--duration still caps the run).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Distinct source MAC/IP flows per sending link.
    #[arg(long, value_name = "N", default_value_t = 1)]
    flows: u32,
    /// Destination MAC of every frame [default: 02:ff:00:00:00:<link>, never a source].
    #[arg(long, value_name = "MAC", value_parser = flows::parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Measurement window in seconds (after the warm-up).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Warm-up in seconds before the counters are taken.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    warmup: f64,
    /// Keep running this many seconds after the window, not counted (so a switch's own
    /// window, read by a script, ends while traffic still flows).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    linger: f64,
    /// reflect: packets injected on each link and queue at start (like testpmd --tx-first),
    /// and again whenever nothing was received for 100 ms (the loop died) [default: 512].
    #[arg(long, value_name = "N")]
    inject: Option<usize>,
    /// Queue pairs per socket (tx/latency send on queue 0; rx and reflect use all). OVS-DPDK
    /// needs 2.
    #[arg(long, value_name = "N", default_value_t = 1)]
    queues: u16,
    /// Ring size as log2 of slots.
    #[arg(long, value_name = "LOG2", default_value_t = 10)]
    ring_size: u8,
    /// Buffer size in bytes. Buffers are laid out an odd number of cache lines apart (2048 ->
    /// 2112), as DPDK pads mempool objects, so their first lines spread over every cache set.
    #[arg(long, value_name = "BYTES", default_value_t = 2048)]
    buffer_size: u32,
    /// Seconds to wait for each server (connect + handshake).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// tx/rx/latency: sleep this many microseconds after a loop iteration that moved nothing
    /// (0 = busy-poll). Lets a paced test share a CPU; costs latency and peak rate.
    #[arg(long, value_name = "US", default_value_t = 0)]
    idle_sleep: u64,
    /// Pin this process to CPU N.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn pin(core: usize) -> Result<(), BenchError> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(core)
        .map_err(|e| BenchError::Usage(format!("--core {core}: {e}")))?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| BenchError::Setup(format!("cannot pin to CPU {core}: {e}")))
}

fn opts(a: &Args) -> Result<run::RunOpts, BenchError> {
    let usage = |m: String| Err(BenchError::Usage(m));
    let ids = match a.id.len() {
        0 => vec![0; a.socket.len()],
        1 => vec![a.id[0]; a.socket.len()],
        n if n == a.socket.len() => a.id.clone(),
        n => {
            return usage(format!(
                "{n} --id values for {} sockets: give one, or one per socket",
                a.socket.len()
            ))
        }
    };
    if !(1..=64).contains(&a.socket.len()) {
        return usage("between 1 and 64 --socket".into());
    }
    if !(1..=16).contains(&a.queues) {
        return usage(format!("--queues {} out of range 1..=16", a.queues));
    }
    if !(4..=14).contains(&a.ring_size) {
        return usage(format!("--ring-size {} out of range 4..=14", a.ring_size));
    }
    if !(128..=65536).contains(&a.buffer_size) {
        return usage(format!(
            "--buffer-size {} out of range 128..=65536",
            a.buffer_size
        ));
    }
    if a.size < packet::MIN_SIZE || a.size > a.buffer_size as usize {
        return usage(format!(
            "--size {} out of range {}..={} (the buffer size; frames are not chained)",
            a.size,
            packet::MIN_SIZE,
            a.buffer_size
        ));
    }
    if !(1..=1024).contains(&a.burst) {
        return usage(format!("--burst {} out of range 1..=1024", a.burst));
    }
    if !a.duration.is_finite() || a.duration <= 0.0 || !a.warmup.is_finite() || a.warmup < 0.0 {
        return usage("--duration must be > 0 and --warmup >= 0".into());
    }
    if !a.linger.is_finite() || a.linger < 0.0 {
        return usage("--linger must be >= 0".into());
    }
    if !a.timeout.is_finite() || a.timeout <= 0.0 {
        return usage("--timeout must be > 0".into());
    }
    if a.flows == 0 || a.flows > flows::MAX_FLOWS {
        return usage(format!("--flows must be 1..={}", flows::MAX_FLOWS));
    }
    Ok(run::RunOpts {
        mode: a.mode,
        sockets: a.socket.clone(),
        ids,
        size: a.size,
        burst: a.burst,
        rate: a.rate,
        count: a.count,
        flows: a.flows,
        dst_mac: a.dst_mac,
        duration: a.duration,
        warmup: a.warmup,
        linger: a.linger,
        inject: a.inject.unwrap_or(DEFAULT_INJECT),
        progress: std::io::stderr().is_terminal(),
        idle_sleep: Duration::from_micros(a.idle_sleep),
        ep: endpoint::EndpointOpts {
            queues: a.queues,
            log2_ring: a.ring_size,
            buffer_size: a.buffer_size,
            timeout: Duration::from_secs_f64(a.timeout),
            secret: a.secret.clone(),
        },
    })
}

/// reflect: packets injected per link and queue unless `--inject` says otherwise. Enough to keep
/// several bursts of 32 in flight, fewer than a 1024-slot ring.
const DEFAULT_INJECT: usize = 512;

fn main() -> ExitCode {
    let a = Args::parse();
    let result = opts(&a).and_then(|o| {
        if let Some(c) = a.core {
            pin(c)?;
        }
        run::run(&o)
    });
    match result {
        Ok(r) => {
            if a.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("uswitch-bench: error: JSON: {e}"),
                }
            } else {
                print!("{}", r.text());
            }
            let down: Vec<String> = r
                .links
                .iter()
                .filter_map(|l| l.down_reason.as_ref().map(|d| format!("{}: {d}", l.socket)))
                .collect();
            if down.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "uswitch-bench: error: link(s) went down: {}",
                    down.join("; ")
                );
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("uswitch-bench: error: {e}");
            ExitCode::from(if matches!(e, BenchError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}
