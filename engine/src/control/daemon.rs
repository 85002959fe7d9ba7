//! Daemon startup and shutdown (what `uswitchd` runs), separate from argument parsing so
//! tests can start a whole daemon in-process against the fake backend.
//!
//! Startup order, each step failing before anything is left behind:
//! 1. open and lock the state file (creating its directory); read it. A corrupt state file is
//!    an error; it is left untouched.
//! 2. when there is no state file and `--config` is given: parse it (TOML when it ends in
//!    `.toml`, JSON otherwise) and validate it as a whole; any error is fatal.
//! 3. bind the control socket (fails if another daemon answers on it).
//! 4. start the backend, then bring up the state file's items, or else the config's. **The
//!    state file wins over `--config`**: it is the record of every change made since.
//!    Items that fail to come up (e.g. a socket directory that vanished) are logged and listed
//!    in `show`; the rest come up. In that case the state file is not rewritten at startup,
//!    so a restart after fixing the cause brings them back (until the next change rewrites it).
//! 5. when there was no state file and everything came up, write it.
//! 6. serve the control socket.
//!
//! Shutdown: stop serving and remove the control socket, then stop the backend (ports are
//! dropped, server sockets removed). The state file is kept.
use crate::config::SwitchConfig;
use crate::control::backend::{Backend, PortFactory};
use crate::control::server::{self, Server, ServerError};
use crate::control::state::{StateError, StateFile};
use crate::control::switch::{self, Switch};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config: Option<PathBuf>,
    pub control: PathBuf,
    /// None: keep no state (changes are lost on restart).
    pub state: Option<PathBuf>,
    /// The dataplane worker's core: the control thread keeps off it (when other CPUs exist).
    pub worker_core: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("config file {path}: {msg}")]
    Config { path: String, msg: String },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("starting the dataplane: {0}")]
    Backend(std::io::Error),
    #[error("starting the control thread: {0}")]
    Thread(std::io::Error),
}

/// Reads and validates a config file.
pub fn load_config(path: &Path) -> Result<SwitchConfig, DaemonError> {
    let err = |msg: String| DaemonError::Config {
        path: path.display().to_string(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let cfg = SwitchConfig::parse(&text, is_toml).map_err(err)?;
    switch::validate_config(&cfg).map_err(|e| err(e.to_string()))?;
    Ok(cfg)
}

/// A running daemon.
pub struct Daemon {
    server: Server,
    switch: Arc<Mutex<Switch>>,
    restore_errors: Vec<String>,
}

impl Daemon {
    /// Starts everything (see the module doc). `start_backend` runs after the control socket is
    /// bound and only when all checks passed.
    pub fn start(
        opts: &DaemonOptions,
        start_backend: impl FnOnce() -> std::io::Result<Box<dyn Backend>>,
        factory: PortFactory,
    ) -> Result<Daemon, DaemonError> {
        let state = opts.state.as_deref().map(StateFile::open).transpose()?;
        let saved = match &state {
            Some(s) => s.load()?,
            None => None,
        };
        let (initial, from_state) = match (saved, &opts.config) {
            (Some(c), cfg) => {
                if let (Some(cfg), Some(s)) = (cfg, &state) {
                    tracing::info!(
                        state = %s.path().display(), config = %cfg.display(),
                        "state file exists and wins; ignoring --config"
                    );
                }
                (c, true)
            }
            (None, Some(path)) => (load_config(path)?, false),
            (None, None) => (SwitchConfig::default(), false),
        };
        let listener = server::bind(&opts.control)?;
        let cleanup_socket = || {
            let _ = std::fs::remove_file(&opts.control);
        };
        let backend = match start_backend() {
            Ok(b) => b,
            Err(e) => {
                cleanup_socket();
                return Err(DaemonError::Backend(e));
            }
        };
        let mut sw = Switch::new(backend, factory, state);
        let restore_errors = sw.restore(&initial);
        tracing::info!(
            bridges = sw.config().bridges.len(),
            ports = sw.config().ports.len(),
            xconnects = sw.config().xconnects.len(),
            failed = restore_errors.len(),
            source = if from_state {
                "state file"
            } else if opts.config.is_some() {
                "config file"
            } else {
                "empty"
            },
            "configuration restored"
        );
        if !from_state && restore_errors.is_empty() {
            if let Err(e) = sw.save() {
                cleanup_socket();
                sw.shutdown();
                return Err(e.into());
            }
        }
        let switch = Arc::new(Mutex::new(sw));
        let server =
            match Server::spawn_avoiding(listener, &opts.control, switch.clone(), opts.worker_core)
            {
                Ok(s) => s,
                Err(e) => {
                    cleanup_socket();
                    if let Ok(m) = Arc::try_unwrap(switch) {
                        m.into_inner().unwrap_or_else(|e| e.into_inner()).shutdown();
                    }
                    return Err(DaemonError::Thread(e));
                }
            };
        tracing::info!(control = %opts.control.display(), "uswitchd ready");
        Ok(Daemon {
            server,
            switch,
            restore_errors,
        })
    }

    /// Items that failed to come up at startup.
    pub fn restore_errors(&self) -> &[String] {
        &self.restore_errors
    }

    /// The model (for tests and diagnostics).
    pub fn switch(&self) -> &Arc<Mutex<Switch>> {
        &self.switch
    }

    /// Stops serving, removes the control socket, stops the backend. Keeps the state file.
    pub fn shutdown(self) {
        let Daemon { server, switch, .. } = self;
        server.stop();
        match Arc::try_unwrap(switch) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()).shutdown(),
            Err(_) => tracing::error!("switch still shared at shutdown; backend not stopped"),
        }
        tracing::info!("uswitchd stopped");
    }
}
