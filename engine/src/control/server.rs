//! The control socket: a `SOCK_STREAM` Unix socket served by one thread.
//!
//! Rules:
//! - The socket's parent directory is created; a stale socket (nobody accepting) is replaced;
//!   a live one means another daemon runs and binding fails; a non-socket file at the path is
//!   never deleted. The socket is mode 0660 (root and the socket's group may manage the switch).
//! - One request per connection: one JSON line in (at most [`MAX_REQUEST`] bytes, read within
//!   [`IO_TIMEOUT`]), one JSON line out. Malformed or oversized requests get an
//!   `invalid_argument` response; a client that stalls is dropped.
//! - Requests are handled one at a time, in the accepting thread, so changes are serialized.
//!   A panic while handling one becomes an `internal` error response; the server keeps going.
use crate::control::api::{ApiError, ErrorCode, Request, Response};
use crate::control::switch::Switch;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;
/// Read/write timeout per connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an oversized request's remaining input is drained before closing.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("control socket {0} is in use: another uswitchd is running")]
    InUse(String),
    #[error("control socket path {0} exists and is not a socket; not touching it")]
    NotSocket(String),
}

/// Executes one request against the switch.
pub fn dispatch(sw: &mut Switch, req: Request) -> Response {
    fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, ApiError> {
        serde_json::to_value(v).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
    }
    let res: Result<serde_json::Value, ApiError> = (|| match req {
        Request::Show => json(sw.show()?),
        Request::BridgeAdd { bridge } => json(sw.add_bridge(bridge)?),
        Request::BridgeDel { name } => json(sw.del_bridge(&name)?),
        Request::PortAdd { port } => json(sw.add_port(port)?),
        Request::PortDel { name } => json(sw.del_port(&name)?),
        Request::PortList => json(sw.port_list()?),
        Request::Xconnect { a, b } => json(sw.xconnect(&a, &b)?),
        Request::XconnectDel { a } => json(sw.del_xconnect(&a)?),
        Request::Stats { port, clear } => json(sw.stats(port.as_deref(), clear)?),
        Request::FdbShow { bridge } => json(sw.fdb(&bridge)?),
        Request::WorkerStats { clear } => json(sw.worker_stats(clear)?),
    })();
    match res {
        Ok(v) => Response::ok(v),
        Err(e) => Response::err(e),
    }
}

/// Parses one request line and executes it.
pub fn handle_line(sw: &mut Switch, line: &[u8]) -> Response {
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            return Response::err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("malformed request: {e}"),
            ))
        }
    };
    tracing::debug!(?req, "control request");
    let resp = dispatch(sw, req);
    if let Some(e) = &resp.error {
        tracing::warn!(code = ?e.code, "request failed: {}", e.message);
    }
    resp
}

/// The running control server.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the control socket (see the module rules).
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let p = path.display().to_string();
    let io = |op: &'static str| {
        let p = p.clone();
        move |source| ServerError::Io {
            path: p,
            op,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(p));
            }
            tracing::info!(path = %p, "replacing stale control socket");
            std::fs::remove_file(path).map_err(io("remove stale socket"))?;
        }
        Ok(_) => return Err(ServerError::NotSocket(p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("stat")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io("chmod"))?;
    Ok(listener)
}

impl Server {
    /// Serves `listener` (bound at `path`) on a new thread.
    pub fn spawn(
        listener: UnixListener,
        path: &Path,
        sw: Arc<Mutex<Switch>>,
    ) -> std::io::Result<Server> {
        Self::spawn_avoiding(listener, path, sw, None)
    }

    /// Like [`Server::spawn`]; the thread keeps off CPU `avoid_core` (the dataplane worker's
    /// core) when other CPUs are allowed, so control requests never preempt the worker.
    pub fn spawn_avoiding(
        listener: UnixListener,
        path: &Path,
        sw: Arc<Mutex<Switch>>,
        avoid_core: Option<usize>,
    ) -> std::io::Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("uswitch-ctl".into())
            .spawn(move || {
                if let Some(c) = avoid_core {
                    keep_off_core(c);
                }
                serve(listener, sw, stop2)
            })?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting, waits for the thread, removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), "cannot remove control socket: {e}");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes CPU `core` from this thread's affinity, unless it is the only CPU allowed.
fn keep_off_core(core: usize) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(mut set) = sched_getaffinity(Pid::from_raw(0)) else {
        return;
    };
    if !set.is_set(core).unwrap_or(false) {
        return;
    }
    let others = (0..CpuSet::count())
        .filter(|c| *c != core && set.is_set(*c).unwrap_or(false))
        .count();
    if others == 0 {
        tracing::debug!(core, "control thread shares the worker's only CPU");
        return;
    }
    if set.unset(core).is_ok() {
        match sched_setaffinity(Pid::from_raw(0), &set) {
            Ok(()) => tracing::debug!(core, "control thread kept off the worker core"),
            Err(e) => tracing::warn!(
                core,
                "cannot move the control thread off the worker core: {e}"
            ),
        }
    }
}

fn serve(listener: UnixListener, sw: Arc<Mutex<Switch>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("control socket poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        match listener.accept() {
            Ok((stream, _)) => handle_conn(stream, &sw),
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn handle_conn(stream: UnixStream, sw: &Mutex<Switch>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut line = Vec::new();
    let mut rd = BufReader::new((&stream).take(MAX_REQUEST as u64 + 1));
    let mut oversized = false;
    let resp = match rd.read_until(b'\n', &mut line) {
        Ok(0) => return,
        Ok(_) if line.len() > MAX_REQUEST => {
            oversized = true;
            Response::err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("request longer than {MAX_REQUEST} bytes"),
            ))
        }
        Ok(_) => {
            let mut guard = sw.lock().unwrap_or_else(|e| e.into_inner());
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle_line(&mut guard, &line)
            }));
            r.unwrap_or_else(|_| {
                tracing::error!("control request handler panicked");
                Response::err(ApiError::new(
                    ErrorCode::Internal,
                    "internal error while handling the request",
                ))
            })
        }
        Err(e) => {
            tracing::warn!("control connection read failed: {e}");
            Response::err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("reading request: {e}"),
            ))
        }
    };
    let mut out = match serde_json::to_vec(&resp) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("cannot encode response: {e}");
            return;
        }
    };
    out.push(b'\n');
    if let Err(e) = (&stream).write_all(&out) {
        tracing::debug!("control client went away: {e}");
        return;
    }
    if oversized {
        // Closing with unread input would reset the connection and lose the response:
        // discard what the client is still sending, briefly and boundedly.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(DRAIN_TIMEOUT));
        let _ = std::io::copy(
            &mut (&stream).take(4 * MAX_REQUEST as u64),
            &mut std::io::sink(),
        );
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
