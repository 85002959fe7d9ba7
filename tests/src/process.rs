//! Child processes for end-to-end tests: spawn, capture output, kill by PID on drop.
//!
//! Rules this module enforces:
//! - Every process a test starts is owned by a [`ProcGuard`]; dropping the guard sends SIGKILL
//!   to *that PID only* and reaps it, so a failing (panicking) test leaves nothing running.
//! - stdout and stderr are copied, as they arrive, into one log file under
//!   [`crate::log_dir`] (for diagnosis after a failure) and into an in-memory buffer that
//!   tests can search ([`ProcGuard::output`], [`ProcGuard::wait_output`]).
//! - stdin is optionally kept open as a pipe (interactive testpmd reads commands from it).
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running child process, killed (by PID) and reaped on drop.
pub struct ProcGuard {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl ProcGuard {
    /// Spawns `cmd` with stdout/stderr captured; stdin is a pipe when `keep_stdin`, else null.
    pub fn spawn(name: &str, mut cmd: Command, keep_stdin: bool) -> std::io::Result<ProcGuard> {
        let log = crate::log_dir().join(format!(
            "{}-{}-{}.log",
            name,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = Arc::new(Mutex::new(File::create(&log)?));
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "# {cmd:?}");
        }
        // stdout and stderr share one pipe, so the output keeps the order the process wrote
        // it in (with two pipes read by two threads, a prompt could be split by a warning).
        let (rd, wr) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        let wr2 = wr.try_clone()?;
        cmd.stdout(Stdio::from(wr)).stderr(Stdio::from(wr2));
        cmd.stdin(if keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let spawned = cmd.spawn();
        // Drop our copies of the write end (held by `cmd`) so EOF arrives when the child exits.
        drop(cmd);
        let child = spawned
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let mut s = File::from(rd);
        {
            let out = Arc::clone(&out);
            let file = Arc::clone(&file);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut f) = file.lock() {
                                let _ = f.write_all(&buf[..n]);
                            }
                            if let Ok(mut o) = out.lock() {
                                o.extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                }
            }));
        }
        let mut child = child;
        let stdin = child.stdin.take();
        Ok(ProcGuard {
            name: name.to_string(),
            child,
            stdin,
            out,
            readers,
            log,
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Log file holding everything the process printed.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything printed so far (stdout and stderr interleaved as they arrived).
    pub fn output(&self) -> String {
        self.out
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default()
    }
    /// Bytes printed so far.
    pub fn output_len(&self) -> usize {
        self.out.lock().map(|o| o.len()).unwrap_or(0)
    }
    /// Output from byte offset `from` on.
    pub fn output_since(&self, from: usize) -> String {
        self.out
            .lock()
            .map(|o| String::from_utf8_lossy(o.get(from..).unwrap_or_default()).into_owned())
            .unwrap_or_default()
    }

    /// Output between byte offsets `from` and `to`.
    pub fn output_range(&self, from: usize, to: usize) -> String {
        self.out
            .lock()
            .map(|o| {
                String::from_utf8_lossy(o.get(from..to.min(o.len())).unwrap_or_default())
                    .into_owned()
            })
            .unwrap_or_default()
    }

    /// Last `n` bytes of output, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let s = self.output();
        let cut = s.len().saturating_sub(n);
        let cut = (cut..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        format!(
            "--- last output of {} (pid {}, log {}) ---\n{}",
            self.name,
            self.pid(),
            self.log.display(),
            &s[cut..]
        )
    }

    /// Waits until `pat` appears in the output after byte offset `from`; returns the offset just
    /// past the match. Fails early if the process exits.
    pub fn wait_output(
        &mut self,
        from: usize,
        pat: &str,
        timeout: Duration,
    ) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.out.lock().ok().and_then(|o| {
                o.get(from..)
                    .and_then(|s| find(s, pat.as_bytes()))
                    .map(|i| from + i + pat.len())
            });
            if let Some(end) = found {
                return Ok(end);
            }
            if let Some(st) = self.try_wait() {
                // Let the readers drain the pipes, then check once more.
                std::thread::sleep(Duration::from_millis(50));
                let s = self.output_since(from);
                if let Some(i) = s.find(pat) {
                    return Ok(from + i + pat.len());
                }
                return Err(format!(
                    "{} exited ({st}) before printing {pat:?}\n{}",
                    self.name,
                    self.tail(3000)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not print {pat:?} within {timeout:?}\n{}",
                    self.name,
                    self.tail(3000)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes a line to the process's stdin (when kept open).
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin not kept open")
        })?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()
    }

    /// Closes stdin (EOF for the child).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Exit status if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to this PID (no effect once it has exited and been reaped).
    pub fn signal(&mut self, sig: Signal) {
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGKILL);
        let st = self.wait_timeout(Duration::from_secs(10));
        self.join_readers();
        st
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        if let Some(st) = self.wait_timeout(grace) {
            self.join_readers();
            return Some(st);
        }
        self.kill9()
    }

    fn join_readers(&mut self) {
        // The readers end when the pipes close; a grandchild holding them open must not hang us.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill9();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Open file descriptors of a process (`/proc/PID/fd` entries).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Memory mappings of a process (lines of `/proc/PID/maps`).
pub fn maps_count(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Shared-memory mappings of a process: memfd, hugetlbfs and `/dev/shm` lines of its maps
/// (the kind memif regions use).
pub fn shm_maps(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|s| {
            s.lines()
                .filter(|l| {
                    l.contains("memfd:") || l.contains("/dev/hugepages") || l.contains("/dev/shm")
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
