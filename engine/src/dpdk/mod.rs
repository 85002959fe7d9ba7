//! DPDK ethdev ports (NICs by PCI address, vdevs such as `net_tap`, `net_af_packet`) behind
//! the cargo feature `dpdk`.
//!
//! This module is compiled in every build: it holds the process-wide DPDK settings (EAL
//! arguments from `uswitchd --dpdk-eal-args` or the config's `dpdk.eal_args`) and the error
//! type, so that a build without the feature parses DPDK ports and answers them with
//! [`DpdkError::NotBuiltIn`] instead of a parse error. With the feature:
//! - [`ffi`]: the hand-written declarations of the C shim (`shim.c`), the only DPDK symbols
//!   Rust calls. All DPDK structs stay on the C side; Rust sees opaque pointers.
//! - [`eal`]: EAL initialisation (once per process, on its own thread, at the first DPDK port
//!   or at start with `--dpdk-eal-args`) and one mbuf pool per NUMA socket.
//! - [`port`]: [`port::DpdkPort`], the batch [`crate::port::Port`] over an ethdev.
//!
//! Rules: every `unsafe` block is in this module and says why it is sound; mbufs received are
//! freed exactly once (at `rx_release`, or at drop); mbufs allocated for tx are either handed
//! to the PMD or freed in the same `tx_burst`; a device is used by one port; a failed
//! `port add` leaves no device attached and no port configured.
use std::sync::Mutex;

#[cfg(feature = "dpdk")]
pub mod eal;
#[cfg(feature = "dpdk")]
pub mod ffi;
#[cfg(feature = "dpdk")]
pub mod port;

/// True when this build has DPDK support (cargo feature `dpdk`).
pub const BUILT_IN: bool = cfg!(feature = "dpdk");

/// Why a DPDK port could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    #[error("uswitchd built without DPDK support (cargo feature dpdk)")]
    NotBuiltIn,
    #[error("DPDK EAL initialisation failed (EAL args {args:?}): {msg}")]
    Eal { args: Vec<String>, msg: String },
    #[error("DPDK device {devargs:?} not found: {msg}")]
    NoDevice { devargs: String, msg: String },
    #[error("DPDK device {0} is busy: {1}")]
    Busy(String, String),
    #[error("DPDK device {device}: {what}: {msg}")]
    Setup {
        device: String,
        what: String,
        msg: String,
    },
    #[error("DPDK mbuf pool for socket {socket}: {msg}")]
    Pool { socket: i32, msg: String },
}

/// Mbufs per socket pool unless configured (`dpdk.mbufs`, `uswitchd --dpdk-mbufs`).
pub const DEFAULT_MBUFS: u32 = 16383;

struct Settings {
    eal_args: Vec<String>,
    /// Set by the command line: the config/state file's args do not replace them.
    from_cli: bool,
    mbufs: u32,
    mbufs_from_cli: bool,
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    eal_args: Vec::new(),
    from_cli: false,
    mbufs: DEFAULT_MBUFS,
    mbufs_from_cli: false,
});

fn settings() -> std::sync::MutexGuard<'static, Settings> {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// EAL arguments from the command line (win over the config's). Effective until the EAL is
/// initialised; later changes are logged and ignored.
pub fn set_eal_args(args: Vec<String>) {
    let mut s = settings();
    s.eal_args = args;
    s.from_cli = true;
}

/// Mbufs per socket pool from the command line (wins over the config's `dpdk.mbufs`).
/// Effective for pools created afterwards.
pub fn set_mbufs(n: u32) {
    let mut s = settings();
    s.mbufs = n;
    s.mbufs_from_cli = true;
}

/// The config or state file's `dpdk` section (validated), except what the command line set.
pub fn apply_settings(d: &crate::config::DpdkSettings) {
    let mut s = settings();
    if !s.from_cli {
        s.eal_args = d.eal_args.clone();
    }
    if let (false, Some(n)) = (s.mbufs_from_cli, d.mbufs) {
        s.mbufs = n;
    }
}

/// Mbufs per socket pool for pools created from now on.
pub fn mbufs() -> u32 {
    settings().mbufs
}

/// The EAL arguments the EAL is (or will be) initialised with, without the program name.
pub fn eal_args() -> Vec<String> {
    settings().eal_args.clone()
}

/// Creates a DPDK port (initialising the EAL first if needed).
#[cfg(feature = "dpdk")]
pub fn new_port(
    name: &str,
    cfg: &crate::config::DpdkConfig,
) -> Result<Box<dyn crate::port::Port>, DpdkError> {
    Ok(Box::new(port::DpdkPort::new(name, cfg)?))
}

/// Without the feature: always [`DpdkError::NotBuiltIn`].
#[cfg(not(feature = "dpdk"))]
pub fn new_port(
    _name: &str,
    _cfg: &crate::config::DpdkConfig,
) -> Result<Box<dyn crate::port::Port>, DpdkError> {
    Err(DpdkError::NotBuiltIn)
}

/// Initialises the EAL now (uswitchd start with `--dpdk-eal-args`). Without the feature:
/// [`DpdkError::NotBuiltIn`].
pub fn init_now() -> Result<(), DpdkError> {
    #[cfg(feature = "dpdk")]
    {
        eal::ensure().map(|_| ())
    }
    #[cfg(not(feature = "dpdk"))]
    {
        Err(DpdkError::NotBuiltIn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_built_in_message_names_the_feature() {
        assert_eq!(
            DpdkError::NotBuiltIn.to_string(),
            "uswitchd built without DPDK support (cargo feature dpdk)"
        );
        if !BUILT_IN {
            let cfg = crate::config::DpdkConfig {
                devargs: "net_tap0".into(),
                queues: 1,
                ring_size: 512,
            };
            assert_eq!(new_port("p", &cfg).err(), Some(DpdkError::NotBuiltIn));
            assert_eq!(init_now(), Err(DpdkError::NotBuiltIn));
        }
    }
}

#[cfg(all(test, feature = "dpdk"))]
mod port_tests;
