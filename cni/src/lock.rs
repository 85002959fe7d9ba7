//! One lock for all uswitch-cni invocations on a host: an exclusive `flock` on a lock file.
//!
//! Rules: ADD, DEL, CHECK and GC run their whole body (uswitchd calls, IPAM, files) under the
//! lock, so parallel invocations cannot interleave a port add with a GC sweep or two ADDs of the
//! same attachment. The lock is released when [`HostLock`] drops (and by the kernel if the process
//! dies). Waiting is bounded: after the timeout the invocation fails with error 11 (try again).
use crate::error::{CniError, CniResult, Code};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// Held lock; dropping it unlocks.
pub struct HostLock {
    _lock: Flock<File>,
}

impl HostLock {
    /// Takes the lock at `path` (creating the file and its directory), waiting up to `timeout`.
    pub fn acquire(path: &Path, timeout: Duration) -> CniResult<HostLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CniError::io(format!("creating {}", dir.display()), &e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| CniError::io(format!("opening lock file {}", path.display()), &e))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(HostLock { _lock: lock }),
                Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => file = f,
                Err((_, e)) => {
                    return Err(CniError::with_details(
                        Code::Io,
                        format!("cannot lock {}", path.display()),
                        e.to_string(),
                    ))
                }
            }
            if Instant::now() >= deadline {
                return Err(CniError::new(
                    Code::TryAgainLater,
                    format!(
                        "another uswitch-cni holds {} for more than {timeout:?}",
                        path.display()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/cni.lock");
        let held = HostLock::acquire(&p, Duration::from_secs(1)).unwrap();
        let e = HostLock::acquire(&p, Duration::from_millis(50))
            .err()
            .unwrap();
        assert_eq!(e.code, Code::TryAgainLater);
        drop(held);
        assert!(HostLock::acquire(&p, Duration::from_millis(50)).is_ok());
    }
}
