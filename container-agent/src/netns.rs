//! Entering the pod's network namespace for the tap setup, and coming back.
//!
//! Rules:
//! - `--netns` takes a path (`/proc/<pid>/ns/net`, `/var/run/netns/<name>`, the CNI's
//!   `CNI_NETNS`) or a bare `ip netns` name (looked up in `/var/run/netns`).
//! - [`NetnsGuard::enter`] switches the *calling thread* (the agent is single-threaded while it
//!   sets up) and switches back on drop. Interfaces created and processes spawned meanwhile
//!   (`ip ...`) live in the pod's namespace; the memif socket is connected afterwards from the
//!   namespace the agent was started in (so an abstract socket is the one uswitchd sees).
//! - The tap's fd keeps the pod's namespace alive (the kernel ties the tun socket to the netns it
//!   was opened in), so the namespace never "disappears" under the agent by itself. Instead
//!   [`NetnsWatch`] remembers which namespace `--netns` named (device and inode of the nsfs
//!   file) and reports it gone once that path no longer names it (`ip netns del`, the runtime
//!   removing the pod's netns file, `/proc/<pid>/ns/net` of an exited process).
use crate::error::{AgentError, Result};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where `ip netns add NAME` puts its bind mounts.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Resolves `--netns` to a path and checks it is a network namespace.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let p = if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new(NETNS_RUN_DIR).join(spec)
    };
    if !p.exists() {
        return Err(AgentError::Netns {
            path: p,
            msg: "not found (no such file)".into(),
        });
    }
    Ok(p)
}

/// Tells when the path given as `--netns` stops naming the namespace it named at start.
pub struct NetnsWatch {
    path: PathBuf,
    id: (u64, u64),
}

fn ns_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl NetnsWatch {
    pub fn new(path: &Path) -> Result<NetnsWatch> {
        let id = ns_id(path).ok_or_else(|| AgentError::Netns {
            path: path.to_path_buf(),
            msg: "cannot stat".into(),
        })?;
        Ok(NetnsWatch {
            path: path.to_path_buf(),
            id,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the path is gone or names something else.
    pub fn gone(&self) -> bool {
        ns_id(&self.path) != Some(self.id)
    }
}

/// While alive, the calling thread is in the target namespace.
pub struct NetnsGuard {
    orig: File,
    target: PathBuf,
}

impl NetnsGuard {
    pub fn enter(target: &Path) -> Result<NetnsGuard> {
        let err = |msg: String| AgentError::Netns {
            path: target.to_path_buf(),
            msg,
        };
        let orig = File::open("/proc/thread-self/ns/net")
            .map_err(|e| err(format!("cannot open our own netns: {e}")))?;
        let f = File::open(target).map_err(|e| err(format!("cannot open: {e}")))?;
        setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| {
            err(format!(
                "setns failed: {e} (not a network namespace, or not permitted)"
            ))
        })?;
        tracing::debug!(netns = %target.display(), "entered netns");
        Ok(NetnsGuard {
            orig,
            target: target.to_path_buf(),
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.orig, CloneFlags::CLONE_NEWNET) {
            // Continuing in the wrong namespace would connect the memif socket from there.
            tracing::error!(netns = %self.target.display(), "cannot return to the original netns: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_netns_is_clear() {
        let e = resolve("uswitch-agent-test-no-such-ns").unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(
            e.to_string()
                .contains("/var/run/netns/uswitch-agent-test-no-such-ns"),
            "{e}"
        );
        let e = resolve("/nonexistent/ns").unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
    }

    #[test]
    fn not_a_netns_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("plain");
        std::fs::write(&f, b"").unwrap();
        let e = NetnsGuard::enter(&f)
            .err()
            .expect("plain file accepted as netns");
        assert!(e.to_string().contains("setns failed"), "{e}");
    }
}
