//! The control thread of a vhost-user port and the state it shares with the worker.
//!
//! - Server mode: the port binds the socket (in [`bind`], so a bad path fails at `port add`);
//!   the thread accepts one frontend at a time (others wait in the backlog) and serves it.
//! - Client mode: the thread connects, retrying with backoff (100 ms doubling to 2 s).
//! - Serving runs the rust-vmm `vhost` backend request loop (blocking reads) with our
//!   [`Handler`]. When the frontend leaves (EOF, reset, a framing error) the handler is reset:
//!   an empty device is published and we wait for the worker to drop its queues, so every
//!   mapping of that connection is unmapped before the next frontend is served.
//! - Handoff to the worker ([`Shared`]): the thread stores a complete new device under a mutex
//!   and bumps `gen`; the worker `try_lock`s from `poll_control` only when `gen` moved, swaps the
//!   device in and stores `applied`. The worker never blocks; the thread waits for `applied` only
//!   where the protocol needs the worker's answer (GET_VRING_BASE, reset), at most
//!   [`APPLY_TIMEOUT`] (or not at all when the port is being dropped).
//! - QEMU (7.2, vhost-user-net) sends SET_VRING_ENABLE before SET_FEATURES and never again
//!   after it; the `vhost` crate refuses such early enables (PROTOCOL_FEATURES not acked yet)
//!   without telling us the ring. So before each request we `MSG_PEEK` its header: an early
//!   SET_VRING_ENABLE is applied to our handler directly ([`Handler::early_enable`]) and the
//!   crate's refusal of it is not counted as an error. Peeking consumes nothing (fds stay
//!   queued for the crate).
use super::handler::Handler;
use super::virtq::Device;
use super::VhostError;
use crate::config::{VhostUserConfig, VhostUserMode};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vhost::vhost_user::message::VhostUserVirtioFeatures;
use vhost::vhost_user::{BackendReqHandler, Error as VuError};

/// Longest wait for the worker to take a published device.
pub const APPLY_TIMEOUT: Duration = Duration::from_millis(1000);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// Connection facts for `info` (control path only).
#[derive(Debug, Default, Clone)]
pub struct SessionInfo {
    pub connected: bool,
    pub features: u64,
    pub protocol_features: u64,
    pub regions: usize,
    pub memory_bytes: u64,
    pub active_pairs: usize,
    pub last_disconnect_reason: Option<String>,
}

/// State shared by the control thread and the worker-owned port.
pub struct Shared {
    pub stop: AtomicBool,
    /// Device waiting for the worker (`Some(None)` = tear down).
    pending: Mutex<Option<Option<Device>>>,
    pub gen: AtomicU64,
    pub applied: AtomicU64,
    /// Per ring: the worker's last avail index (for GET_VRING_BASE).
    pub last_avail: Vec<AtomicU16>,
    pub control_errors: AtomicU64,
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
    info: Mutex<SessionInfo>,
    /// A clone of the live connection, to unblock the thread on drop.
    conn: Mutex<Option<UnixStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(queues: u16) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            pending: Mutex::new(None),
            gen: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            last_avail: (0..2 * usize::from(queues))
                .map(|_| AtomicU16::new(0))
                .collect(),
            control_errors: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            info: Mutex::new(SessionInfo::default()),
            conn: Mutex::new(None),
        }
    }

    pub fn lock_info(&self) -> MutexGuard<'_, SessionInfo> {
        lock(&self.info)
    }

    /// Hands a device (or None: no device) to the worker; returns its generation.
    pub fn publish(&self, dev: Option<Device>) -> u64 {
        let mut p = lock(&self.pending);
        *p = Some(dev);
        self.gen.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Worker side: the newest published device, if one is waiting. Never blocks.
    pub fn take(&self) -> Option<(Option<Device>, u64)> {
        let mut p = match self.pending.try_lock() {
            Ok(p) => p,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let dev = p.take()?;
        Some((dev, self.gen.load(Ordering::Acquire)))
    }

    /// Waits until the worker applied generation `gen` (bounded; skipped when stopping).
    pub fn wait_applied(&self, gen: u64) -> bool {
        let t0 = Instant::now();
        while self.applied.load(Ordering::Acquire) < gen {
            if self.stop.load(Ordering::Relaxed) || t0.elapsed() > APPLY_TIMEOUT {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Asks the thread to stop and unblocks a pending read.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = lock(&self.conn).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Binds a server socket. A stale socket file (nobody listening) is replaced; a live one is an
/// error.
pub fn bind(path: &str) -> Result<UnixListener, VhostError> {
    let err = |e: std::io::Error| VhostError::Socket {
        path: path.to_string(),
        err: e,
    };
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                )));
            }
            let is_sock = std::fs::symlink_metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            });
            if !is_sock {
                return Err(err(e));
            }
            std::fs::remove_file(path).map_err(err)?;
            UnixListener::bind(path).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Sleeps up to `d`, waking early when the port stops.
fn nap(shared: &Shared, d: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < d && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(ACCEPT_POLL.min(d));
    }
}

