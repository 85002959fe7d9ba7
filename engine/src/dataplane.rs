//! The polling worker thread and the handle the control plane talks to it through.
//!
//! Rules it enforces:
//! - All dataplane state (ports, bridges, xconnects: a [`Switch`]) lives inside one worker
//!   thread, named `uswitch-worker`, optionally pinned to a core. Nothing is shared: every
//!   [`Dataplane`] call is a job sent over a crossbeam channel and answered over a reply
//!   channel, so the hot path takes no locks.
//! - Jobs run only at a control tick (about every millisecond, timed with the TSC checked once
//!   per iteration), together with every port's `poll_control`; never inside a burst.
//! - The worker spins while any port has its link up; with no link up it waits up to 1 ms per
//!   iteration on the job channel (an idle switch costs almost no CPU, jobs still run at once).
//! - Cycle accounting like OVS `pmd-stats-show`: the TSC is read once per iteration; an
//!   iteration that received packets adds its cycles to `busy_cycles` (and counts in
//!   `busy_iterations`: packets per busy iteration is VPP's vectors/call), others (including
//!   control ticks and idle waits) to `idle_cycles`. An iteration longer than the stall limit
//!   (50 µs plus 1 µs per packet moved: far above any real burst, far below a scheduler time
//!   slice) was preempted or saw a time jump: its cycles go to `stall_cycles` instead (and its
//!   packets to `stall_packets`), so `busy_cycles_per_packet` is the cost of the work itself;
//!   `busy_cycles_per_packet_with_stalls` keeps them in, as testpmd and OVS count.
//! - Dropping the handle (or [`Dataplane::stop`]) stops the worker and joins it; the ports are
//!   dropped inside the worker. If the worker is gone every call returns [`DpError::Stopped`].
//! - A panicking control job is caught and logged (its caller gets `Stopped`); a panic in the
//!   forwarding loop ends the worker (its ports are dropped, later calls get `Stopped`).
use crate::bridge::Switch;
use crate::config::{BridgeConfig, VlanMode};
use crate::control::api::{BridgeEntry, FdbEntry, WorkerStats, XconnectEntry};
use crate::port::{Port, PortInfo, PortStats};
use crate::shm::tsc;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

/// Where a new port is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// Not forwarding until put in an xconnect.
    None,
    Bridge {
        bridge: String,
        vlan: VlanMode,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DpError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Busy(String),
    #[error("dataplane worker is not running")]
    Stopped,
}

/// What the worker thread owns.
struct Worker {
    sw: Switch,
    core: Option<usize>,
    busy_cycles: u64,
    idle_cycles: u64,
    iterations: u64,
    /// Iterations counted in `busy_cycles`.
    busy_iterations: u64,
    packets: u64,
    stalls: u64,
    stall_cycles: u64,
    /// Stalled cycles of iterations that moved packets.
    stall_busy_cycles: u64,
    stall_packets: u64,
    stop: bool,
}

impl Worker {
    /// A worker with an empty switch and zeroed counters.
    fn new(core: Option<usize>) -> Worker {
        Worker {
            sw: Switch::new(),
            core,
            busy_cycles: 0,
            idle_cycles: 0,
            iterations: 0,
            busy_iterations: 0,
            packets: 0,
            stalls: 0,
            stall_cycles: 0,
            stall_busy_cycles: 0,
            stall_packets: 0,
            stop: false,
        }
    }

    /// Accounts one iteration of `dt` cycles that moved `moved` packets.
    #[inline]
    fn account(&mut self, dt: u64, moved: u64, limit: &StallLimit) {
        self.iterations += 1;
        self.packets += moved;
        if dt > limit.base + moved * limit.per_packet {
            self.stalls += 1;
            self.stall_cycles += dt;
            if moved > 0 {
                self.stall_busy_cycles += dt;
                self.stall_packets += moved;
            }
        } else if moved > 0 {
            self.busy_cycles += dt;
            self.busy_iterations += 1;
        } else {
            self.idle_cycles += dt;
        }
    }

