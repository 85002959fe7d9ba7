//! `uswitch-c2c`: core-to-core round-trip probe. Two threads, pinned to two CPUs, bounce one
//! cache line (an atomic counter) back and forth; each sample prints the nanoseconds per round
//! trip. A memif loopback is the same ping-pong of ring and buffer lines between the switch's
//! core and the reflector's, so its rate follows this figure: on a VM whose host moves the two
//! vCPUs between nearby cores (one L3) and distant ones, the probe shows two levels
//! (seen on an AMD EPYC guest: ~70–130 ns or ~300–440 ns, switching every few seconds), and so
//! does every switch's packet rate. `benches/loopback.sh` runs it during each case's window
//! to label the runs.
//!
//! Rules: the peer thread is spawned per sample (nothing spins between samples); a sample
//! that does not finish within `--timeout-ms` (the other CPU did not run the peer) prints
//! `timeout` instead of a figure. Run under `chrt -f` so a sample preempts the pollers on both
//! CPUs for its short duration (about `--count` × round trip) instead of waiting for them.
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "uswitch-c2c",
    version,
    about = "core-to-core cache line round-trip probe"
)]
struct Args {
    /// The two CPUs, e.g. 0,1 (first: this thread; second: the peer).
    #[arg(long, value_name = "A,B", default_value = "0,1", value_parser = parse_cores)]
    cores: (usize, usize),
    /// Round trips per sample (the first, which waits for the peer thread, is not timed).
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    count: u64,
    /// Samples to take.
    #[arg(long, value_name = "N", default_value_t = 1)]
    samples: u32,
    /// Milliseconds between samples.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    interval_ms: u64,
    /// Give up a sample after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    timeout_ms: u64,
}

fn parse_cores(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected two CPUs as A,B"))?;
    let cpu = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("{x:?} is not a CPU number"))
    };
    let (a, b) = (cpu(a)?, cpu(b)?);
    if a == b {
        return Err(format!("the two CPUs must differ (got {a} twice)"));
    }
    Ok((a, b))
}

fn pin(cpu: usize) -> Result<(), String> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
}

/// One sample: `count` round trips between this thread (already on CPU `a`) and a peer on
/// CPU `b`. Returns ns per round trip, or None on timeout.
fn sample(b: usize, count: u64, timeout: Duration) -> Result<Option<f64>, String> {
    let line = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (l2, s2) = (line.clone(), stop.clone());
    // The peer starts on this thread's CPU: under SCHED_FIFO it only runs there while this
    // thread blocks, so it pins itself to `b` before this thread starts spinning.
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let pinned = pin(b);
        let ok = pinned.is_ok();
        let _ = pinned_tx.send(pinned);
        if !ok {
            return;
        }
        // Odd values are ours to answer: 2i+1 -> 2i+2.
        for i in 0..count {
            while l2.load(Ordering::Acquire) != 2 * i + 1 {
                if s2.load(Ordering::Relaxed) {
                    return;
                }
                std::hint::spin_loop();
            }
            l2.store(2 * i + 2, Ordering::Release);
        }
    });
    match pinned_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = peer.join();
            return Err(e);
        }
        Err(_) => return Err("peer thread exited before pinning".into()),
    }
    let deadline = Instant::now() + timeout;
    let mut t0 = None;
    let mut done = true;
    'outer: for i in 0..count {
        line.store(2 * i + 1, Ordering::Release);
        let mut spins = 0u32;
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) && Instant::now() > deadline {
                done = false;
                break 'outer;
            }
            std::hint::spin_loop();
        }
        // The first round trip waits for the peer thread to start: not timed.
        if i == 0 {
            t0 = Some(Instant::now());
        }
    }
    let elapsed = t0.map(|t| t.elapsed());
    stop.store(true, Ordering::Relaxed);
    peer.join()
        .map_err(|_| "peer thread panicked".to_string())?;
    // `count` >= 2 (the argument's range): count - 1 timed round trips.
    Ok(elapsed
        .filter(|_| done)
        .map(|e| e.as_nanos() as f64 / count.saturating_sub(1).max(1) as f64))
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Err(e) = pin(a.cores.0) {
        eprintln!("uswitch-c2c: error: {e}");
        return ExitCode::from(1);
    }
    let timeout = Duration::from_millis(a.timeout_ms);
    let mut out = std::io::stdout().lock();
    for k in 0..a.samples {
        if k > 0 {
            std::thread::sleep(Duration::from_millis(a.interval_ms));
        }
        let line = match sample(a.cores.1, a.count, timeout) {
            Ok(Some(ns)) => format!("{ns:.1}"),
            Ok(None) => "timeout".into(),
            Err(e) => {
                eprintln!("uswitch-c2c: error: {e}");
                return ExitCode::from(1);
            }
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_parse_and_must_differ() {
        assert_eq!(parse_cores("0,1"), Ok((0, 1)));
        assert_eq!(parse_cores(" 3 , 2"), Ok((3, 2)));
        assert!(parse_cores("1,1").unwrap_err().contains("differ"));
        assert!(parse_cores("1").is_err());
        assert!(parse_cores("a,1").is_err());
    }

    #[test]
    fn a_sample_times_at_least_one_round_trip() {
        // The first round trip is not timed, so one alone would measure nothing.
        assert!(Args::try_parse_from(["uswitch-c2c", "--count", "1"]).is_err());
        assert_eq!(
            Args::try_parse_from(["uswitch-c2c", "--count", "2"])
                .unwrap()
                .count,
            2
        );
    }

    #[test]
    fn a_sample_completes_every_round_trip() {
        // Needs two CPUs (this machine kind has two); the peer answers 2i+1 with 2i+2, so a
        // sample only ends once all `count` round trips were made.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            eprintln!("skipped: one CPU");
            return;
        }
        pin(0).unwrap();
        let ns = sample(1, 1000, Duration::from_secs(5)).unwrap();
        let ns = ns.expect("1000 round trips within 5 s");
        assert!(ns.is_finite() && ns > 0.0, "{ns}");
    }
}
