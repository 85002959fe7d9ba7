//! Helpers for the end-to-end tests in `tests/tests/`: process guards, the global e2e lock,
//! a DPDK `testpmd` driver, a `uswitchd` guard with `uswitchctl` wrappers, pcap files and
//! network namespaces.
//!
//! Rules every e2e test follows (see `docs/testing.md`):
//! - Take [`e2e_lock`] first: throughput tests share 2 cores with everything else, and
//!   testpmd/uswitchd instances must not overlap between test binaries or helpers.
//! - Start every process through a guard ([`ProcGuard`], [`Testpmd`], [`Uswitchd`]); guards
//!   kill by PID and clean up (hugepage files, sockets) on drop, also when a test panics.
//! - Use the release binaries (`cargo build --release` first); [`bin_path`] finds them.
pub mod cni;
pub mod frames;
pub mod memif_peer;
pub mod netns;
pub mod process;
pub mod qemu;
pub mod scenario;
pub mod testpmd;
pub mod uswitchd;

pub use netns::NetNs;
pub use process::{fd_count, maps_count, shm_maps, wait_until, ProcGuard};
pub use testpmd::{PortCounters, Testpmd, TestpmdBuilder};
pub use uswitchd::Uswitchd;

use std::fs::File;
use std::path::PathBuf;

/// Path of the lock file every e2e test holds while it runs.
pub const LOCK_PATH: &str = "/tmp/uswitch-e2e.lock";

/// `--file-prefix` of every testpmd the harness starts begins with this, so stale hugepage
/// files of ours (and only ours) can be removed.
pub const DPDK_PREFIX: &str = "uswe2e";

/// Holds the global e2e lock (an exclusive `flock` on [`LOCK_PATH`]) until dropped.
pub struct E2eLock {
    _lock: nix::fcntl::Flock<File>,
}

/// Takes the global e2e lock (blocking), then removes stale hugepage files of earlier
/// harness runs (safe: nobody else runs e2e processes while we hold the lock).
pub fn e2e_lock() -> E2eLock {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {LOCK_PATH}: {e}"));
    remove_hugepage_files(DPDK_PREFIX);
    E2eLock { _lock: lock }
}

/// Removes `/dev/hugepages/<prefix>*` (DPDK leaves them behind when killed).
pub fn remove_hugepage_files(prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    if let Ok(dir) = std::fs::read_dir("/dev/hugepages") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Cargo target directory: `$CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// A release binary of this workspace (`USWITCH_BIN_DIR` overrides the directory).
/// Panics with a hint when it has not been built.
pub fn bin_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("USWITCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release"));
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} not found: run `cargo build --release` first",
        p.display()
    );
    p
}

/// Directory for process logs of e2e runs (`<target>/e2e-logs`).
pub fn log_dir() -> PathBuf {
    let d = target_dir().join("e2e-logs");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Free 2 MiB hugepages (0 when none are configured).
pub fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Free:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// True when `/dev/hugepages` is a hugetlbfs mount.
pub fn hugetlbfs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                l.split_whitespace().nth(1) == Some("/dev/hugepages") && l.contains("hugetlbfs")
            })
        })
        .unwrap_or(false)
}

/// A fresh temporary directory for sockets/state of one test (short path: `sun_path` is 108
/// bytes).
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("usw-{tag}-"))
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"))
}

/// The libcni runner: `cnitool-lite` from PATH, else built once into the target dir with
/// `../shared/tools/cnitool-lite/build.sh`.
pub fn cnitool() -> PathBuf {
    if let Ok(out) = std::process::Command::new("sh")
        .args(["-c", "command -v cnitool-lite"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let dest = target_dir().join("cnitool");
    let bin = dest.join("cnitool-lite");
    if !bin.exists() {
        let script = workspace_root().join("../shared/tools/cnitool-lite/build.sh");
        std::fs::create_dir_all(&dest).unwrap();
        let st = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dest)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot build cnitool-lite with {}",
            script.display()
        );
    }
    bin
}
