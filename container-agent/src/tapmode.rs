//! Tap mode: a kernel interface in the pod backed by the memif link.
//!
//! Steps: wait for the socket; in the pod netns create and configure the tap; back in our own
//! netns open the memif port; then loop: control work every 1 ms (connect, handshake,
//! reconnect), a burst each way, signals.
//!
//! Idle policy (2-core machines are shared with uswitchd's polling worker): busy-poll while
//! frames flow and for 100 µs after; then 20 µs sleeps until 5 ms idle; then sleep in `epoll`
//! on the tap fd and the signalfd for at most 1 ms. A frame from the kernel wakes us at once; a
//! frame from memif waits at most the current sleep (memif interrupts are not used).
//!
//! SIGTERM/SIGINT/SIGHUP: the memif port sends DISCONNECT and closes, the tap is closed (the
//! kernel removes it), exit 0.
use crate::error::{AgentError, Result};
use crate::link::{self, LinkWatch};
use crate::netns::{self, NetnsGuard};
use crate::podconf::{fmt_mac, PodConfig};
use crate::shuttle::Shuttle;
use crate::signals::{Event, Signals};
use crate::tapdev;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::time::{Duration, Instant};
use uswitch::config::MemifRole;
use uswitch::port::Port;

pub struct TapOptions {
    pub netns: Option<String>,
    /// Tap name (default: the pod interface name).
    pub tap_name: Option<String>,
    pub wait_socket: Duration,
}

const SPIN: Duration = Duration::from_micros(100);
const SHORT_IDLE: Duration = Duration::from_millis(5);
const SHORT_SLEEP: Duration = Duration::from_micros(20);
const LONG_SLEEP: Duration = Duration::from_millis(1);
const CONTROL_EVERY: Duration = Duration::from_millis(1);

pub fn run(c: &PodConfig, o: &TapOptions, mut signals: Signals) -> Result<()> {
    link::wait_for_socket(c, o.wait_socket)?;
    let name = o.tap_name.clone().unwrap_or_else(|| c.ifname.clone());
    let mac = c.mac_or_derived();

    let tap = {
        let _ns = match &o.netns {
            Some(spec) => Some(NetnsGuard::enter(&netns::resolve(spec)?)?),
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
    let mut sh = Shuttle::new(port, tap, c.mtu, bufsz);
    let mut poll = Poll::new().map_err(|e| AgentError::io("epoll", e))?;
    let mut events = Events::with_capacity(4);
    let tap_fd = sh.tap().fd();
    let sig_fd = signals.fd();
    poll.registry()
        .register(&mut SourceFd(&tap_fd), Token(0), Interest::READABLE)
        .and_then(|()| {
            poll.registry()
                .register(&mut SourceFd(&sig_fd), Token(1), Interest::READABLE)
        })
        .map_err(|e| AgentError::io("epoll_ctl", e))?;

    let mut watch = LinkWatch::default();
    let mut last_active = Instant::now();
    let mut next_ctl = last_active;
    let res = loop {
        let now = Instant::now();
        if now >= next_ctl {
            next_ctl = now + CONTROL_EVERY;
            sh.port.poll_control(now);
            watch.update(&sh.port);
            match signals.poll() {
                Some(Event::Stop(s)) => {
                    tracing::info!(signal = %s, "stopping");
                    break Ok(());
                }
                Some(Event::DumpStats) => log_stats(&sh),
                None => {}
            }
        }
        match sh.pass() {
            Ok(0) => {}
            Ok(_) => {
                last_active = now;
                continue;
            }
            Err(e) => break Err(AgentError::io(format!("tap {}", sh.tap().name()), e)),
        }
        let idle = now.saturating_duration_since(last_active);
        if idle < SPIN {
            std::hint::spin_loop();
        } else if idle < SHORT_IDLE {
            std::thread::sleep(SHORT_SLEEP);
        } else if let Err(e) = poll.poll(&mut events, Some(LONG_SLEEP)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                break Err(AgentError::io("epoll_wait", e));
            }
        }
    };
    log_stats(&sh);
    let (port, tap) = sh.into_parts();
    drop(port); // DISCONNECT to uswitchd, socket closed, memory unmapped
    tap.close();
    res
}

fn log_stats<P: Port>(sh: &Shuttle<P>) {
    let t = sh.counters;
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
        "counters"
    );
}
