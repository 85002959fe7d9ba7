//! CNI errors: the spec's error codes, and the error JSON the plugin prints on stdout.
//!
//! Rules enforced here:
//! - every failure the plugin reports is a [`CniError`] with a spec code (1-11, 50, 51) or one of
//!   ours (100+), a one-line `msg` a user can act on, and `details` with the specifics;
//! - the error JSON is `{"cniVersion","code","msg","details"}` and goes to stdout, the process
//!   exits non-zero (see `main.rs`);
//! - errors from a delegated plugin (IPAM) keep that plugin's code and message.
use serde::{Deserialize, Serialize};
use std::fmt;

/// Error codes. 1-99 are the spec's, 100+ are uswitch-cni's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the config's cniVersion is not one we speak.
    IncompatibleVersion,
    /// 2: a field we do not support was set.
    UnsupportedField,
    /// 3: the container is unknown or does not exist.
    UnknownContainer,
    /// 4: a required CNI_* environment variable is missing or invalid.
    InvalidEnv,
    /// 5: reading or writing a file failed.
    Io,
    /// 6: the config (or a delegated plugin's output) is not valid JSON of the right shape.
    Decode,
    /// 7: the network config is invalid (values, combinations).
    InvalidConfig,
    /// 11: transient failure (uswitchd unreachable, lock timeout); the runtime should retry.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADD now (uswitchd unreachable).
    PluginNotAvailable,
    /// 51: STATUS: limited connectivity.
    LimitedConnectivity,
    /// 100: uswitchd refused a request.
    Switch,
    /// 101: CHECK: the attachment's port is not in uswitchd.
    PortMissing,
    /// 102: CHECK: the attachment differs from what ADD set up (bridge, vlan, files, IPs).
    Mismatch,
    /// 103: the uswitch-agent the config asks for failed to start, or (CHECK) is not running.
    Agent,
    /// Any other code, e.g. one passed through from a delegated IPAM plugin.
    Other(u32),
}

impl Code {
    pub fn as_u32(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::PluginNotAvailable => 50,
            Code::LimitedConnectivity => 51,
            Code::Switch => 100,
            Code::PortMissing => 101,
            Code::Mismatch => 102,
            Code::Agent => 103,
            Code::Other(c) => c,
        }
    }
}

/// A CNI error as the spec defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    pub fn with_details(code: Code, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
    pub fn config(msg: impl Into<String>) -> Self {
        CniError::new(Code::InvalidConfig, msg)
    }
    pub fn io(what: impl fmt::Display, e: &std::io::Error) -> Self {
        CniError::with_details(Code::Io, format!("{what}: {e}"), e.to_string())
    }

    /// The error JSON for stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::to_value(ErrorJson {
            cni_version: cni_version.to_string(),
            code: self.code.as_u32(),
            msg: self.msg.clone(),
            details: self.details.clone(),
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code.as_u32(), self.msg)?;
        if !self.details.is_empty() && self.details != self.msg {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// The spec's error object (also what a delegated plugin prints on failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl From<ErrorJson> for CniError {
    fn from(e: ErrorJson) -> Self {
        let code = match e.code {
            1 => Code::IncompatibleVersion,
            2 => Code::UnsupportedField,
            3 => Code::UnknownContainer,
            4 => Code::InvalidEnv,
            5 => Code::Io,
            6 => Code::Decode,
            7 => Code::InvalidConfig,
            11 => Code::TryAgainLater,
            50 => Code::PluginNotAvailable,
            51 => Code::LimitedConnectivity,
            c => Code::Other(c),
        };
        CniError {
            code,
            msg: e.msg,
            details: e.details,
        }
    }
}

pub type CniResult<T> = Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape() {
        let e = CniError::with_details(
            Code::InvalidConfig,
            "bad vlan",
            "vlanId 5000 not in 1..=4094",
        );
        let j = e.to_json("1.1.0");
        assert_eq!(j["code"], 7);
        assert_eq!(j["cniVersion"], "1.1.0");
        assert_eq!(j["msg"], "bad vlan");
        assert_eq!(j["details"], "vlanId 5000 not in 1..=4094");
        let back: ErrorJson = serde_json::from_value(j).unwrap();
        assert_eq!(CniError::from(back).code, Code::InvalidConfig);
        assert_eq!(
            CniError::from(ErrorJson {
                cni_version: String::new(),
                code: 999,
                msg: "x".into(),
                details: String::new()
            })
            .code
            .as_u32(),
            999
        );
    }
}