    fn stats(&mut self, clear: bool) -> WorkerStats {
        let per = |c: u64, p: u64| if p == 0 { 0.0 } else { c as f64 / p as f64 };
        let s = WorkerStats {
            core: self.core,
            burst: self.sw.burst(),
            busy_cycles: self.busy_cycles,
            idle_cycles: self.idle_cycles,
            iterations: self.iterations,
            busy_iterations: self.busy_iterations,
            packets: self.packets,
            packets_per_busy_iteration: per(
                self.packets - self.stall_packets,
                self.busy_iterations,
            ),
            busy_cycles_per_packet: per(self.busy_cycles, self.packets - self.stall_packets),
            stalls: self.stalls,
            stall_cycles: self.stall_cycles,
            stall_packets: self.stall_packets,
            busy_cycles_per_packet_with_stalls: per(
                self.busy_cycles + self.stall_busy_cycles,
                self.packets,
            ),
        };
        if clear {
            self.busy_cycles = 0;
            self.idle_cycles = 0;
            self.iterations = 0;
            self.busy_iterations = 0;
            self.packets = 0;
            self.stalls = 0;
            self.stall_cycles = 0;
            self.stall_busy_cycles = 0;
            self.stall_packets = 0;
        }
        s
    }
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// Handle to the worker thread. All state lives in the worker; calls are messages to it.
pub struct Dataplane {
    jobs: Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Pins the calling thread to `core`, refusing cores this process may not use.
fn pin(core: usize) -> std::io::Result<()> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).map_err(std::io::Error::from)?;
    if !allowed.is_set(core).unwrap_or(false) {
        let list: Vec<String> = (0..CpuSet::count())
            .filter(|c| allowed.is_set(*c).unwrap_or(false))
            .map(|c| c.to_string())
            .collect();
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "core {core} does not exist or is not usable here (usable: {})",
                list.join(",")
            ),
        ));
    }
    let mut set = CpuSet::new();
    set.set(core).map_err(std::io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
}

/// TSC ticks per millisecond, measured against the monotonic clock over a few ms.
fn tsc_per_ms() -> u64 {
    let t0 = Instant::now();
    let c0 = tsc();
    std::thread::sleep(Duration::from_millis(5));
    let c1 = tsc();
    let ns = t0.elapsed().as_nanos().max(1);
    ((u128::from(c1.wrapping_sub(c0)) * 1_000_000 / ns) as u64).max(1)
}

/// Longest iteration not counted as a stall: `base + packets * per_packet` cycles.
struct StallLimit {
    base: u64,
    per_packet: u64,
}

impl StallLimit {
    fn new(tsc_per_ms: u64) -> StallLimit {
        StallLimit {
            base: tsc_per_ms / 20,
            per_packet: (tsc_per_ms / 1000).max(1),
        }
    }
}

/// Runs one control job. A job that panics (a port's `stats` or `info`, say) is logged and its
/// caller sees [`DpError::Stopped`] (the reply channel is dropped); the worker and every other
/// port carry on.
fn run_job(job: Job, w: &mut Worker) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(w)));
    if r.is_err() {
        tracing::error!("a dataplane control job panicked; the worker continues");
    }
}

/// The worker's main loop.
fn run(jobs: Receiver<Job>, mut w: Worker) {
    let per_ms = tsc_per_ms();
    let start = Instant::now();
    let mut prev = tsc();
    let mut next_tick = prev;
    let limit = StallLimit::new(per_ms);
    tracing::info!(core = ?w.core, tsc_per_ms = per_ms, "dataplane worker running");
    loop {
        let moved = w.sw.poll();
        let t = tsc();
        let dt = t.wrapping_sub(prev);
        prev = t;
        w.account(dt, moved as u64, &limit);
        // Wrapping comparison: has `t` reached `next_tick`?
        if (t.wrapping_sub(next_tick) as i64) < 0 {
            continue;
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => run_job(job, &mut w),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    w.stop = true;
                    break;
                }
            }
        }
        if w.stop {
            break;
        }
        let now = Instant::now();
        let now_ms = now.duration_since(start).as_millis() as u64;
        let any_up = w.sw.control_tick(now, now_ms);
        if any_up {
            next_tick = t.wrapping_add(per_ms);
        } else {
            // Idle: wait for a job for up to 1 ms, then tick again after one iteration.
            match jobs.recv_timeout(Duration::from_millis(1)) {
                Ok(job) => run_job(job, &mut w),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => w.stop = true,
            }
            if w.stop {
                break;
            }
        }
        // Control work and idle waits count as idle.
        let t2 = tsc();
        w.idle_cycles += t2.wrapping_sub(prev);
        prev = t2;
    }
    tracing::info!("dataplane worker stopping");
}

