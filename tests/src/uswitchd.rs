//! A `uswitchd` under test plus `uswitchctl` wrappers.
//!
//! The daemon is the release binary, started with `--core 0`, a state file and a control
//! socket inside a directory the test owns (so tests never touch `/run/uswitch` or
//! `/var/lib/uswitch`). [`Uswitchd::kill9`] + [`Uswitchd::restart`] reuse the same state
//! file, which is how the daemon-restart test works. All control goes through the
//! `uswitchctl` binary (the CLI is part of what is tested); `--json` output is parsed into
//! the API types of `uswitch::control::api`.
use crate::process::ProcGuard;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use uswitch::control::api::{FdbEntry, ShowResult};
use uswitch::port::PortStats;

/// A running uswitchd; killed by PID on drop.
pub struct Uswitchd {
    proc: Option<ProcGuard>,
    /// Directory holding the state file and control socket.
    pub dir: PathBuf,
    pub state: PathBuf,
    pub control: PathBuf,
    extra: Vec<String>,
}

impl Uswitchd {
    /// Starts uswitchd with state and control socket in `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Result<Uswitchd, String> {
        Self::start_with(dir, &[])
    }

    /// Like [`Uswitchd::start`] with extra daemon arguments (e.g. `--config FILE`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Result<Uswitchd, String> {
        let mut d = Uswitchd {
            proc: None,
            dir: dir.to_path_buf(),
            state: dir.join("state.json"),
            control: dir.join("ctl.sock"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.launch()?;
        Ok(d)
    }

    fn launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(crate::bin_path("uswitchd"));
        cmd.arg("--core")
            .arg("0")
            .arg("--state")
            .arg(&self.state)
            .arg("--control")
            .arg(&self.control)
            .arg("--log-level")
            .arg("info")
            .args(&self.extra);
        // Extra daemon arguments for debugging a run, e.g. USWITCHD_ARGS="--log-level trace".
        if let Ok(more) = std::env::var("USWITCHD_ARGS") {
            cmd.args(more.split_whitespace());
        }
        let mut p = ProcGuard::spawn("uswitchd", cmd, false).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = p.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return Err(format!("uswitchd exited at start ({st})\n{}", p.tail(4000)));
            }
            if self.control.exists() && self.ctl(&["show"]).status.success() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "uswitchd did not answer on {} within 20 s\n{}",
                    self.control.display(),
                    p.tail(4000)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(p);
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map(|p| p.pid()).unwrap_or(0)
    }

    /// `kill -9` the daemon (state file and sockets stay behind, as after a crash).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// SIGTERM and wait (clean shutdown); returns whether it exited within 10 s.
    pub fn stop(&mut self) -> bool {
        match self.proc.take() {
            Some(mut p) => {
                p.signal(nix::sys::signal::Signal::SIGTERM);
                let ok = p.wait_timeout(Duration::from_secs(10)).is_some();
                drop(p);
                ok
            }
            None => true,
        }
    }

    /// Starts the daemon again with the same state file and control socket.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill9();
        self.launch()
    }

    /// Daemon output tail for failure messages.
    pub fn tail(&self) -> String {
        self.proc
            .as_ref()
            .map(|p| p.tail(4000))
            .unwrap_or_else(|| "(uswitchd not running)".into())
    }

    /// Runs `uswitchctl --control <sock> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(crate::bin_path("uswitchctl"))
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run uswitchctl: {e}"))
    }

    /// Runs uswitchctl and panics (with its stderr and the daemon's log) unless it succeeds;
    /// returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        if !o.status.success() {
            panic!(
                "uswitchctl {} failed ({}):\nstdout: {}\nstderr: {}\n{}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                self.tail()
            );
        }
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a read command with `--json` appended and parses its stdout.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a: Vec<&str> = args.to_vec();
        a.push("--json");
        let out = self.ctl_ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "uswitchctl {} --json: bad JSON ({e}): {out}",
                args.join(" ")
            )
        })
    }

    /// `show --json`.
    pub fn show(&self) -> ShowResult {
        serde_json::from_value(self.ctl_json(&["show"]))
            .unwrap_or_else(|e| panic!("show --json shape: {e}"))
    }

    /// `stats PORT --json` (the one port's stats).
    pub fn stats(&self, port: &str) -> PortStats {
        let v = self.ctl_json(&["stats", port]);
        let mut all: Vec<PortStats> = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("stats --json shape: {e}: {v}"));
        assert_eq!(all.len(), 1, "stats {port} returned {} entries", all.len());
        all.remove(0)
    }

    /// `stats --json` (all ports).
    pub fn stats_all(&self) -> Vec<PortStats> {
        let v = self.ctl_json(&["stats"]);
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("stats --json shape: {e}: {v}"))
    }

    /// `fdb show BRIDGE --json`.
    pub fn fdb(&self, bridge: &str) -> Vec<FdbEntry> {
        let v = self.ctl_json(&["fdb", "show", bridge]);
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("fdb show --json shape: {e}: {v}"))
    }

    /// Waits until port `name` reports link `up`.
    pub fn wait_link(&self, name: &str, up: bool, timeout: Duration) -> Result<(), String> {
        let ok = crate::wait_until(timeout, || self.stats(name).link_up == up);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "port {name}: link did not become {} within {timeout:?}\n{}",
                if up { "up" } else { "down" },
                self.tail()
            ))
        }
    }

    /// Adds a memif port: `port add NAME memif --socket S --role R` + `extra`.
    pub fn add_memif(&self, name: &str, socket: &Path, role: &str, extra: &[&str]) {
        let sock = socket.to_string_lossy();
        let mut a = vec![
            "port", "add", name, "memif", "--socket", &sock, "--role", role,
        ];
        a.extend_from_slice(extra);
        self.ctl_ok(&a);
    }
}

impl Drop for Uswitchd {
    fn drop(&mut self) {
        self.kill9();
    }
}
