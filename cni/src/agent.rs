//! Starting, finding and stopping `uswitch-agent` for an attachment (opt-in with
//! `"uswitch": {"agent": {"mode": "tap"}}`): the pod then gets a kernel interface from ADD
//! alone, with no sidecar.
//!
//! Rules enforced here:
//! - Validation (mode `tap`, memif only, the binary exists, tapIo/mtu/logLevel values) happens
//!   in [`AgentPlan::resolve`], before ADD's first side effect.
//! - ADD spawns the agent detached (`--setsid`: own session, inherited fds closed; stdin
//!   `/dev/null`, stdout/stderr to its log file; a clean environment with only `PATH`), so it
//!   outlives the plugin and never holds the runtime's pipes or our lock. ADD then waits, bounded
//!   by `readyTimeoutMs`, for the agent's ready file (written once the tap is configured in the
//!   pod and the memif link is up). If the agent exits first or the time runs out, ADD fails
//!   with error 103 quoting the end of the agent's log, after stopping it.
//! - An agent is identified by its command line (`--config <config data path>` and
//!   `--ready-file <ready path>`, both derived from the network config and CNI_* environment),
//!   never by a PID taken from the pod-writable state record: DEL and GC scan `/proc`, so a
//!   forged record cannot make the plugin signal another process, and an agent whose record was
//!   lost is still found. PID and start time in the record are for CHECK and for people.
//! - Stopping is SIGTERM (the agent removes its tap and disconnects), waiting up to
//!   [`STOP_GRACE`], then SIGKILL; a zombie counts as stopped.
use crate::error::{CniError, CniResult, Code};
use crate::netconf::{IfType, Names, NetConf};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Binary looked up in CNI_PATH when `uswitch.agent.path` is not set.
pub const AGENT_BIN: &str = "uswitch-agent";
/// Default wait for the agent's ready file.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping agent gets after SIGTERM (and again after SIGKILL).
pub const STOP_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `uswitch.agent` in the network config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConf {
    /// Only `tap`.
    pub mode: Option<String>,
    /// Agent binary (default: `uswitch-agent` in CNI_PATH).
    pub path: Option<String>,
    /// Agent log file (default `<pod dir>/.agent-<ifname>.log`, removed by DEL).
    pub log_file: Option<String>,
    /// The agent's `--log-level` (default `info`).
    pub log_level: Option<String>,
    /// `auto` (default), `uring` or `rw`: the agent's `--tap-io`.
    pub tap_io: Option<String>,
    /// MTU of the pod interface (default 1500).
    pub mtu: Option<u16>,
    /// How long ADD waits for the agent to be ready (default 10000).
    pub ready_timeout_ms: Option<u64>,
}

/// What ADD runs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    pub bin: PathBuf,
    pub log_file: PathBuf,
    pub ready_file: PathBuf,
    pub log_level: String,
    pub tap_io: String,
    pub mtu: Option<u16>,
    pub ready_timeout: Duration,
}

/// The agent as recorded in the attachment's state record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    pub pid: u32,
    /// `/proc/<pid>/stat` start time (clock ticks since boot): tells PID reuse apart.
    pub start_time: u64,
    pub log_file: PathBuf,
    /// From the agent's ready file: `io_uring` or `read/write`.
    #[serde(default)]
    pub tap_io: String,
}

/// The ready file of an attachment's agent.
pub fn ready_file(names: &Names, ifname: &str) -> PathBuf {
    names.pod_dir.join(format!(".agent-{ifname}.ready"))
}