/// Runs the control thread until [`Shared::shutdown`].
pub fn spawn(
    name: &str,
    cfg: &VhostUserConfig,
    shared: Arc<Shared>,
    listener: Option<UnixListener>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = name.to_string();
    let cfg = cfg.clone();
    std::thread::Builder::new()
        .name(format!("vhost-{name}"))
        .spawn(move || run(&name, &cfg, &shared, listener))
}

fn run(name: &str, cfg: &VhostUserConfig, shared: &Arc<Shared>, listener: Option<UnixListener>) {
    if let Some(l) = &listener {
        if let Err(e) = l.set_nonblocking(true) {
            tracing::error!(port = name, "vhost-user listener: {e}");
            return;
        }
    }
    let mut backoff = BACKOFF_MIN;
    while !shared.stop.load(Ordering::Acquire) {
        let stream = match (cfg.mode, &listener) {
            (VhostUserMode::Server, Some(l)) => match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    nap(shared, ACCEPT_POLL);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(port = name, "vhost-user accept: {e}");
                    nap(shared, BACKOFF_MIN);
                    continue;
                }
            },
            _ => match UnixStream::connect(&cfg.socket) {
                Ok(s) => {
                    backoff = BACKOFF_MIN;
                    s
                }
                Err(e) => {
                    tracing::debug!(port = name, socket = %cfg.socket, "vhost-user connect: {e}");
                    nap(shared, backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nonblocking(false) {
            tracing::warn!(port = name, "vhost-user socket: {e}");
            continue;
        }
        serve(name, cfg, shared, stream);
    }
}

/// True for errors after which the message stream is still in sync (the request was read
/// completely and only our answer was negative).
fn recoverable(e: &VuError) -> bool {
    matches!(
        e,
        VuError::InvalidParam
            | VuError::InvalidOperation(_)
            | VuError::InactiveFeature(_)
            | VuError::InactiveOperation(_)
            | VuError::FeatureMismatch
            | VuError::ReqHandlerError(_)
    )
}

/// vhost-user request code of SET_VRING_ENABLE.
const SET_VRING_ENABLE: u32 = 18;

/// Peeks at the next request without consuming it: `Some((index, num))` when it is a complete
/// SET_VRING_ENABLE (12-byte header + 8-byte vring state). Blocks until the frontend sends
/// something (like the crate's read would); any error or EOF is left for the crate to see.
fn peek_vring_enable(stream: &UnixStream) -> Option<(u32, u32)> {
    let mut b = [0u8; 20];
    for _ in 0..100 {
        // SAFETY: `b` is a valid writable buffer of `b.len()` bytes for the whole call and the
        // fd is owned by `stream`, alive for the call.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                b.as_mut_ptr().cast(),
                b.len(),
                libc::MSG_PEEK,
            )
        };
        if n < 12 {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(0) != SET_VRING_ENABLE || word(8) != 8 {
            return None;
        }
        if n as usize == b.len() {
            return Some((word(12), word(16)));
        }
        // The body of a message sent in one write is normally there already.
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn serve(name: &str, cfg: &VhostUserConfig, shared: &Arc<Shared>, stream: UnixStream) {
    *lock(&shared.conn) = stream.try_clone().ok();
    let peek = stream.try_clone().ok();
    if shared.stop.load(Ordering::Acquire) {
        return;
    }
    shared.connects.fetch_add(1, Ordering::Relaxed);
    shared.lock_info().connected = true;
    tracing::info!(port = name, socket = %cfg.socket, "vhost-user frontend connected");
    let handler = Arc::new(Mutex::new(Handler::new(name, cfg.queues, shared.clone())));
    let mut req = BackendReqHandler::from_stream(stream, handler.clone());
    let reason = loop {
        if shared.stop.load(Ordering::Acquire) {
            break "port deleted".to_string();
        }
        let mut early = false;
        if let Some((index, num)) = peek.as_ref().and_then(peek_vring_enable) {
            early = lock(&handler).early_enable(index, num);
        }
        match req.handle_request() {
            Err(VuError::InactiveFeature(f))
                if early && f == VhostUserVirtioFeatures::PROTOCOL_FEATURES =>
            {
                let mut h = lock(&handler);
                if h.dirty {
                    h.publish();
                }
            }
            Ok(()) => {
                let mut h = lock(&handler);
                if h.dirty {
                    h.publish();
                }
            }
            Err(e) if recoverable(&e) => {
                shared.control_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(port = name, "vhost-user request refused: {e}");
                let mut h = lock(&handler);
                if h.dirty {
                    h.publish();
                }
            }
            Err(VuError::Disconnected) | Err(VuError::PartialMessage) => {
                break "frontend closed the connection".to_string();
            }
            Err(e) => {
                if !shared.stop.load(Ordering::Acquire) {
                    shared.control_errors.fetch_add(1, Ordering::Relaxed);
                }
                break format!("connection error: {e}");
            }
        }
    };
    drop(req);
    lock(&handler).reset();
    *lock(&shared.conn) = None;
    shared.disconnects.fetch_add(1, Ordering::Relaxed);
    let mut info = shared.lock_info();
    info.connected = false;
    info.last_disconnect_reason = Some(reason.clone());
    tracing::info!(port = name, %reason, "vhost-user frontend disconnected");
}
