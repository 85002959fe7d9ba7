//! EAL initialisation and the mbuf pools.
//!
//! - The EAL is initialised once per process, at the first DPDK port (or at start with
//!   `uswitchd --dpdk-eal-args`), on a thread of its own: `rte_eal_init` makes the calling
//!   thread the main lcore and pins it, which must not happen to the control thread. The
//!   result, success or failure, is kept: DPDK cannot be initialised twice, so after a
//!   failure every DPDK port add answers the same error until uswitchd is restarted with
//!   other arguments.
//! - Defaults added when the user's arguments lack them: `-l <first CPU we may run on>` (one
//!   lcore, no worker lcores: uswitch's own worker polls the ports) and
//!   `--file-prefix uswitchd` (runtime files apart from other DPDK processes).
//! - One mbuf pool per NUMA socket, created at the first port on that socket and kept for
//!   the life of the process ([`super::mbufs`] mbufs, default [`super::DEFAULT_MBUFS`], of
//!   `RTE_MBUF_DEFAULT_BUF_SIZE`).
use super::ffi::{self, RteMempool};
use super::DpdkError;
use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::{Mutex, OnceLock};

/// Per-lcore mbuf cache of the pools.
const POOL_CACHE: u32 = 256;

/// The initialised EAL.
#[derive(Debug)]
pub struct Eal {
    /// The full argument list it was initialised with (program name first).
    pub args: Vec<String>,
    /// `rte_version()`.
    pub version: String,
}

static EAL: OnceLock<Result<Eal, DpdkError>> = OnceLock::new();

/// The EAL, initialising it at the first call.
pub fn ensure() -> Result<&'static Eal, DpdkError> {
    match EAL.get_or_init(init) {
        Ok(e) => Ok(e),
        Err(e) => Err(e.clone()),
    }
}

fn has_any(args: &[String], opts: &[&str]) -> bool {
    args.iter().any(|a| {
        opts.iter().any(|o| {
            a == o || a.starts_with(&format!("{o}=")) || (o.len() == 2 && a.starts_with(o))
        })
    })
}

/// The argument vector for `rte_eal_init`: program name, the user's args, then defaults.
pub fn full_args(user: &[String]) -> Vec<String> {
    let mut v = vec!["uswitchd".to_string()];
    v.extend(user.iter().cloned());
    if !has_any(user, &["-l", "-c", "--lcores"]) {
        let cpu = first_allowed_cpu().unwrap_or(0);
        v.extend(["-l".to_string(), cpu.to_string()]);
    }
    if !has_any(user, &["--file-prefix", "--in-memory"]) {
        v.extend(["--file-prefix".to_string(), "uswitchd".to_string()]);
    }
    v
}

fn first_allowed_cpu() -> Option<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    (0..nix::sched::CpuSet::count()).find(|&c| set.is_set(c).unwrap_or(false))
}

fn init() -> Result<Eal, DpdkError> {
    let args = full_args(&super::eal_args());
    let fail = |msg: String| DpdkError::Eal {
        args: args[1..].to_vec(),
        msg,
    };
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| fail("an argument contains a NUL byte".into()))?;
    tracing::info!(?args, "initialising the DPDK EAL");
    let res = std::thread::Builder::new()
        .name("uswitch-eal".into())
        .spawn(move || {
            let mut argv: Vec<*mut c_char> =
                cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
            argv.push(std::ptr::null_mut());
            // SAFETY: argv holds argc valid NUL-terminated strings plus a NULL terminator;
            // `cargs` outlives the call, and rte_eal_init only permutes the pointer array.
            // This is the only call of rte_eal_init (guarded by the OnceLock of `ensure`).
            let rc = unsafe { ffi::usw_eal_init((argv.len() - 1) as i32, argv.as_mut_ptr()) };
            if rc < 0 {
                // SAFETY: reads the calling thread's rte_errno (set by rte_eal_init).
                Err(ffi::strerror(unsafe { ffi::usw_errno() }))
            } else {
                Ok(())
            }
        })
        .map_err(|e| fail(format!("spawning the EAL thread: {e}")))?
        .join()
        .map_err(|_| fail("the EAL thread panicked".into()))?;
    res.map_err(|m| {
        let e = fail(m);
        tracing::error!("{e}");
        e
    })?;
    let version = ffi::version();
    tracing::info!(%version, "DPDK EAL ready");
    Ok(Eal { args, version })
}

