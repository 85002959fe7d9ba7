//! ADD: pod directory, uswitch port (memif server on a bridge or in an xconnect), IPAM, pod
//! config data, device-info, state record; the result in the requested version.
//!
//! Rules:
//! - everything that can be checked is checked before the first side effect (config, versions,
//!   prevResult, IPAM plugin present), so bad input leaves nothing behind;
//! - each step that changes something pushes its undo; any later failure runs the undo list in
//!   reverse (port delete, IPAM DEL, files, the pod directory if this ADD created it);
//! - the whole body runs under the host lock (see `lock.rs`);
//! - a `prevResult` is kept: our interface and IPs are appended to it.
use crate::agent::{self, AgentPlan};
use crate::env::CniEnv;
use crate::error::{CniError, CniResult};
use crate::ipam::Ipam;
use crate::lock::HostLock;
use crate::netconf::{IfType, NetConf};
use crate::plan::{mode_str, Plan};
use crate::state::{self, AttachmentState, PodConfigData};
use crate::switch::{Ensured, Switch};
use crate::types::{CniOutput, Interface, Version};
use std::path::PathBuf;
use std::time::Duration;
use uswitch::config::{
    default_buffer_size, default_queues, default_ring_size, MemifConfig, MemifRole, PortConfig,
    PortKind, VhostUserConfig, VhostUserMode, VlanMode,
};

/// How long to wait for the host lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

enum Undo {
    RemoveDir(PathBuf),
    DelPort(String),
    IpamDel,
    RemoveFile(PathBuf),
    /// Stop the agent of (config data, ready file).
    StopAgent(PathBuf, PathBuf),
}

/// The uswitch port for a plan (memif, or vhost-user with uswitch as the backend).
pub fn port_config(plan: &Plan, conf: &NetConf) -> CniResult<PortConfig> {
    let vlan = plan.vlan.map(VlanMode::Access).unwrap_or_default();
    let queues = conf.uswitch.queues.unwrap_or_else(default_queues);
    let port = match plan.iftype {
        IfType::Memif => PortConfig {
            name: plan.names.port.clone(),
            kind: PortKind::Memif(MemifConfig {
                socket: plan.socket_path.clone(),
                role: plan.role,
                id: 0,
                secret: None,
                queues,
                ring_size: conf.uswitch.ring_size.unwrap_or_else(default_ring_size),
                max_ring_size: conf.uswitch.max_ring_size,
                buffer_size: conf.uswitch.buffer_size.unwrap_or_else(default_buffer_size),
                mode: plan.mode,
            }),
            bridge: plan.bridge.clone(),
            vlan,
        },
        IfType::Vhostuser => PortConfig {
            name: plan.names.port.clone(),
            kind: PortKind::VhostUser(VhostUserConfig {
                socket: plan.socket_path.clone(),
                mode: match plan.role {
                    MemifRole::Server => VhostUserMode::Server,
                    MemifRole::Client => VhostUserMode::Client,
                },
                queues,
            }),
            bridge: plan.bridge.clone(),
            vlan,
        },
    };
    port.validate()
        .map_err(|e| CniError::config(format!("uswitch port: {e}")))?;
    Ok(port)
}

/// The pod's side of the link: Intel's memif words (`slave`/`master`), vhost-user
/// `client`/`server`.
pub fn pod_role(iftype: IfType, role: MemifRole) -> &'static str {
    match (iftype, role) {
        (IfType::Memif, MemifRole::Server) => "slave",
        (IfType::Memif, MemifRole::Client) => "master",
        (IfType::Vhostuser, MemifRole::Server) => "client",
        (IfType::Vhostuser, MemifRole::Client) => "server",
    }
}

