//! The agent with the CNI plugin: two pods attached by `uswitch-cni` ADD (driven by libcni
//! through `cnitool-lite`, conflist `tests/cni/uswitch-tuning.conflist`) to one bridge, an agent
//! per pod in tap mode that finds its config data file in the shared dir by container id and
//! ifname (MAC, IP, routes from the CNI result): ping both ways. Then SIGTERM the agents and
//! CNI DEL: no tap, no uswitch port, no socket, no pod directory, no extra uswitchd fd left.
mod agent_common;

use agent_common::{out_text, Agent, LINK};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use uswitch_e2e::{
    bin_path, e2e_lock, fd_count, temp_dir, wait_until, workspace_root, NetNs, Uswitchd,
};

/// `cnitool-lite` from PATH, else built into the target dir from `../shared/tools/cnitool-lite`.
struct Cni {
    dir: tempfile::TempDir,
    bin: PathBuf,
    tool: PathBuf,
    conf: PathBuf,
}

impl Cni {
    fn new(control: &Path) -> Cni {
        let dir = temp_dir("agcni");
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
        let d = dir.path();
        let text =
            std::fs::read_to_string(workspace_root().join("tests/cni/uswitch-tuning.conflist"))
                .unwrap()
                .replace("@SHARED@", &d.join("shared").to_string_lossy())
                .replace("@LOG@", &d.join("cni.log").to_string_lossy())
                .replace("@CONTROL@", &control.to_string_lossy())
                .replace("@LOCK@", &d.join("cni.lock").to_string_lossy())
                .replace("@IPAMDIR@", &d.join("ipam").to_string_lossy());
        let conf = d.join("uswitch-tuning.conflist");
        std::fs::write(&conf, text).unwrap();
        Cni {
            tool: uswitch_e2e::cnitool(),
            dir,
            bin,
            conf,
        }
    }

    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    fn run(&self, cmd: &str, ns: &NetNs, cid: &str) -> serde_json::Value {
        let o = Command::new(&self.tool)
            .args([
                cmd,
                &self.conf.to_string_lossy(),
                &ns.path().to_string_lossy(),
                cid,
                "net1",
            ])
            .env("CNI_PATH", &self.bin)
            .output()
            .unwrap();
        let log = std::fs::read_to_string(self.dir.path().join("cni.log")).unwrap_or_default();
        assert!(
            o.status.success(),
            "cnitool {cmd} {cid}: {}\nplugin log:\n{}",
            out_text(&o),
            &log[log.len().saturating_sub(3000)..]
        );
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }
}

fn first_ip(result: &serde_json::Value) -> std::net::Ipv4Addr {
    let a = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no IP in {result}"));
    a.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn cni_add_agent_tap_ping_then_del_leaves_nothing() {
    let _l = e2e_lock();
    let swdir = temp_dir("agcnisw");
    let sw = Uswitchd::start(swdir.path()).unwrap_or_else(|e| panic!("{e}"));
    let cni = Cni::new(&sw.control);
    let fds_before = fd_count(sw.pid());
    let shared = cni.shared().to_string_lossy().into_owned();

    let pods = [
        ("0a9e71c0ffee00000000000000000001", "agcni-a"),
        ("0a9e71c0ffee00000000000000000002", "agcni-b"),
    ];
    let mut nss = Vec::new();
    let mut ips = Vec::new();
    let mut agents = Vec::new();
    for (cid, tag) in pods {
        let ns = NetNs::new(tag).unwrap();
        let res = cni.run("add", &ns, cid);
        ips.push(first_ip(&res));
        let nspath = ns.path().to_string_lossy().into_owned();
        let mut ag = Agent::spawn(
            tag,
            &[
                "--shared-dir",
                &shared,
                "--container-id",
                cid,
                "--ifname",
                "net1",
                "tap",
                "--netns",
                &nspath,
            ],
        );
        ag.wait_link_up(0);
        // MAC and address come from the CNI result.
        let addr = out_text(&ns.exec(&["ip", "-o", "addr", "show", "dev", "net1"]));
        assert!(addr.contains(&ips.last().unwrap().to_string()), "{addr}");
        let mac = res["interfaces"][0]["mac"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let link = out_text(&ns.exec(&["ip", "-o", "link", "show", "dev", "net1"]));
        assert!(!mac.is_empty() && link.contains(&mac), "mac {mac}: {link}");
        let route = out_text(&ns.exec(&["ip", "route"]));
        assert!(route.contains("default dev net1"), "{route}");
        nss.push(ns);
        agents.push(ag);
    }
    let ping = |from: &NetNs, to: std::net::Ipv4Addr| {
        let o = from.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &to.to_string()]);
        agent_common::received(&out_text(&o))
    };
    assert!(ping(&nss[0], ips[1]) >= 2, "a -> b");
    assert!(ping(&nss[1], ips[0]) >= 2, "b -> a");

    for (i, ag) in agents.iter_mut().enumerate() {
        let st = ag
            .proc
            .terminate(Duration::from_secs(5))
            .expect("agent exited");
        assert!(st.success(), "agent {i}: {st}");
        assert!(
            !nss[i]
                .exec(&["ip", "link", "show", "dev", "net1"])
                .status
                .success(),
            "tap left in pod {i}"
        );
    }
    for (i, (cid, _)) in pods.iter().enumerate() {
        cni.run("del", &nss[i], cid);
        cni.run("del", &nss[i], cid); // idempotent
    }
    assert!(
        sw.show().ports.is_empty(),
        "ports left: {:?}",
        sw.show()
            .ports
            .iter()
            .map(|p| p.config.name.clone())
            .collect::<Vec<_>>()
    );
    let left: Vec<_> = std::fs::read_dir(cni.shared())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the shared dir: {left:?}");
    assert!(
        wait_until(LINK, || fd_count(sw.pid()) <= fds_before),
        "uswitchd fds: {} before ADD, {} after DEL",
        fds_before,
        fd_count(sw.pid())
    );
}
