//! The CNI_* environment of one invocation, read once and validated.
//!
//! Rules: `CNI_COMMAND` is always required; `CNI_CONTAINERID` and `CNI_IFNAME` are required for
//! ADD, DEL and CHECK (`CNI_NETNS` for ADD and CHECK); a missing or malformed one is error 4. The
//! container ID must match the spec's `[A-Za-z0-9][A-Za-z0-9_.-]*` (it names a directory, so this
//! also rules out path traversal), the interface name 1-15 bytes without `/`, `:` or whitespace.
//! `CNI_ARGS` is `K=V;K=V`; we read `MAC` and ignore the rest (the spec's IgnoreUnknown is
//! implied: unknown keys are never an error here).
use crate::error::{CniError, CniResult, Code};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(s: &str) -> CniResult<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    format!(
                    "unknown CNI_COMMAND {s:?}: expected ADD, DEL, CHECK, VERSION, GC or STATUS"
                ),
                ))
            }
        })
    }
}

/// The validated environment.
#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    /// `CNI_PATH` split on ':'.
    pub path: Vec<PathBuf>,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
}

impl CniEnv {
    /// Reads the environment for `cmd` through `get` (a closure so tests need not touch the
    /// process environment).
    pub fn read(cmd: Command, get: impl Fn(&str) -> Option<String>) -> CniResult<CniEnv> {
        let needs_ids = matches!(cmd, Command::Add | Command::Del | Command::Check);
        let required = |k: &str| -> CniResult<String> {
            match get(k) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(CniError::new(
                    Code::InvalidEnv,
                    format!("{k} is required for {cmd:?}"),
                )),
            }
        };
        let mut env = CniEnv {
            path: get("CNI_PATH")
                .map(|p| {
                    p.split(':')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            args: parse_args(&get("CNI_ARGS").unwrap_or_default())?,
            ..CniEnv::default()
        };
        if needs_ids {
            env.container_id = required("CNI_CONTAINERID")?;
            validate_container_id(&env.container_id)?;
            env.ifname = required("CNI_IFNAME")?;
            validate_ifname(&env.ifname)?;
        }
        if matches!(cmd, Command::Add | Command::Check) {
            env.netns = required("CNI_NETNS")?;
        } else {
            env.netns = get("CNI_NETNS").unwrap_or_default();
        }
        Ok(env)
    }

    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_args(s: &str) -> CniResult<Vec<(String, String)>> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::new(
                Code::InvalidEnv,
                format!("CNI_ARGS item {kv:?} is not KEY=VALUE"),
            )),
        })
        .collect()
}

/// The spec's container ID rule.
pub fn validate_container_id(id: &str) -> CniResult<()> {
    let mut bytes = id.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidEnv,
            format!("CNI_CONTAINERID {id:?} is invalid: use [A-Za-z0-9][A-Za-z0-9_.-]*"),
        ))
    }
}

/// The spec's interface name rule (a Linux netdev name).
pub fn validate_ifname(name: &str) -> CniResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            Code::InvalidEnv,
            format!("CNI_IFNAME {name:?} is invalid: 1-15 bytes, no '/', ':' or whitespace"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn reads_and_validates() {
        let e = CniEnv::read(
            Command::Add,
            env(&[
                ("CNI_CONTAINERID", "abc123"),
                ("CNI_IFNAME", "net1"),
                ("CNI_NETNS", "/var/run/netns/x"),
                ("CNI_PATH", "/a:/b"),
                ("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:09"),
            ]),
        )
        .unwrap();
        assert_eq!(e.path.len(), 2);
        assert_eq!(e.arg("MAC"), Some("02:00:00:00:00:09"));
        let missing = CniEnv::read(Command::Add, env(&[("CNI_IFNAME", "net1")])).unwrap_err();
        assert_eq!(missing.code, Code::InvalidEnv);
        assert!(CniEnv::read(Command::Gc, env(&[])).is_ok());
        for bad in ["../x", "", "-a", "a/b"] {
            assert!(validate_container_id(bad).is_err(), "{bad}");
        }
        for bad in ["", "a/b", "0123456789abcdef", "a b", ".."] {
            assert!(validate_ifname(bad).is_err(), "{bad}");
        }
        assert!(Command::parse("FOO").is_err());
        assert!(parse_args("novalue").is_err());
    }
}
