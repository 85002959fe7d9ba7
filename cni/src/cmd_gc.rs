//! GC: removes attachments of this network that are not in `cni.dev/valid-attachments`.
//!
//! What is swept (under the host lock):
//! 1. state records `<sharedDir>/<pod>/.uswitch-<ifname>.json` of this network (by `name`) whose
//!    (containerID, ifname) is not valid: port, socket, IPAM addresses, files, empty pod dir — the
//!    same release as DEL;
//! 2. uswitch ports named `c-…` whose memif socket lies under this network's sharedDir, that no
//!    valid attachment maps to and that no other network's record claims (leaked by a crash
//!    between port add and state write, or by a lost record);
//! 3. the IPAM plugin's own GC, when it speaks CNI 1.1.
//!
//! A record is untrusted input (the pod can write its directory): its containerID and ifname are
//! validated and must map back to the directory it sits in, else it is skipped with a warning.
//! Without `cni.dev/valid-attachments` GC refuses (error 7) rather than sweep everything.
use crate::cmd_del::release;
use crate::env::{validate_container_id, validate_ifname, CniEnv};
use crate::error::{CniError, CniResult};
use crate::lock::HostLock;
use crate::netconf::{port_name, Names, NetConf};
use crate::state;
use crate::switch::Switch;
use crate::types::Version;
use std::collections::HashSet;
use std::path::Path;

/// What a GC run removed (logged; returned for tests).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub attachments: Vec<(String, String)>,
    pub orphan_ports: Vec<String>,
}

pub fn run(conf: &NetConf, raw: &serde_json::Value, env: &CniEnv) -> CniResult<GcReport> {
    let version = conf.version()?;
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::config("GC needs cni.dev/valid-attachments (an empty list to remove all)")
    })?;
    let valid_pairs: HashSet<(String, String)> = valid
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let valid_ports: HashSet<String> = valid
        .iter()
        .map(|a| port_name(&a.container_id, &a.ifname))
        .collect();
    let sw = Switch::new(&conf.control(), conf.timeout());
    let _lock = HostLock::acquire(&conf.lock_file(), crate::cmd_add::LOCK_TIMEOUT)?;
    let mut report = GcReport::default();
    let shared = conf.shared_dir();

    // 1. Records of this network.
    let mut claimed_elsewhere = HashSet::new();
    for (cid, ifname, network) in records(conf, &shared) {
        if network != conf.name {
            claimed_elsewhere.insert(port_name(&cid, &ifname));
            continue;
        }
        if valid_pairs.contains(&(cid.clone(), ifname.clone())) {
            continue;
        }
        tracing::info!(container = %cid, ifname = %ifname, "GC: releasing stale attachment");
        release(conf, raw, env, &cid, &ifname, version, None, None, &sw)?;
        report.attachments.push((cid, ifname));
    }

    // 2. Orphan ports under our shared dir.
    for p in sw.ports()? {
        let name = &p.config.name;
        // Only ports with a socket are ours (the plugin makes memif and vhost-user ports).
        let Some(socket) = p.config.kind.socket().map(str::to_string) else {
            continue;
        };
        if !name.starts_with("c-") || valid_ports.contains(name) || claimed_elsewhere.contains(name)
        {
            continue;
        }
        if !Path::new(&socket).starts_with(&shared) {
            continue;
        }
        tracing::info!(port = %name, "GC: removing orphan port");
        sw.del_port(name)?;
        let sock = Path::new(&socket);
        if sock.parent().and_then(|d| d.parent()) == Some(shared.as_path()) {
            state::remove_file(sock)?;
            if let Some(dir) = sock.parent() {
                state::remove_dir_if_empty(dir);
            }
        }
        report.orphan_ports.push(name.clone());
    }

    // 3. IPAM plugins that speak 1.1 do their own GC.
    if version >= Version::V1_1_0 {
        if let Some(ipam) = crate::ipam::Ipam::new(raw, env, "", "")? {
            ipam.gc(version)?;
        }
    }
    Ok(report)
}

/// (containerID, ifname, network) of every well-formed record under `shared`.
fn records(conf: &NetConf, shared: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(shared) else {
        return out;
    };
    for dir in dirs.flatten() {
        let dpath = dir.path();
        if !dpath.is_dir() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&dpath) else {
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name().to_string_lossy().into_owned();
            if !fname.starts_with(".uswitch-") || !fname.ends_with(".json") {
                continue;
            }
            let rec = match state::read_state(&f.path()) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "GC: skipping unreadable record");
                    continue;
                }
            };
            let ok = validate_container_id(&rec.container_id).is_ok()
                && validate_ifname(&rec.ifname).is_ok()
                && Names::derive(conf, &rec.container_id, &rec.ifname).state == f.path();
            if !ok {
                tracing::warn!(record = %f.path().display(), "GC: record does not match its location, skipped");
                continue;
            }
            out.push((rec.container_id, rec.ifname, rec.network));
        }
    }
    out
}
