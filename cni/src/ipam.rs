//! Delegated IPAM: runs `$CNI_PATH/<ipam.type>` the way a runtime runs a plugin.
//!
//! Rules:
//! - the IPAM plugin gets the same network config on stdin (with `prevResult` converted when
//!   present) and the same CNI_* environment, with CNI_COMMAND / CNI_CONTAINERID / CNI_IFNAME set
//!   for the attachment at hand (GC runs DEL for attachments other than the current one);
//! - version negotiation: an IPAM plugin older than the config (e.g. host-local 1.1.x with a
//!   1.1.0 config) is asked for VERSION and given the highest version it speaks that is not newer
//!   than ours; its result is then converted back by the caller;
//! - a failing IPAM plugin's error code and message are passed through (msg prefixed with the
//!   plugin name); DEL of something the IPAM plugin does not know is its business (host-local
//!   succeeds).
use crate::env::CniEnv;
use crate::error::{CniError, CniResult, Code, ErrorJson};
use crate::types::{CniOutput, Version};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The IPAM plugin of a config and how to run it for one attachment.
pub struct Ipam<'a> {
    ipam_type: String,
    /// The whole network config as received on stdin.
    raw: &'a serde_json::Value,
    env: &'a CniEnv,
    container_id: &'a str,
    ifname: &'a str,
}

impl<'a> Ipam<'a> {
    /// None when the config has no `ipam` block (or an empty `type`).
    pub fn new(
        raw: &'a serde_json::Value,
        env: &'a CniEnv,
        container_id: &'a str,
        ifname: &'a str,
    ) -> CniResult<Option<Self>> {
        let Some(ipam) = raw.get("ipam").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let ty = match ipam.get("type") {
            None => return Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(CniError::config("ipam.type must be a string")),
        };
        if ty.contains('/') || ty == "." || ty == ".." {
            return Err(CniError::config(format!(
                "ipam.type {ty:?} must be a plugin name, not a path"
            )));
        }
        Ok(Some(Ipam {
            ipam_type: ty,
            raw,
            env,
            container_id,
            ifname,
        }))
    }

    pub fn plugin_type(&self) -> &str {
        &self.ipam_type
    }

    fn find(&self) -> CniResult<PathBuf> {
        self.env
            .path
            .iter()
            .map(|d| d.join(&self.ipam_type))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                CniError::with_details(
                    Code::InvalidConfig,
                    format!("IPAM plugin {:?} not found in CNI_PATH", self.ipam_type),
                    format!(
                        "CNI_PATH={}",
                        self.env
                            .path
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":")
                    ),
                )
            })
    }

    fn run(&self, cmd: &str, stdin: &serde_json::Value) -> CniResult<Vec<u8>> {
        let plugin = self.find()?;
        let path = std::env::join_paths(&self.env.path).unwrap_or_default();
        let mut child = Command::new(&plugin)
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_NETNS", &self.env.netns)
            .env("CNI_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CniError::io(format!("starting IPAM plugin {}", plugin.display()), &e))?;
        let body = serde_json::to_vec(stdin).unwrap_or_default();
        if let Some(mut w) = child.stdin.take() {
            // A plugin that exits without reading stdin gives EPIPE; its exit status tells more.
            let _ = w.write_all(&body);
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::io(format!("waiting for IPAM plugin {}", plugin.display()), &e)
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let mut err: CniError = match serde_json::from_slice::<ErrorJson>(&out.stdout) {
            Ok(e) => e.into(),
            Err(_) => CniError::with_details(
                Code::Other(999),
                format!("exited with {}", out.status),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ),
        };
        err.msg = format!("IPAM {} {cmd}: {}", self.ipam_type, err.msg);
        Err(err)
    }

    /// The version to speak with the plugin: ours, or the best it supports below ours.
    fn negotiate(&self, ours: Version) -> Version {
        let q = serde_json::json!({"cniVersion": ours.to_string()});
        let Ok(out) = self.run("VERSION", &q) else {
            return ours;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) else {
            return ours;
        };
        let list: Vec<&str> = v
            .get("supportedVersions")
            .and_then(|l| l.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        ours.best_of(list).unwrap_or(ours)
    }

    /// The stdin for the plugin at version `v`, with `prevResult` converted (or removed).
    fn stdin_for(&self, v: Version, prev: Option<&CniOutput>) -> serde_json::Value {
        let mut conf = self.raw.clone();
        if let Some(obj) = conf.as_object_mut() {
            obj.insert("cniVersion".into(), v.to_string().into());
            match prev {
                Some(p) => {
                    obj.insert("prevResult".into(), p.to_version(v));
                }
                None => {
                    obj.remove("prevResult");
                }
            }
            obj.remove("cni.dev/valid-attachments");
        }
        conf
    }

    /// ADD: allocates addresses. The result is returned in our internal shape.
    pub fn add(&self, ours: Version) -> CniResult<CniOutput> {
        let v = self.negotiate(ours);
        let out = self.run("ADD", &self.stdin_for(v, None))?;
        let value: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::with_details(
                Code::Decode,
                format!("IPAM {} printed an unreadable result", self.ipam_type),
                e.to_string(),
            )
        })?;
        CniOutput::parse(&value)
    }

    /// DEL: releases the attachment's addresses.
    pub fn del(&self, ours: Version, prev: Option<&CniOutput>) -> CniResult<()> {
        let v = self.negotiate(ours);
        self.run("DEL", &self.stdin_for(v, prev)).map(|_| ())
    }

    /// CHECK (only for versions >= 0.4.0 on both sides; skipped otherwise).
    pub fn check(&self, ours: Version, prev: &CniOutput) -> CniResult<()> {
        let v = self.negotiate(ours);
        if v < Version::V0_4_0 {
            return Ok(());
        }
        self.run("CHECK", &self.stdin_for(v, Some(prev)))
            .map(|_| ())
    }

    /// GC (CNI 1.1 plugins only; older ones are released attachment by attachment instead).
    pub fn gc(&self, ours: Version) -> CniResult<()> {
        let v = self.negotiate(ours);
        if v < Version::V1_1_0 {
            return Ok(());
        }
        let mut conf = self.raw.clone();
        if let Some(obj) = conf.as_object_mut() {
            obj.insert("cniVersion".into(), v.to_string().into());
            obj.remove("prevResult");
        }
        self.run("GC", &conf).map(|_| ())
    }
}