pub fn run(conf: &NetConf, raw: &serde_json::Value, env: &CniEnv) -> CniResult<serde_json::Value> {
    let version = conf.version()?;
    let plan = Plan::resolve(conf, env)?;
    let port = port_config(&plan, conf)?;
    let prev = conf
        .prev_result
        .as_ref()
        .map(CniOutput::parse)
        .transpose()?;
    let ipam = Ipam::new(raw, env, &env.container_id, &env.ifname)?;
    if let Some(i) = &ipam {
        if !env.path.iter().any(|d| d.join(i.plugin_type()).is_file()) {
            return Err(CniError::config(format!(
                "IPAM plugin {:?} not found in CNI_PATH",
                i.plugin_type()
            )));
        }
    }
    let agent = AgentPlan::resolve(conf, &env.path, &plan.names, &env.ifname, plan.iftype)?;
    let sw = Switch::new(&conf.control(), conf.timeout());
    let _lock = HostLock::acquire(&conf.lock_file(), LOCK_TIMEOUT)?;
    let mut undo = Vec::new();
    match add_steps(
        conf,
        env,
        version,
        &plan,
        &port,
        prev,
        ipam.as_ref(),
        agent.as_ref(),
        &sw,
        &mut undo,
    ) {
        Ok(v) => Ok(v),
        Err(e) => {
            tracing::warn!(error = %e, "ADD failed, rolling back {} step(s)", undo.len());
            rollback(undo, &sw, ipam.as_ref(), version);
            Err(e)
        }
    }
}

