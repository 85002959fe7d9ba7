//! Running `uswitch-cni` through libcni (`cnitool-lite`) with a conflist from `tests/cni/`:
//! a temp dir with a CNI_PATH (`uswitch-cni`, `host-local`, `tuning`), the pod shared dir, the
//! plugin log and the host-local data dir. Placeholders in the conflist: `@SHARED@`, `@LOG@`,
//! `@CONTROL@`, `@LOCK@`, `@IPAMDIR@`.
use crate::{bin_path, temp_dir, workspace_root, NetNs};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct CniRunner {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    tool: PathBuf,
    control: PathBuf,
}

impl CniRunner {
    pub fn new(tag: &str, control: &Path) -> CniRunner {
        let dir = temp_dir(tag);
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(bin_path("uswitch-cni"), bin.join("uswitch-cni")).unwrap();
        for p in ["host-local", "tuning"] {
            let src = Path::new("/usr/lib/cni").join(p);
            assert!(
                src.exists(),
                "{} missing: apt-get install containernetworking-plugins",
                src.display()
            );
            std::os::unix::fs::symlink(src, bin.join(p)).unwrap();
        }
        CniRunner {
            dir,
            bin,
            tool: crate::cnitool(),
            control: control.to_path_buf(),
        }
    }

    pub fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// `tests/cni/<name>` with the placeholders filled in; returns the rendered file.
    pub fn conflist(&self, name: &str) -> PathBuf {
        let d = self.dir.path();
        let text = std::fs::read_to_string(workspace_root().join("tests/cni").join(name))
            .unwrap_or_else(|e| panic!("tests/cni/{name}: {e}"))
            .replace("@SHARED@", &self.shared().to_string_lossy())
            .replace("@LOG@", &d.join("cni.log").to_string_lossy())
            .replace("@CONTROL@", &self.control.to_string_lossy())
            .replace("@LOCK@", &d.join("cni.lock").to_string_lossy())
            .replace("@IPAMDIR@", &d.join("ipam").to_string_lossy());
        let out = d.join(name);
        std::fs::write(&out, text).unwrap();
        out
    }

    /// `cnitool-lite CMD CONF NETNS CID IFNAME`; panics (with the plugin log) on failure.
    pub fn run(
        &self,
        cmd: &str,
        conf: &Path,
        ns: &NetNs,
        cid: &str,
        ifname: &str,
    ) -> serde_json::Value {
        let o = Command::new(&self.tool)
            .args([
                cmd,
                &conf.to_string_lossy(),
                &ns.path().to_string_lossy(),
                cid,
                ifname,
            ])
            .env("CNI_PATH", &self.bin)
            .output()
            .unwrap();
        let log = std::fs::read_to_string(self.dir.path().join("cni.log")).unwrap_or_default();
        assert!(
            o.status.success(),
            "cnitool {cmd} {cid}: {}{}\nplugin log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            &log[log.len().saturating_sub(3000)..]
        );
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The pod config data file the plugin wrote for (cid, ifname).
    pub fn config_data(&self, cid: &str, ifname: &str) -> serde_json::Value {
        let f = self.shared().join(cid).join(format!(
            "configData-{}-{ifname}.json",
            &cid[..12.min(cid.len())]
        ));
        serde_json::from_slice(
            &std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())),
        )
        .unwrap()
    }
}
