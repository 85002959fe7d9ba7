//! The state file: the switch's desired configuration as it stands after the last successful
//! change, so a restarted `uswitchd` brings back every bridge, port and xconnect.
//!
//! Rules:
//! - Content is a serialized [`SwitchConfig`] (pretty JSON), mode 0600 (it holds memif secrets).
//! - Writes are atomic: a temp file in the same directory is written, fsynced, renamed over the
//!   state file, then the directory is fsynced. A crash leaves the old or the new file, never
//!   a mix; temp files left by a crash are removed on the next open.
//! - One daemon per state file: [`StateFile::open`] takes an exclusive `flock` on
//!   `<state>.lock` and fails if another process holds it.
//! - A state file that exists but cannot be read or parsed is an error ([`StateError::Corrupt`]);
//!   it is never overwritten or deleted here, so the operator can inspect it.
use crate::config::SwitchConfig;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default state file path.
pub const DEFAULT_STATE: &str = "/var/lib/uswitch/state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: cannot create directory {dir}: {source}")]
    Dir {
        path: String,
        dir: String,
        source: std::io::Error,
    },
    #[error("state file {path} is locked by another process (is another uswitchd running?)")]
    Locked { path: String },
    #[error("state file {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(
        "state file {path} is corrupt ({msg}); fix or remove it, uswitchd will not overwrite it"
    )]
    Corrupt { path: String, msg: String },
}

/// An open (locked) state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    dir: PathBuf,
    tmp_prefix: String,
    _lock: Flock<File>,
}

impl StateFile {
    /// Creates the parent directory if needed, takes the lock and removes stale temp files.
    pub fn open(path: &Path) -> Result<StateFile, StateError> {
        let p = path.display().to_string();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StateError::Corrupt {
                path: p.clone(),
                msg: "path has no file name".into(),
            })?
            .to_string();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|source| StateError::Dir {
            path: p.clone(),
            dir: dir.display().to_string(),
            source,
        })?;
        let lock_path = dir.join(format!("{file_name}.lock"));
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StateError::Io {
                path: p.clone(),
                op: "open lock file",
                source,
            })?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StateError::Locked { path: p.clone() })?;
        let tmp_prefix = format!(".{file_name}.tmp.");
        let sf = StateFile {
            path: path.to_path_buf(),
            dir,
            tmp_prefix,
            _lock: lock,
        };
        sf.remove_stale_temps();
        Ok(sf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remove_stale_temps(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&self.tmp_prefix))
            {
                match fs::remove_file(e.path()) {
                    Ok(()) => {
                        tracing::info!(file = %e.path().display(), "removed stale state temp file")
                    }
                    Err(err) => {
                        tracing::warn!(file = %e.path().display(), %err, "cannot remove stale temp file")
                    }
                }
            }
        }
    }

    /// The saved config, or None when there is no state file yet.
    pub fn load(&self) -> Result<Option<SwitchConfig>, StateError> {
        let p = self.path.display().to_string();
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(StateError::Corrupt {
                    path: p,
                    msg: "not UTF-8".into(),
                })
            }
            Err(source) => {
                return Err(StateError::Io {
                    path: p,
                    op: "read",
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: p,
                msg: e.to_string(),
            })
    }

    /// Atomically replaces the state file with `cfg`.
    pub fn save(&self, cfg: &SwitchConfig) -> Result<(), StateError> {
        let p = self.path.display().to_string();
        let io = |op: &'static str| {
            let p = p.clone();
            move |source| StateError::Io {
                path: p,
                op,
                source,
            }
        };
        let mut text = serde_json::to_string_pretty(cfg).map_err(|e| StateError::Io {
            path: p.clone(),
            op: "serialize",
            source: e.into(),
        })?;
        text.push('\n');
        let tmp = self
            .dir
            .join(format!("{}{}", self.tmp_prefix, std::process::id()));
        let res = (|| {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("create temp file"))?;
            f.write_all(text.as_bytes())
                .map_err(io("write temp file"))?;
            f.sync_all().map_err(io("fsync temp file"))?;
            fs::rename(&tmp, &self.path).map_err(io("rename temp file"))?;
            Ok(())
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
            return res;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BridgeConfig, XconnectConfig};

    fn sample() -> SwitchConfig {
        SwitchConfig {
            bridges: vec![BridgeConfig::new("br0")],
            ports: vec![serde_json::from_str(
                r#"{"name":"p0","type":"memif","socket":"/run/a.sock","role":"server","secret":"s3"}"#,
            )
            .unwrap()],
            xconnects: vec![XconnectConfig { a: "x".into(), b: "y".into() }],
            dpdk: None,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_atomic_no_temp_left() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/state.json");
        let sf = StateFile::open(&path).unwrap();
        assert_eq!(sf.load().unwrap(), None);
        sf.save(&sample()).unwrap();
        assert_eq!(sf.load().unwrap(), Some(sample()));
        sf.save(&SwitchConfig::default()).unwrap();
        assert_eq!(sf.load().unwrap(), Some(SwitchConfig::default()));
        assert_eq!(
            names(&d.path().join("sub")),
            vec!["state.json", "state.json.lock"]
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn second_open_is_locked_and_stale_temp_removed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.json");
        fs::write(d.path().join(".state.json.tmp.999"), "partial").unwrap();
        let sf = StateFile::open(&path).unwrap();
        assert!(!d.path().join(".state.json.tmp.999").exists());
        assert!(matches!(
            StateFile::open(&path),
            Err(StateError::Locked { .. })
        ));
        drop(sf);
        StateFile::open(&path).unwrap();
    }

    #[test]
    fn corrupt_file_is_reported_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.json");
        fs::write(&path, "{\"bridges\": [").unwrap();
        let sf = StateFile::open(&path).unwrap();
        let e = sf.load().unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("corrupt"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"bridges\": [");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(sf.load(), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn failed_save_leaves_old_file_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state.json");
        let sf = StateFile::open(&path).unwrap();
        sf.save(&sample()).unwrap();
        // A directory where the temp file would go makes the create fail.
        let tmp = d
            .path()
            .join(format!(".state.json.tmp.{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        assert!(sf.save(&SwitchConfig::default()).is_err());
        fs::remove_dir(&tmp).unwrap();
        assert_eq!(sf.load().unwrap(), Some(sample()));
        assert_eq!(names(d.path()), vec!["state.json", "state.json.lock"]);
    }
}