impl Dataplane {
    /// Starts the worker, pinned to `core` when given (an error if that core is not usable).
    pub fn start(core: Option<usize>) -> std::io::Result<Dataplane> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<std::io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("uswitch-worker".into())
            .spawn(move || {
                if let Some(c) = core {
                    if let Err(e) = pin(c) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let w = Worker::new(core);
                run(jobs_rx, w);
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Dataplane {
                jobs: jobs_tx,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(std::io::Error::other(
                    "dataplane worker died while starting",
                ))
            }
        }
    }

    /// Runs `f` inside the worker at its next control tick and returns its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> R + Send + 'static,
    ) -> Result<R, DpError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |w: &mut Worker| {
            let _ = tx.send(f(w));
        });
        self.jobs.send(job).map_err(|_| DpError::Stopped)?;
        rx.recv().map_err(|_| DpError::Stopped)
    }

    pub fn add_bridge(&self, cfg: BridgeConfig) -> Result<(), DpError> {
        self.call(move |w| w.sw.add_bridge(cfg))?
    }
    /// Fails with `Busy` while ports are attached.
    pub fn del_bridge(&self, name: &str) -> Result<(), DpError> {
        let name = name.to_string();
        self.call(move |w| w.sw.del_bridge(&name))?
    }
    /// Hands `port` to the worker. On error the port is dropped.
    pub fn add_port(&self, port: Box<dyn Port>, attach: Attach) -> Result<(), DpError> {
        self.call(move |w| w.sw.add_port(port, attach))?
    }
    /// Removes the port from its bridge (flushing its MACs) or xconnect, and drops it.
    pub fn del_port(&self, name: &str) -> Result<(), DpError> {
        let name = name.to_string();
        self.call(move |w| w.sw.del_port(&name))?
    }
    /// Connects two ports back to back; neither may be on a bridge or in another xconnect.
    pub fn xconnect(&self, a: &str, b: &str) -> Result<(), DpError> {
        let (a, b) = (a.to_string(), b.to_string());
        self.call(move |w| w.sw.xconnect(&a, &b))?
    }
    pub fn del_xconnect(&self, a: &str) -> Result<(), DpError> {
        let a = a.to_string();
        self.call(move |w| w.sw.del_xconnect(&a))?
    }
    /// Xconnected pairs.
    pub fn xconnects(&self) -> Result<Vec<XconnectEntry>, DpError> {
        self.call(|w| {
            w.sw.xconnects()
                .into_iter()
                .map(|(a, b)| XconnectEntry { a, b })
                .collect()
        })
    }
    pub fn port_stats(&self, name: Option<&str>, clear: bool) -> Result<Vec<PortStats>, DpError> {
        let name = name.map(str::to_string);
        self.call(move |w| w.sw.port_stats(name.as_deref(), clear))?
    }
    pub fn port_infos(&self) -> Result<Vec<PortInfo>, DpError> {
        self.call(|w| w.sw.port_infos())
    }
    pub fn bridges(&self) -> Result<Vec<BridgeEntry>, DpError> {
        self.call(|w| w.sw.bridges())
    }
    pub fn fdb(&self, bridge: &str) -> Result<Vec<FdbEntry>, DpError> {
        let bridge = bridge.to_string();
        self.call(move |w| w.sw.fdb(&bridge))?
    }
    pub fn worker_stats(&self, clear: bool) -> Result<WorkerStats, DpError> {
        self.call(move |w| w.stats(clear))
    }
    /// Packets per `rx_burst` (1..=256, default 32).
    pub fn set_burst(&self, n: usize) -> Result<(), DpError> {
        self.call(move |w| w.sw.set_burst(n))
    }
    /// Stops the worker and joins it; all ports are dropped.
    pub fn stop(self) {}
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.jobs.send(Box::new(|w: &mut Worker| w.stop = true));
            if t.join().is_err() {
                tracing::error!("dataplane worker panicked");
            }
        }
    }
}

#[cfg(test)]
#[path = "dataplane_tests.rs"]
mod tests;
