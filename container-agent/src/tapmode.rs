//! Tap mode: a kernel interface in the pod backed by the memif link.
//!
//! Steps: wait for the socket; in the pod netns create and configure the tap; back in our own
//! netns open the memif port; choose the tap I/O (io_uring, else read/write; logged once as
//! `tap I/O: …`); then loop: control work every 1 ms (connect, handshake, reconnect), a burst
//! each way, signals.
//!
//! Idle policy (2-core machines are shared with uswitchd's polling worker): busy-poll while
//! frames flow and for 100 µs after; then 20 µs pauses until 5 ms idle; then waits of at most
//! 1 ms that end early on tap activity (io_uring: a completion; read/write: epoll on the tap fd
//! and the signalfd). A frame from the kernel wakes us at once; a frame from memif waits at
//! most the current pause (memif interrupts are not used).
//!
//! `--ready-file`: written (atomically, JSON with pid, tap name and tap I/O) once the tap is
//! configured and the memif link came up the first time; the CNI plugin waits for it.
//!
//! SIGTERM/SIGINT/SIGHUP: the memif port sends DISCONNECT and closes, the tap is closed (the
//! kernel removes it), the ready file is removed, exit 0. The same happens, with a log line,
//! when the `--netns` path stops naming the pod's namespace (checked every 200 ms): the pod is
//! gone, and our tap fd would otherwise keep its namespace alive.
use crate::error::{AgentError, Result};
use crate::link::{self, LinkWatch};
use crate::netns::{self, NetnsGuard, NetnsWatch};
use crate::podconf::{fmt_mac, PodConfig};
use crate::shuttle::Shuttle;
use crate::signals::{Event, Signals};
use crate::tapdev::{self, Tap};
use crate::tapio::{self, RwTap, TapIo, TapIoMode, Wait};
use crate::uring::UringTap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uswitch::config::MemifRole;
use uswitch::memif::MemifPort;
use uswitch::port::Port;

/// What the loop needs besides the shuttle.
struct LoopCtx<'a> {
    o: &'a TapOptions,
    watch_ns: Option<NetnsWatch>,
}

pub struct TapOptions {
    pub netns: Option<String>,
    /// Tap name (default: the pod interface name).
    pub tap_name: Option<String>,
    pub wait_socket: Duration,
    pub tap_io: TapIoMode,
    pub ready_file: Option<PathBuf>,
}

const SPIN: Duration = Duration::from_micros(100);
const SHORT_IDLE: Duration = Duration::from_millis(5);
const SHORT_SLEEP: Duration = Duration::from_micros(20);
const LONG_SLEEP: Duration = Duration::from_millis(1);
const CONTROL_EVERY: Duration = Duration::from_millis(1);
const NETNS_EVERY: Duration = Duration::from_millis(200);

pub fn run(c: &PodConfig, o: &TapOptions, signals: Signals) -> Result<()> {
    link::wait_for_socket(c, o.wait_socket)?;
    let name = o.tap_name.clone().unwrap_or_else(|| c.ifname.clone());
    let mac = c.mac_or_derived();

    let mut watch_ns = None;
    let tap = {
        let _ns = match &o.netns {
            Some(spec) => {
                let path = netns::resolve(spec)?;
                let guard = NetnsGuard::enter(&path)?;
                watch_ns = Some(NetnsWatch::new(&path)?);
                Some(guard)
            }
            None => None,
        };
        let tap = tapdev::create(&name)?;
        tap.configure(c, &mac)?; // on error the tap is dropped, hence removed
        tap
    };
    let port = link::memif_port(c)?;
    tracing::info!(tap = %tap.name(), socket = %c.socket, role = ?c.role, mac = %fmt_mac(&mac), "tap mode running");

    // As memif server the peer picks the buffer size: no retry assumption then.
    let bufsz = if c.role == MemifRole::Client {
        link::BUFFER_SIZE
    } else {
        0
    };
    let slot = tapio::slot_size(c.mtu);
    let ctx = LoopCtx { o, watch_ns };
    let rw = |tap: Tap, signals: &Signals| {
        RwTap::new(tap, slot, signals.fd()).map_err(|e| AgentError::io("tap epoll setup", e))
    };
    match o.tap_io {
        TapIoMode::Rw => {
            tracing::info!("tap I/O: read/write (forced by --tap-io rw)");
            let io = rw(tap, &signals)?;
            shuttle_loop(Shuttle::new(port, io, slot, bufsz), signals, &ctx)
        }
        TapIoMode::Uring | TapIoMode::Auto => match UringTap::new(tap, slot) {
            Ok(io) => {
                tracing::info!("tap I/O: io_uring");
                shuttle_loop(Shuttle::new(port, io, slot, bufsz), signals, &ctx)
            }
            Err((tap, why)) if o.tap_io == TapIoMode::Auto => {
                tracing::info!("tap I/O: read/write (io_uring unavailable: {why})");
                let io = rw(tap, &signals)?;
                shuttle_loop(Shuttle::new(port, io, slot, bufsz), signals, &ctx)
            }
            Err((tap, why)) => {
                tap.close();
                Err(AgentError::TunUnavailable(format!(
                    "--tap-io uring: io_uring unavailable: {why}"
                )))
            }
        },
    }
}

