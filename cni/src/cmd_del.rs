//! DEL: removes the port, releases IPAM, removes the attachment's files and the pod directory
//! when it is empty.
//!
//! Rules:
//! - idempotent: DEL twice, DEL without ADD, DEL after uswitchd restarted (port gone) all succeed;
//! - works from derived names (`Names`) so it needs no state and tolerates a config that no
//!   longer resolves (a DEL after a refused ADD must not fail on the same validation);
//! - the state record lives in a directory the pod can write, so it is never trusted for what to
//!   delete: ports and files acted on are derived from the config and CNI_* environment only;
//! - uswitchd unreachable is error 11 before anything is removed, so a retry does the full job;
//!   an IPAM failure is returned after the port is gone and keeps the state record for the retry.
use crate::agent;
use crate::env::CniEnv;
use crate::error::CniResult;
use crate::ipam::Ipam;
use crate::lock::HostLock;
use crate::netconf::{Names, NetConf};
use crate::plan::Plan;
use crate::state;
use crate::switch::Switch;
use crate::types::{CniOutput, Version};
use std::path::PathBuf;

pub fn run(conf: &NetConf, raw: &serde_json::Value, env: &CniEnv) -> CniResult<()> {
    let version = conf.version()?;
    // A prevResult that does not parse is not a reason to keep resources.
    let prev = conf
        .prev_result
        .as_ref()
        .and_then(|p| CniOutput::parse(p).ok());
    let sw = Switch::new(&conf.control(), conf.timeout());
    let _lock = HostLock::acquire(&conf.lock_file(), crate::cmd_add::LOCK_TIMEOUT)?;
    let device_info = conf
        .runtime_config
        .device_info_file
        .clone()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    release(
        conf,
        raw,
        env,
        &env.container_id,
        &env.ifname,
        version,
        prev.as_ref(),
        device_info,
        &sw,
    )
}

/// Removes everything of attachment (`container_id`, `ifname`). Shared by DEL and GC.
#[allow(clippy::too_many_arguments)]
pub fn release(
    conf: &NetConf,
    raw: &serde_json::Value,
    env: &CniEnv,
    container_id: &str,
    ifname: &str,
    version: Version,
    prev: Option<&CniOutput>,
    device_info: Option<PathBuf>,
    sw: &Switch,
) -> CniResult<()> {
    let names = Names::derive(conf, container_id, ifname);
    sw.del_port(&names.port)?;
    tracing::info!(port = %names.port, "port removed (or was absent)");
    // The agent, whether or not this config still asks for one (it may have been edited).
    let ready = agent::ready_file(&names, ifname);
    let stopped = agent::stop_all(&names.config_data, &ready)?;
    if stopped > 0 {
        tracing::info!(agents = stopped, "agent stopped");
    }
    state::remove_file(&agent::default_log_file(&names, ifname))?;
    // The socket file: uswitchd removes it with the port; a stale one (server killed) goes here.
    let attach_env = CniEnv {
        container_id: container_id.into(),
        ifname: ifname.into(),
        ..env.clone()
    };
    let socket = match Plan::resolve(conf, &attach_env) {
        Ok(p) => PathBuf::from(p.socket_path),
        Err(_) => names.pod_dir.join(&names.memif_socket_file),
    };
    if socket.starts_with(&names.pod_dir) {
        state::remove_file(&socket)?;
    }
    if let Some(ipam) = Ipam::new(raw, env, container_id, ifname)? {
        ipam.del(version, prev)?;
    }
    state::remove_file(&names.config_data)?;
    if let Some(di) = device_info {
        state::remove_file(&di)?;
    }
    state::remove_file(&names.state)?;
    state::remove_dir_if_empty(&names.pod_dir);
    Ok(())
}
