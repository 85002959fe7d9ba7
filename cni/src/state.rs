//! Files of an attachment: the pod directory, our state record, the pod config data file and the
//! Multus device-info file.
//!
//! Rules:
//! - every file is written atomically (write `<name>.tmp-<pid>`, fsync, rename), so a reader (the
//!   pod, a later CHECK/DEL) sees the old or the new content, never a torn one;
//! - the pod directory is `0700`, chowned to `uswitch.uid/gid` when given; the config data file
//!   is `0644` (the pod reads it), the state record `0600`;
//! - removals of files that are already gone succeed (DEL/GC idempotence).
//!
//! Pod config data (`configData-<cid12>-<ifname>.json`) keeps Intel's fields (`containerId`,
//! `ifName`, `name`, `config`, `ipResult`) and adds ours flat at the top level (`iftype`, `role`,
//! `mode`, `socketPath`, `mac`, `ips`, `routes`, `vlan`, `bridge`).
use crate::error::{CniError, CniResult};
use crate::netconf::{IfType, UserSpaceConf};
use crate::types::{IpConfig, Route};
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Our record of one attachment, in the pod directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentState {
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub cni_version: String,
    pub port: String,
    pub iftype: IfType,
    pub socket_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xconnect: Option<String>,
    pub mac: String,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_type: Option<String>,
    pub config_data: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<PathBuf>,
    /// The uswitch-agent ADD started (informational: DEL finds agents by command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::agent::AgentRecord>,
}

/// The pod config data file (Intel's `ConfigurationData` plus our flat fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodConfigData {
    pub container_id: String,
    pub if_name: String,
    pub name: String,
    pub config: UserSpaceConf,
    /// The ADD result (1.0.0 shape, as Intel's `current.Result`).
    pub ip_result: serde_json::Value,
    pub iftype: IfType,
    /// The pod's side: "client" when uswitch is the memif server.
    pub role: String,
    pub mode: String,
    /// Host path of the socket (the same path inside the pod when the shared dir is mounted at
    /// the same place).
    pub socket_path: String,
    pub mac: String,
    /// CIDRs.
    pub ips: Vec<String>,
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Queue pairs of the uswitch port (the pod's DPDK app may open up to this many).
    #[serde(default = "uswitch::config::default_queues")]
    pub queues: u16,
}

/// Writes `bytes` to `path` atomically with permissions `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> CniResult<()> {
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CniError::io(format!("writing {}", path.display()), &e)
    })
}

pub fn write_json<T: Serialize>(path: &Path, v: &T, mode: u32) -> CniResult<()> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    write_atomic(path, &bytes, mode)
}

/// Removes a file; absent is fine.
pub fn remove_file(path: &Path) -> CniResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(format!("removing {}", path.display()), &e)),
    }
}

/// Removes a directory if it is empty; absent or non-empty is fine.
pub fn remove_dir_if_empty(path: &Path) {
    if let Err(e) = std::fs::remove_dir(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::debug!(dir = %path.display(), error = %e, "pod directory kept");
        }
    }
}

/// Creates the pod directory (0700, optional owner). Returns true when this call created it.
pub fn create_pod_dir(dir: &Path, owner: Option<(u32, u32)>) -> CniResult<bool> {
    if let Some(base) = dir.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(base)
            .map_err(|e| CniError::io(format!("creating shared dir {}", base.display()), &e))?;
    }
    let created = match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => false,
        Err(e) => {
            return Err(CniError::io(
                format!("creating pod dir {}", dir.display()),
                &e,
            ))
        }
    };
    // DirBuilder's mode is filtered by the umask; set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| CniError::io(format!("chmod {}", dir.display()), &e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| CniError::io(format!("chown {}", dir.display()), &e))?;
    }
    Ok(created)
}

/// Reads a state record. `Ok(None)` when absent; a corrupt record is an error.
pub fn read_state(path: &Path) -> CniResult<Option<AttachmentState>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CniError::io(format!("reading {}", path.display()), &e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        CniError::with_details(
            crate::error::Code::Decode,
            format!("attachment record {} is corrupt", path.display()),
            e.to_string(),
        )
    })
}

/// Multus device-info (NPWG device-info spec 1.1.0) for a userspace interface.
pub fn device_info(
    iftype: IfType,
    pod_role: &str,
    socket_path: &str,
    mode: &str,
) -> serde_json::Value {
    match iftype {
        IfType::Memif => serde_json::json!({
            "type": "memif", "version": "1.1.0",
            "memif": {"role": pod_role, "path": socket_path, "mode": mode}}),
        IfType::Vhostuser => serde_json::json!({
            "type": "vhost-user", "version": "1.1.0",
            "vhost-user": {"mode": pod_role, "path": socket_path}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_and_dir_modes() {
        let d = tempfile::tempdir().unwrap();
        let pod = d.path().join("shared/abc");
        assert!(create_pod_dir(&pod, None).unwrap());
        assert!(!create_pod_dir(&pod, None).unwrap());
        assert_eq!(std::fs::metadata(&pod).unwrap().mode() & 0o777, 0o700);
        let f = pod.join("x.json");
        write_json(&f, &serde_json::json!({"a":1}), 0o600).unwrap();
        write_json(&f, &serde_json::json!({"a":2}), 0o600).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(
            std::fs::read_dir(&pod).unwrap().count(),
            1,
            "no temp file left"
        );
        remove_file(&f).unwrap();
        remove_file(&f).unwrap();
        remove_dir_if_empty(&pod);
        assert!(!pod.exists());
        assert_eq!(read_state(&d.path().join("none")).unwrap(), None);
    }
}