/// Writes the ready file atomically.
fn write_ready(path: &Path, tap: &str, kind: &str) -> Result<()> {
    let body = serde_json::json!({"pid": std::process::id(), "tap": tap, "tapIo": kind});
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    std::fs::write(&tmp, format!("{body}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            AgentError::io(format!("writing ready file {}", path.display()), e)
        })
}

fn shuttle_loop<T: TapIo>(
    mut sh: Shuttle<MemifPort, T>,
    mut signals: Signals,
    ctx: &LoopCtx<'_>,
) -> Result<()> {
    let o = ctx.o;
    let mut watch = LinkWatch::default();
    let mut next_ns_check = Instant::now() + NETNS_EVERY;
    let mut ready_pending = o.ready_file.is_some();
    let mut last_active = Instant::now();
    let mut next_ctl = last_active;
    let res = loop {
        let now = Instant::now();
        if now >= next_ctl {
            next_ctl = now + CONTROL_EVERY;
            sh.port.poll_control(now);
            if watch.update(&sh.port) && ready_pending && sh.port.link_up() {
                ready_pending = false;
                if let Some(f) = &o.ready_file {
                    if let Err(e) = write_ready(f, sh.io.tap().name(), T::KIND) {
                        break Err(e);
                    }
                }
            }
            if let Some(w) = ctx.watch_ns.as_ref().filter(|_| now >= next_ns_check) {
                next_ns_check = now + NETNS_EVERY;
                if w.gone() {
                    tracing::info!(netns = %w.path().display(), "the pod's netns is gone; stopping");
                    break Ok(());
                }
            }
            match signals.poll() {
                Some(Event::Stop(s)) => {
                    tracing::info!(signal = %s, "stopping");
                    break Ok(());
                }
                Some(Event::DumpStats) => log_stats(&sh),
                None => {}
            }
        }
        let moved = match sh.pass() {
            Ok(n) => n,
            Err(e) => break Err(AgentError::io(format!("tap {}", sh.io.tap().name()), e)),
        };
        let wait = if moved > 0 {
            last_active = now;
            Wait::No
        } else {
            let idle = now.saturating_duration_since(last_active);
            if idle < SPIN {
                std::hint::spin_loop();
                Wait::No
            } else if idle < SHORT_IDLE {
                Wait::Short(SHORT_SLEEP)
            } else {
                Wait::Long(LONG_SLEEP)
            }
        };
        if let Err(e) = sh.io.flush(wait) {
            break Err(AgentError::io(
                format!("tap {} ({})", sh.io.tap().name(), T::KIND),
                e,
            ));
        }
    };
    log_stats(&sh);
    let (port, io) = sh.into_parts();
    drop(port); // DISCONNECT to uswitchd, socket closed, memory unmapped
    io.into_tap().close();
    if let Some(f) = &o.ready_file {
        let _ = std::fs::remove_file(f);
    }
    res
}

fn log_stats<P: Port, T: TapIo>(sh: &Shuttle<P, T>) {
    let t = sh.tap_counters();
    let p = sh.port.stats();
    tracing::info!(
        from_tap = t.from_tap,
        from_tap_bytes = t.from_tap_bytes,
        to_tap = t.to_tap,
        to_tap_bytes = t.to_tap_bytes,
        to_tap_dropped = t.to_tap_dropped,
        oversize = t.oversize,
        retried = t.retried,
        memif_rx = p.total.rx_packets,
        memif_tx = p.total.tx_packets,
        memif_drop_no_buffer = p.total.drop_no_buffer,
        memif_drop_ring_full = p.total.drop_ring_full,
        memif_bad_desc = p.total.drop_bad_desc,
        connects = p.connects,
        disconnects = p.disconnects,
        io = %sh.io.stats_line(),
        "counters"
    );
}