/// An mbuf pool (lives for the whole process once created).
#[derive(Clone, Copy, Debug)]
pub struct Pool(*mut RteMempool);

// SAFETY: a DPDK mempool is a process-global object whose get/put paths are thread-safe
// (multi-producer/multi-consumer ring); the pointer is never freed.
unsafe impl Send for Pool {}
// SAFETY: as above; the only reads through a shared Pool are thread-safe DPDK calls.
unsafe impl Sync for Pool {}

impl Pool {
    pub fn as_ptr(&self) -> *mut RteMempool {
        self.0
    }
    /// Mbufs currently free in the pool (ring plus per-lcore caches).
    pub fn avail(&self) -> u32 {
        // SAFETY: the pool pointer is valid for the process lifetime.
        unsafe { ffi::usw_pool_avail(self.0) }
    }
    /// Mbufs in the pool.
    pub fn size(&self) -> u32 {
        // SAFETY: as in `avail`.
        unsafe { ffi::usw_pool_size(self.0) }
    }
    /// Bytes one mbuf carries.
    pub fn room(&self) -> u32 {
        // SAFETY: as in `avail`.
        unsafe { ffi::usw_pool_room(self.0) }
    }
}

static POOLS: Mutex<Vec<(i32, Pool)>> = Mutex::new(Vec::new());

/// The pool of NUMA `socket` (created at the first call). Needs the EAL.
pub fn pool(socket: i32) -> Result<Pool, DpdkError> {
    ensure()?;
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = pools.iter().find(|(s, _)| *s == socket) {
        return Ok(*p);
    }
    let name = CString::new(format!("usw_pool_s{socket}")).expect("no NUL");
    let n = super::mbufs();
    // SAFETY: the EAL is initialised; name is a valid C string; the sizes are in range
    // (cache <= RTE_MEMPOOL_CACHE_MAX_SIZE, n >= MIN_DPDK_MBUFS >= 1.5 × cache).
    let mp = unsafe { ffi::usw_pool_create(name.as_ptr(), n, POOL_CACHE, socket) };
    if mp.is_null() {
        // SAFETY: reads this thread's rte_errno, set by the failed create.
        let err = unsafe { ffi::usw_errno() };
        return Err(DpdkError::Pool {
            socket,
            msg: format!(
                "rte_pktmbuf_pool_create of {n} mbufs: {} (hugepages on that node? EAL -m/--socket-mem?)",
                ffi::strerror(err)
            ),
        });
    }
    let p = Pool(mp);
    tracing::info!(
        socket,
        mbufs = p.size(),
        room = p.room(),
        "DPDK mbuf pool created"
    );
    pools.push((socket, p));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_only_when_missing() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = full_args(&s(&["--no-pci"]));
        assert_eq!(a[0], "uswitchd");
        assert!(a.contains(&"-l".to_string()) && a.contains(&"--file-prefix".to_string()));
        let a = full_args(&s(&["-l", "1", "--in-memory"]));
        assert_eq!(a, s(&["uswitchd", "-l", "1", "--in-memory"]));
        let a = full_args(&s(&["--lcores=0@1", "--file-prefix=x"]));
        assert_eq!(a, s(&["uswitchd", "--lcores=0@1", "--file-prefix=x"]));
        let a = full_args(&s(&["-l0"]));
        assert_eq!(a.iter().filter(|x| x.starts_with("-l")).count(), 1);
    }
}
