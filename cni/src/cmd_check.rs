//! CHECK: verifies that what ADD set up is still there and still matches.
//!
//! Checked, each with a precise error:
//! - cniVersion >= 0.4.0 (error 1) and a `prevResult` (error 7);
//! - our state record exists (error 3: unknown attachment);
//! - uswitchd has the port (error 101), with the same socket, role, bridge and VLAN (error 102);
//! - the server socket file, and the pod config data file exist (error 102);
//! - `prevResult` has our interface (name, sandbox, MAC) and every address we assigned (102);
//! - with `uswitch.agent`: its agent runs (error 103, with the end of its log) and the pod
//!   interface exists in the pod's netns (102);
//! - the IPAM plugin's own CHECK passes (its error passed through).
use crate::agent::{self, AgentPlan};
use crate::env::CniEnv;
use crate::error::{CniError, CniResult, Code};
use crate::ipam::Ipam;
use crate::lock::HostLock;
use crate::netconf::NetConf;
use crate::plan::Plan;
use crate::state;
use crate::switch::Switch;
use crate::types::{CniOutput, Version};
use uswitch::config::MemifRole;

fn mismatch(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::with_details(Code::Mismatch, msg, details)
}

pub fn run(conf: &NetConf, raw: &serde_json::Value, env: &CniEnv) -> CniResult<()> {
    let version = conf.version()?;
    if version < Version::V0_4_0 {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            format!("CHECK needs cniVersion 0.4.0 or newer, got {version}"),
        ));
    }
    let prev = match &conf.prev_result {
        Some(p) => CniOutput::parse(p)?,
        None => return Err(CniError::config("CHECK needs prevResult")),
    };
    let plan = Plan::resolve(conf, env)?;
    let want = crate::cmd_add::port_config(&plan, conf)?;
    let agent_plan = AgentPlan::resolve(conf, &env.path, &plan.names, &env.ifname, plan.iftype)?;
    let sw = Switch::new(&conf.control(), conf.timeout());
    let _lock = HostLock::acquire(&conf.lock_file(), crate::cmd_add::LOCK_TIMEOUT)?;

    let Some(rec) = state::read_state(&plan.names.state)? else {
        return Err(CniError::with_details(
            Code::UnknownContainer,
            format!(
                "no uswitch attachment for container {} interface {}",
                env.container_id, env.ifname
            ),
            format!("{} does not exist", plan.names.state.display()),
        ));
    };

    let Some(have) = sw.port(&want.name)? else {
        return Err(CniError::with_details(
            Code::PortMissing,
            format!("uswitch port {} is missing", want.name),
            format!("uswitchd at {} has no such port", sw.control().display()),
        ));
    };
    if have.config.bridge != want.bridge {
        return Err(mismatch(
            format!(
                "uswitch port {} is on bridge {:?}, expected {:?}",
                want.name, have.config.bridge, want.bridge
            ),
            "bridge differs",
        ));
    }
    if have.config.vlan != want.vlan {
        return Err(mismatch(
            format!(
                "uswitch port {} has VLAN {:?}, expected {:?}",
                want.name, have.config.vlan, want.vlan
            ),
            "vlan differs",
        ));
    }
    if have.config.kind != want.kind {
        return Err(mismatch(
            format!(
                "uswitch port {} has a different memif configuration",
                want.name
            ),
            format!(
                "have {}, expected {}",
                serde_json::to_string(&have.config.kind).unwrap_or_default(),
                serde_json::to_string(&want.kind).unwrap_or_default()
            ),
        ));
    }
    if plan.role == MemifRole::Server && !plan.socket_path().exists() {
        return Err(mismatch(
            format!("socket {} is missing", plan.socket_path),
            "uswitchd should listen there",
        ));
    }
    if !plan.names.config_data.is_file() {
        return Err(mismatch(
            format!(
                "pod config data {} is missing",
                plan.names.config_data.display()
            ),
            "written by ADD",
        ));
    }

    let Some(idx) = prev.interfaces.iter().position(|i| i.name == env.ifname) else {
        return Err(mismatch(
            format!("prevResult has no interface {}", env.ifname),
            "ADD reported it",
        ));
    };
    let intf = &prev.interfaces[idx];
    if !intf.sandbox.is_empty() && intf.sandbox != env.netns {
        return Err(mismatch(
            format!(
                "interface {} is in sandbox {}, CNI_NETNS is {}",
                env.ifname, intf.sandbox, env.netns
            ),
            "sandbox differs",
        ));
    }
    if !intf.mac.is_empty() && !intf.mac.eq_ignore_ascii_case(&rec.mac) {
        return Err(mismatch(
            format!(
                "interface {} MAC {} differs from {}",
                env.ifname, intf.mac, rec.mac
            ),
            "mac differs",
        ));
    }
    for ip in &rec.ips {
        if !prev.ips.iter().any(|p| p.address == ip.address) {
            return Err(mismatch(
                format!(
                    "address {} assigned by ADD is not in prevResult",
                    ip.address
                ),
                "ips differ",
            ));
        }
    }
    if let Some(a) = &agent_plan {
        let found = agent::find(&plan.names.config_data, &a.ready_file);
        if found.is_empty() {
            return Err(CniError::with_details(
                Code::Agent,
                format!(
                    "uswitch-agent for container {} interface {} is not running",
                    env.container_id, env.ifname
                ),
                agent::log_tail(&a.log_file),
            ));
        }
        if let Some(r) = &rec.agent {
            if !found
                .iter()
                .any(|(pid, st)| *pid == r.pid && st.start_time == r.start_time)
            {
                tracing::info!(recorded = r.pid, running = ?found.iter().map(|f| f.0).collect::<Vec<_>>(), "agent was restarted since ADD");
            }
        }
        match agent::link_in_netns(&env.netns, &env.ifname) {
            Ok(true) => {}
            Ok(false) => {
                return Err(mismatch(
                    format!("interface {} is missing in the pod netns", env.ifname),
                    format!("the agent should hold a tap there ({})", env.netns),
                ))
            }
            Err(e) => {
                return Err(mismatch(
                    format!("cannot look at the pod netns {}", env.netns),
                    e,
                ))
            }
        }
    }
    if let Some(ipam) = Ipam::new(raw, env, &env.container_id, &env.ifname)? {
        ipam.check(version, &prev)?;
    }
    Ok(())
}