/// The default log file of an attachment's agent.
pub fn default_log_file(names: &Names, ifname: &str) -> PathBuf {
    names.pod_dir.join(format!(".agent-{ifname}.log"))
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

impl AgentPlan {
    /// `Ok(None)` when the config does not ask for an agent.
    pub fn resolve(
        conf: &NetConf,
        cni_path: &[PathBuf],
        names: &Names,
        ifname: &str,
        iftype: IfType,
    ) -> CniResult<Option<AgentPlan>> {
        let Some(a) = &conf.uswitch.agent else {
            return Ok(None);
        };
        match a.mode.as_deref() {
            Some("tap") => {}
            None | Some("") => return Err(bad("uswitch.agent.mode is required: use \"tap\"")),
            Some(o) => {
                return Err(bad(format!(
                "uswitch.agent.mode {o:?} is unknown: only \"tap\" can be started by the plugin \
                     (passthrough and probe are run by the pod itself)"
            )))
            }
        }
        if iftype != IfType::Memif {
            return Err(bad(
                "uswitch.agent needs host.iftype memif (the agent's tap mode speaks memif only)",
            ));
        }
        let bin = match a.path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let p = PathBuf::from(p);
                if !p.is_absolute() {
                    return Err(bad(format!(
                        "uswitch.agent.path {} must be absolute",
                        p.display()
                    )));
                }
                p
            }
            None => cni_path
                .iter()
                .map(|d| d.join(AGENT_BIN))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    bad(format!(
                        "{AGENT_BIN} not found in CNI_PATH ({}): install it next to uswitch-cni \
                         or set uswitch.agent.path",
                        cni_path
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":")
                    ))
                })?,
        };
        let executable = std::fs::metadata(&bin)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if !executable {
            return Err(bad(format!(
                "uswitch.agent.path {} is not an executable file",
                bin.display()
            )));
        }
        let tap_io = a.tap_io.clone().unwrap_or_else(|| "auto".into());
        if !matches!(tap_io.as_str(), "auto" | "uring" | "rw") {
            return Err(bad(format!(
                "uswitch.agent.tapIo {tap_io:?} is unknown: use auto, uring or rw"
            )));
        }
        if let Some(m) = a.mtu {
            if !(68..=9198).contains(&m) {
                return Err(bad(format!("uswitch.agent.mtu {m} is outside 68..=9198")));
            }
        }
        let log_level = a.log_level.clone().unwrap_or_else(|| "info".into());
        if log_level.is_empty() || log_level.contains(char::is_whitespace) {
            return Err(bad(format!(
                "uswitch.agent.logLevel {log_level:?} is not a log filter"
            )));
        }
        let log_file = match a.log_file.as_deref().filter(|s| !s.is_empty()) {
            Some(f) if Path::new(f).is_absolute() => PathBuf::from(f),
            Some(f) => return Err(bad(format!("uswitch.agent.logFile {f} must be absolute"))),
            None => default_log_file(names, ifname),
        };
        Ok(Some(AgentPlan {
            bin,
            log_file,
            ready_file: ready_file(names, ifname),
            log_level,
            tap_io,
            mtu: a.mtu,
            ready_timeout: a
                .ready_timeout_ms
                .map(|ms| Duration::from_millis(ms.clamp(100, 120_000)))
                .unwrap_or(DEFAULT_READY_TIMEOUT),
        }))
    }

    /// Spawns the agent for `config_data` in `netns` and waits until it is ready.
    pub fn start(&self, config_data: &Path, netns: &str) -> CniResult<AgentRecord> {
        let _ = std::fs::remove_file(&self.ready_file);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log_file)
            .map_err(|e| CniError::io(format!("opening {}", self.log_file.display()), &e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| CniError::io("duplicating the agent log fd", &e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
            )
            .arg("--setsid")
            .arg("--config")
            .arg(config_data)
            .args(["--log-level", &self.log_level]);
        if let Some(m) = self.mtu {
            cmd.args(["--mtu", &m.to_string()]);
        }
        cmd.args(["tap", "--netns", netns, "--tap-io", &self.tap_io])
            .arg("--ready-file")
            .arg(&self.ready_file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let mut child = cmd.spawn().map_err(|e| {
            agent_error(
                format!("cannot start {}", self.bin.display()),
                e.to_string(),
            )
        })?;
        let pid = child.id();
        tracing::info!(pid, bin = %self.bin.display(), log = %self.log_file.display(), "agent started");
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(agent_error(
                    format!("uswitch-agent exited before it was ready ({st})"),
                    log_tail(&self.log_file),
                ));
            }
            if let Some(tap_io) = read_ready(&self.ready_file, pid) {
                let start_time = proc_stat(pid).map(|s| s.start_time).unwrap_or(0);
                tracing::info!(pid, tap_io = %tap_io, "agent ready");
                return Ok(AgentRecord {
                    pid,
                    start_time,
                    log_file: self.log_file.clone(),
                    tap_io,
                });
            }
            if Instant::now() >= deadline {
                let _ = stop_pid(pid, Duration::from_secs(2));
                let _ = child.try_wait();
                return Err(agent_error(
                    format!(
                        "uswitch-agent was not ready within {} ms (tap set up and memif link up)",
                        self.ready_timeout.as_millis()
                    ),
                    log_tail(&self.log_file),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn agent_error(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::with_details(Code::Agent, msg, details)
}

/// The last lines of the agent's log, for error details.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    format!("agent log {}:\n{tail}", path.display())
}

/// `tapIo` of a ready file written by `pid`.
fn read_ready(path: &Path, pid: u32) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if v.get("pid")?.as_u64()? != u64::from(pid) {
        return None;
    }
    Some(v.get("tapIo")?.as_str()?.to_string())
}

/// State letter and start time of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may contain spaces and ')'; split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        // Field 22 of proc(5); field 3 (state) is f[0].
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// True when `argv` is the agent of this attachment.
fn is_agent_of(argv: &[&str], config_data: &str, ready: &str) -> bool {
    let has = |flag: &str, val: &str| argv.windows(2).any(|w| w[0] == flag && w[1] == val);
    argv.contains(&"tap") && has("--config", config_data) && has("--ready-file", ready)
}

/// Live (not zombie) agents of this attachment.
pub fn find(config_data: &Path, ready: &Path) -> Vec<(u32, ProcStat)> {
    let (cfg, rdy) = (config_data.to_string_lossy(), ready.to_string_lossy());
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue; // gone meanwhile
        };
        let text = String::from_utf8_lossy(&raw);
        let argv: Vec<&str> = text.split('\0').filter(|s| !s.is_empty()).collect();
        if !is_agent_of(&argv, &cfg, &rdy) {
            continue;
        }
        if let Some(st) = proc_stat(pid).filter(|s| s.state != 'Z') {
            out.push((pid, st));
        }
    }
    out
}

/// SIGTERM, wait, SIGKILL, wait. Ok when the process is gone (or a zombie).
fn stop_pid(pid: u32, grace: Duration) -> Result<(), String> {
    let Some(st0) = proc_stat(pid) else {
        return Ok(());
    };
    let gone = |deadline: Instant| loop {
        match proc_stat(pid) {
            None => return true,
            Some(s) if s.state == 'Z' || s.start_time != st0.start_time => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    if gone(Instant::now() + grace) {
        return Ok(());
    }
    tracing::warn!(pid, "agent ignored SIGTERM for {grace:?}; SIGKILL");
    let _ = kill(p, Signal::SIGKILL);
    if gone(Instant::now() + grace) {
        Ok(())
    } else {
        Err(format!("process {pid} did not exit after SIGKILL"))
    }
}

/// Stops every agent of this attachment and removes its ready file. Returns how many ran.
pub fn stop_all(config_data: &Path, ready: &Path) -> CniResult<usize> {
    let found = find(config_data, ready);
    for (pid, _) in &found {
        tracing::info!(pid, "stopping agent");
        stop_pid(*pid, STOP_GRACE).map_err(|e| {
            CniError::with_details(
                Code::TryAgainLater,
                "uswitch-agent of this attachment does not stop",
                e,
            )
        })?;
    }
    let _ = std::fs::remove_file(ready);
    Ok(found.len())
}

/// True when the interface `ifname` exists in the network namespace at `netns`.
pub fn link_in_netns(netns: &str, ifname: &str) -> Result<bool, String> {
    let f = std::fs::File::open(netns).map_err(|e| format!("netns {netns}: {e}"))?;
    let ifname = ifname.to_string();
    // A thread of its own: setns changes only the calling thread, and `ip` inherits it.
    std::thread::spawn(move || -> Result<bool, String> {
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        let o = Command::new("ip")
            .args(["-o", "link", "show", "dev", &ifname])
            .output()
            .map_err(|e| format!("running ip: {e}"))?;
        Ok(o.status.success())
    })
    .join()
    .map_err(|_| "netns thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_identity_needs_both_paths() {
        let argv = [
            "/opt/cni/bin/uswitch-agent",
            "--setsid",
            "--config",
            "/run/u/p/configData-p-net1.json",
            "tap",
            "--ready-file",
            "/run/u/p/.agent-net1.ready",
        ];
        assert!(is_agent_of(
            &argv,
            "/run/u/p/configData-p-net1.json",
            "/run/u/p/.agent-net1.ready"
        ));
        assert!(!is_agent_of(
            &argv,
            "/run/u/q/configData-q-net1.json",
            "/run/u/p/.agent-net1.ready"
        ));
        assert!(!is_agent_of(
            &argv[..5],
            "/run/u/p/configData-p-net1.json",
            "x"
        ));
    }

    fn resolve_json(
        agent: serde_json::Value,
        cni_path: &[PathBuf],
    ) -> CniResult<Option<AgentPlan>> {
        let conf = NetConf::parse(
            serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "uswitch-cni",
                "sharedDir": "/run/u", "uswitch": {"agent": agent}})
            .to_string()
            .as_bytes(),
        )?;
        let names = Names::derive(&conf, "pod1", "net1");
        AgentPlan::resolve(&conf, cni_path, &names, "net1", IfType::Memif)
    }

    #[test]
    fn agent_config_is_validated_before_anything_happens() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join(AGENT_BIN);
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = [PathBuf::from("/nonexistent"), d.path().to_path_buf()];
        let p = resolve_json(serde_json::json!({"mode": "tap"}), &path)
            .unwrap()
            .unwrap();
        assert_eq!(p.bin, bin);
        assert_eq!(p.tap_io, "auto");
        assert_eq!(p.log_file, PathBuf::from("/run/u/pod1/.agent-net1.log"));
        assert_eq!(p.ready_file, PathBuf::from("/run/u/pod1/.agent-net1.ready"));
        assert_eq!(p.ready_timeout, DEFAULT_READY_TIMEOUT);
        for (agent, want) in [
            (serde_json::json!({}), "mode is required"),
            (serde_json::json!({"mode": "probe"}), "only \"tap\""),
            (serde_json::json!({"mode": "tap", "tapIo": "fast"}), "tapIo"),
            (serde_json::json!({"mode": "tap", "mtu": 20}), "68..=9198"),
            (
                serde_json::json!({"mode": "tap", "path": "rel/agent"}),
                "absolute",
            ),
            (
                serde_json::json!({"mode": "tap", "path": "/nonexistent/a"}),
                "not an executable",
            ),
            (
                serde_json::json!({"mode": "tap", "logFile": "x.log"}),
                "absolute",
            ),
        ] {
            let e = resolve_json(agent.clone(), &path).unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{agent}: {e:?}");
            assert!(e.msg.contains(want), "{agent}: {}", e.msg);
        }
        let e = resolve_json(serde_json::json!({"mode": "tap"}), &path[..1]).unwrap_err();
        assert!(e.msg.contains("not found in CNI_PATH"), "{}", e.msg);
        // Unknown keys are typos: refused when the config is decoded (error 6).
        let e = resolve_json(serde_json::json!({"mode": "tap", "tapio": "rw"}), &path).unwrap_err();
        assert_eq!(e.code, Code::Decode, "{e:?}");
        // No agent block, no agent; vhost-user cannot have one.
        let conf = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#).unwrap();
        let names = Names::derive(&conf, "pod1", "net1");
        assert_eq!(
            AgentPlan::resolve(&conf, &path, &names, "net1", IfType::Memif).unwrap(),
            None
        );
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"t","uswitch":{"agent":{"mode":"tap"}}}"#,
        )
        .unwrap();
        let e = AgentPlan::resolve(&conf, &path, &names, "net1", IfType::Vhostuser).unwrap_err();
        assert!(e.msg.contains("memif"), "{}", e.msg);
    }

    #[test]
    fn own_stat_parses() {
        let st = proc_stat(std::process::id()).unwrap();
        assert!(st.start_time > 0);
        assert!(matches!(st.state, 'R' | 'S'));
        assert_eq!(proc_stat(u32::MAX), None);
    }
}
