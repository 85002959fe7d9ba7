//! Shutdown signals as a file descriptor: SIGTERM, SIGINT and SIGHUP are blocked and read from
//! a non-blocking `signalfd`, so the main loops see them at a safe point (between bursts) and
//! clean up (tap removed, memif DISCONNECT sent) instead of dying mid-way. SIGUSR1 asks for a
//! counters line in the log.
use crate::error::{AgentError, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsRawFd, RawFd};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Stop(Signal),
    DumpStats,
}

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the signals in the calling thread (call before any thread is spawned) and opens
    /// the signalfd.
    pub fn install() -> Result<Signals> {
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGUSR1,
        ] {
            set.add(s);
        }
        set.thread_block()
            .map_err(|e| AgentError::io("blocking signals", std::io::Error::from(e)))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| AgentError::io("signalfd", std::io::Error::from(e)))?;
        Ok(Signals { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next pending signal, if any (never blocks).
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGUSR1) => return Some(Event::DumpStats),
                    Ok(s) => return Some(Event::Stop(s)),
                    Err(_) => continue,
                },
                Ok(None) => return None,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("reading signalfd: {e}; stopping");
                    return Some(Event::Stop(Signal::SIGTERM));
                }
            }
        }
    }
}
