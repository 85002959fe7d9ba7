//! CNI spec types: versions, the ADD result, and conversion between result versions.
//!
//! No maintained crate covers CNI 1.1 (GC, STATUS, `socketPath` in interfaces) with version
//! conversion, so the types are ours. One internal [`CniOutput`] (the 1.1 shape) is parsed from any
//! supported version (0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0) and printed in any of them:
//! - 0.3.x / 0.4.0: each IP carries `"version":"4"|"6"`; interfaces have name/mac/sandbox only;
//! - 1.0.0: no `version` on IPs;
//! - 1.1.0: interfaces may carry `mtu`, `socketPath`, `pciID`; routes `mtu`, `advmss`, `priority`,
//!   `table`, `scope`.
//!
//! Fields a version does not know are dropped when printing to it.
use crate::error::{CniError, CniResult, Code};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest version we speak.
pub const LATEST: &str = "1.1.0";

/// A CNI version number "a.b.c".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    pub const V0_3_0: Version = Version(0, 3, 0);
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.');
        let a = it.next()?.parse().ok()?;
        let b = it.next()?.parse().ok()?;
        let c = match it.next() {
            Some(c) => c.parse().ok()?,
            None => 0,
        };
        if it.next().is_some() {
            return None;
        }
        Some(Version(a, b, c))
    }

    /// The version if we speak it, else error code 1.
    pub fn supported(s: &str) -> CniResult<Version> {
        match Version::parse(s) {
            Some(v) if SUPPORTED_VERSIONS.contains(&v.to_string().as_str()) => Ok(v),
            _ => Err(CniError::with_details(
                Code::IncompatibleVersion,
                format!("cniVersion {s:?} is not supported"),
                format!("supported versions: {}", SUPPORTED_VERSIONS.join(", ")),
            )),
        }
    }

    /// Highest version in `list` that is <= `self`.
    pub fn best_of<'a>(self, list: impl IntoIterator<Item = &'a str>) -> Option<Version> {
        list.into_iter()
            .filter_map(Version::parse)
            .filter(|v| v.cmp(&self) != Ordering::Greater)
            .max()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// 1.1.0+
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0+: the vhost-user / memif socket of a userspace interface.
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    /// 1.1.0+
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// One IP configuration. `version` is only printed for results older than 1.0.0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CIDR, e.g. "10.1.2.3/24".
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// "4" or "6", from the address.
    pub fn family(&self) -> &'static str {
        if self.address.contains(':') {
            "6"
        } else {
            "4"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// 1.1.0+ fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// An ADD result (also `prevResult`), held in the 1.1 shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniOutput {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniOutput {
    /// Parses a result of any supported version (a plugin's stdout or a `prevResult`).
    pub fn parse(v: &serde_json::Value) -> CniResult<CniOutput> {
        let mut out: CniOutput = serde_json::from_value(v.clone()).map_err(|e| {
            CniError::with_details(Code::Decode, "cannot decode CNI result", e.to_string())
        })?;
        if !out.cni_version.is_empty() {
            let ver = Version::parse(&out.cni_version).ok_or_else(|| {
                CniError::new(
                    Code::Decode,
                    format!("result has bad cniVersion {:?}", out.cni_version),
                )
            })?;
            if ver < Version::V0_3_0 {
                return Err(CniError::new(
                    Code::IncompatibleVersion,
                    format!("result version {ver} is older than 0.3.0 and cannot be converted"),
                ));
            }
        }
        for ip in &mut out.ips {
            ip.version = None;
            if let Some(i) = ip.interface {
                if i >= out.interfaces.len() {
                    return Err(CniError::new(
                        Code::Decode,
                        format!(
                            "result IP {} points to interface {i}, which does not exist",
                            ip.address
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The result printed as version `v`.
    pub fn to_version(&self, v: Version) -> serde_json::Value {
        let mut out = self.clone();
        out.cni_version = v.to_string();
        if v < Version::V1_1_0 {
            for i in &mut out.interfaces {
                i.mtu = None;
                i.socket_path = None;
                i.pci_id = None;
            }
            for r in &mut out.routes {
                r.mtu = None;
                r.advmss = None;
                r.priority = None;
                r.table = None;
                r.scope = None;
            }
        }
        for ip in &mut out.ips {
            ip.version = if v < Version::V1_0_0 {
                Some(ip.family().to_string())
            } else {
                None
            };
        }
        serde_json::to_value(&out).unwrap_or(serde_json::Value::Null)
    }
}

/// A GC valid-attachment entry (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// VERSION output.
pub fn version_info(cni_version: &str) -> serde_json::Value {
    serde_json::json!({"cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({"cniVersion":"0.4.0",
            "interfaces":[{"name":"net1","mac":"02:00:00:00:00:01","sandbox":"/var/run/netns/a"}],
            "ips":[{"version":"4","address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0},
                   {"version":"6","address":"fd00::5/64","interface":0}],
            "routes":[{"dst":"0.0.0.0/0"}],
            "dns":{"nameservers":["10.1.0.1"]}})
    }

    #[test]
    fn converts_between_versions() {
        let r = CniOutput::parse(&sample()).unwrap();
        let v1 = r.to_version(Version::V1_0_0);
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert!(v1["ips"][0].get("version").is_none());
        let back = CniOutput::parse(&v1).unwrap();
        let v031 = back.to_version(Version(0, 3, 1));
        assert_eq!(v031["ips"][0]["version"], "4");
        assert_eq!(v031["ips"][1]["version"], "6");
        assert_eq!(v031["dns"]["nameservers"][0], "10.1.0.1");
    }

    #[test]
    fn v11_fields_only_in_v11() {
        let mut r = CniOutput::parse(&sample()).unwrap();
        r.interfaces[0].socket_path = Some("/run/a.sock".into());
        r.routes[0].priority = Some(5);
        assert_eq!(
            r.to_version(Version::V1_1_0)["interfaces"][0]["socketPath"],
            "/run/a.sock"
        );
        assert_eq!(r.to_version(Version::V1_1_0)["routes"][0]["priority"], 5);
        assert!(r.to_version(Version::V1_0_0)["interfaces"][0]
            .get("socketPath")
            .is_none());
        assert!(r.to_version(Version::V1_0_0)["routes"][0]
            .get("priority")
            .is_none());
    }

    #[test]
    fn rejects_bad_results_and_versions() {
        let mut bad = sample();
        bad["ips"][0]["interface"] = json!(3);
        assert_eq!(CniOutput::parse(&bad).unwrap_err().code, Code::Decode);
        assert_eq!(
            CniOutput::parse(&json!({"cniVersion":"0.2.0"}))
                .unwrap_err()
                .code,
            Code::IncompatibleVersion
        );
        assert_eq!(
            Version::supported("0.2.0").unwrap_err().code,
            Code::IncompatibleVersion
        );
        assert_eq!(Version::supported("1.1.0").unwrap(), Version::V1_1_0);
        assert!(Version::supported("x").is_err());
        assert_eq!(
            Version::V1_1_0.best_of(["0.1.0", "0.4.0", "1.0.0"]),
            Some(Version::V1_0_0)
        );
        assert_eq!(Version(0, 3, 1).best_of(["0.4.0", "1.0.0"]), None);
    }
}
