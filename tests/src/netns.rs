//! Network namespaces for tests (`ip netns add` / `ip netns del`).
//!
//! A [`NetNs`] is created with a unique name and deleted on drop, so a failing test leaves no
//! namespace behind. Only addresses inside namespaces a test created (or loopback) are used as
//! network targets.
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `usw-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Result<NetNs, String> {
        let name = format!(
            "usw-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("ip netns add: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(NetNs { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>` (what CNI_NETNS gets).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip netns exec <name> ARGS`.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