fn rollback(undo: Vec<Undo>, sw: &Switch, ipam: Option<&Ipam>, version: Version) {
    for step in undo.into_iter().rev() {
        let res = match &step {
            Undo::RemoveDir(d) => std::fs::remove_dir_all(d)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| CniError::io(format!("removing {}", d.display()), &e)),
            Undo::DelPort(p) => sw.del_port(p),
            Undo::IpamDel => ipam.map(|i| i.del(version, None)).unwrap_or(Ok(())),
            Undo::RemoveFile(f) => state::remove_file(f),
            Undo::StopAgent(cfg, ready) => agent::stop_all(cfg, ready).map(|_| ()),
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "rollback step failed");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn add_steps(
    conf: &NetConf,
    env: &CniEnv,
    version: Version,
    plan: &Plan,
    port: &PortConfig,
    prev: Option<CniOutput>,
    ipam: Option<&Ipam>,
    agent: Option<&AgentPlan>,
    sw: &Switch,
    undo: &mut Vec<Undo>,
) -> CniResult<serde_json::Value> {
    let owner = conf.uswitch.uid.zip(conf.uswitch.gid);
    if state::create_pod_dir(&plan.names.pod_dir, owner)? {
        undo.push(Undo::RemoveDir(plan.names.pod_dir.clone()));
    }

    // The port. A stale socket file (crashed earlier run, port gone) would block the bind.
    if sw.port(&port.name)?.is_none() && plan.role == MemifRole::Server {
        state::remove_file(plan.socket_path())?;
    }
    if let (Some(b), true) = (&plan.bridge, plan.create_bridge) {
        sw.ensure_bridge(b)?;
    }
    let ensured = sw.ensure_port(port)?;
    undo.push(Undo::DelPort(port.name.clone()));
    tracing::info!(engine = %plan.engine, net_type = %plan.net_type, port = %port.name, socket = %plan.socket_path, bridge = ?plan.bridge, vlan = ?plan.vlan, ?ensured, "port ready");
    if ensured == Ensured::Created && plan.role == MemifRole::Server {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(plan.socket_path(), Some(uid), Some(gid))
                .map_err(|e| CniError::io(format!("chown {}", plan.socket_path), &e))?;
        }
    }
    if let Some(peer) = &plan.xconnect {
        sw.xconnect(&port.name, peer)?;
    }

    // Addresses.
    let ip_out = match ipam {
        Some(i) => {
            undo.push(Undo::IpamDel);
            Some(i.add(version)?)
        }
        None => None,
    };

    // The result: prevResult (if any) plus our interface and addresses.
    let mut result = prev.unwrap_or_default();
    let idx = result.interfaces.len();
    result.interfaces.push(Interface {
        name: env.ifname.clone(),
        mac: plan.mac.clone(),
        sandbox: env.netns.clone(),
        socket_path: Some(plan.socket_path.clone()),
        ..Interface::default()
    });
    let (mut ips, mut routes) = (Vec::new(), Vec::new());
    if let Some(o) = ip_out {
        for mut ip in o.ips {
            ip.interface = Some(idx);
            ips.push(ip);
        }
        routes = o.routes;
        if !o.dns.is_empty() {
            result.dns = o.dns;
        }
    }
    result.ips.extend(ips.iter().cloned());
    result.routes.extend(routes.iter().cloned());
    let out_json = result.to_version(version);

    // Files for the pod and for us.
    let data = PodConfigData {
        container_id: env.container_id.clone(),
        if_name: env.ifname.clone(),
        name: conf.name.clone(),
        config: plan.container.clone(),
        ip_result: result.to_version(Version::V1_0_0),
        iftype: plan.iftype,
        role: if plan.role == MemifRole::Server {
            "client"
        } else {
            "server"
        }
        .into(),
        mode: mode_str(plan.mode).into(),
        socket_path: plan.socket_path.clone(),
        mac: plan.mac.clone(),
        ips: ips.iter().map(|i| i.address.clone()).collect(),
        routes: routes.clone(),
        vlan: plan.vlan,
        bridge: plan.bridge.clone(),
        queues: conf.uswitch.queues.unwrap_or_else(default_queues),
    };
    undo.push(Undo::RemoveFile(plan.names.config_data.clone()));
    state::write_json(&plan.names.config_data, &data, 0o644)?;

    if let Some(path) = &plan.device_info_file {
        undo.push(Undo::RemoveFile(path.clone()));
        let di = state::device_info(
            plan.iftype,
            pod_role(plan.iftype, plan.role),
            &plan.socket_path,
            mode_str(plan.mode),
        );
        state::write_json(path, &di, 0o644)?;
    }

    // The pod side: an agent of an earlier, interrupted ADD holds the tap name, so it goes first.
    let agent_rec = match agent {
        Some(a) => {
            agent::stop_all(&plan.names.config_data, &a.ready_file)?;
            if a.log_file.starts_with(&plan.names.pod_dir) {
                undo.push(Undo::RemoveFile(a.log_file.clone()));
            }
            undo.push(Undo::StopAgent(
                plan.names.config_data.clone(),
                a.ready_file.clone(),
            ));
            Some(a.start(&plan.names.config_data, &env.netns)?)
        }
        None => None,
    };

    let record = AttachmentState {
        network: conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        cni_version: version.to_string(),
        port: port.name.clone(),
        iftype: plan.iftype,
        socket_path: plan.socket_path.clone(),
        bridge: plan.bridge.clone(),
        vlan: plan.vlan,
        xconnect: plan.xconnect.clone(),
        mac: plan.mac.clone(),
        ips,
        routes,
        ipam_type: ipam.map(|i| i.plugin_type().to_string()),
        config_data: plan.names.config_data.clone(),
        device_info: plan.device_info_file.clone(),
        agent: agent_rec,
    };
    undo.push(Undo::RemoveFile(plan.names.state.clone()));
    state::write_json(&plan.names.state, &record, 0o600)?;
    Ok(out_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(uswitch: serde_json::Value, role: &str) -> (NetConf, Plan) {
        let v = json!({"cniVersion":"1.1.0","name":"n","type":"uswitch-cni",
            "host":{"engine":"uswitch","iftype":"memif","netType":"bridge",
                    "memif":{"role":role},"bridge":{"bridgeName":"br0"}},
            "uswitch": uswitch});
        let c = NetConf::parse(v.to_string().as_bytes()).unwrap();
        let env = CniEnv {
            container_id: "0123456789abcdef".into(),
            ifname: "net1".into(),
            netns: "/var/run/netns/t".into(),
            ..CniEnv::default()
        };
        let p = Plan::resolve(&c, &env).unwrap();
        (c, p)
    }

    #[test]
    fn max_ring_size_reaches_server_ports_and_is_refused_for_clients() {
        let (c, p) = conf(json!({"ringSize": 9, "maxRingSize": 8}), "master");
        let PortKind::Memif(m) = port_config(&p, &c).unwrap().kind else {
            panic!("not memif")
        };
        assert_eq!(
            (m.role, m.ring_size, m.max_ring_size),
            (MemifRole::Server, 9, Some(8))
        );
        let (c, p) = conf(json!({}), "master");
        let PortKind::Memif(m) = port_config(&p, &c).unwrap().kind else {
            panic!("not memif")
        };
        assert_eq!(m.max_ring_size, None);
        let (c, p) = conf(json!({"maxRingSize": 8}), "slave");
        let e = port_config(&p, &c).unwrap_err().to_string();
        assert!(e.contains("server-role ports only"), "{e}");
        let (c, p) = conf(json!({"maxRingSize": 20}), "master");
        let e = port_config(&p, &c).unwrap_err().to_string();
        assert!(e.contains("max-ring-size"), "{e}");
    }
}
