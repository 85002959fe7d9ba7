//! The agent with the CNI plugin, both lifecycles, driven by libcni through `cnitool-lite`:
//! - sidecar style (conflist `tests/cni/uswitch-tuning.conflist`): two pods attached by ADD,
//!   the test starts an agent per pod that finds its config data file in the shared dir by
//!   container id and ifname (MAC, IP, routes from the CNI result): ping both ways; SIGTERM the
//!   agents and DEL: no tap, no uswitch port, no socket, no pod directory, no extra uswitchd fd.
//! - started by the plugin (`tests/cni/uswitch-agent.conflist`, `uswitch.agent`): ADD alone
//!   gives each pod its `net1` (the test starts no agent): ping both ways, CHECK (the whole
//!   chain, tuning included), `kill -9 uswitchd` + restart and ping resumes, a killed agent makes
//!   CHECK fail with 103; DEL: agents gone, no tap, no port, no file, no extra fd. An ADD whose
//!   agent cannot start (the interface name is taken in the pod) fails with 103 and the agent's
//!   message, leaving nothing behind.
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
        Self::with_conflist(control, "uswitch-tuning.conflist")
    }

    fn with_conflist(control: &Path, conflist: &str) -> Cni {
        let dir = temp_dir("agcni");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for b in ["uswitch-cni", "uswitch-agent"] {
            std::os::unix::fs::symlink(bin_path(b), bin.join(b)).unwrap();
        }
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
        let text = std::fs::read_to_string(workspace_root().join("tests/cni").join(conflist))
            .unwrap()
            .replace("@SHARED@", &d.join("shared").to_string_lossy())
            .replace("@LOG@", &d.join("cni.log").to_string_lossy())
            .replace("@CONTROL@", &control.to_string_lossy())
            .replace("@LOCK@", &d.join("cni.lock").to_string_lossy())
            .replace("@IPAMDIR@", &d.join("ipam").to_string_lossy());
        let conf = d.join(conflist);
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

    /// Whatever is still in the shared dir.
    fn left_in_shared(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.shared())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    fn run(&self, cmd: &str, ns: &NetNs, cid: &str) -> serde_json::Value {
        let (ok, v, text) = self.try_run(cmd, ns, cid);
        assert!(ok, "{text}");
        v
    }

    /// (success, stdout JSON, output and the end of the plugin log).
    fn try_run(&self, cmd: &str, ns: &NetNs, cid: &str) -> (bool, serde_json::Value, String) {
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
        let text = format!(
            "cnitool {cmd} {cid}: {}\nplugin log:\n{}",
            out_text(&o),
            &log[log.len().saturating_sub(3000)..]
        );
        let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        (o.status.success(), v, text)
    }
}

fn first_ip(result: &serde_json::Value) -> std::net::Ipv4Addr {
    let a = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no IP in {result}"));
    a.split('/').next().unwrap().parse().unwrap()
}

/// The pod's `net1` has the MAC, first address and default route of the CNI result.
fn assert_net1_from_result(ns: &NetNs, res: &serde_json::Value) {
    let ip = first_ip(res).to_string();
    let addr = out_text(&ns.exec(&["ip", "-o", "addr", "show", "dev", "net1"]));
    assert!(addr.contains(&ip), "{ip}: {addr}");
    let mac = res["interfaces"][0]["mac"].as_str().unwrap_or_default();
    let link = out_text(&ns.exec(&["ip", "-o", "link", "show", "dev", "net1"]));
    assert!(!mac.is_empty() && link.contains(mac), "mac {mac}: {link}");
    let route = out_text(&ns.exec(&["ip", "route"]));
    assert!(route.contains("default dev net1"), "{route}");
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
        assert_net1_from_result(&ns, &res);
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
    let left = cni.left_in_shared();
    assert!(left.is_empty(), "left in the shared dir: {left:?}");
    assert!(
        wait_until(LINK, || fd_count(sw.pid()) <= fds_before),
        "uswitchd fds: {} before ADD, {} after DEL",
        fds_before,
        fd_count(sw.pid())
    );
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
}

/// PIDs of live uswitch-agent processes whose command line mentions `needle`.
fn agents_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z');
        if cmd.contains("uswitch-agent") && cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// Kills (by PID) agents the plugin started under `shared` that are still running when the test
/// ends, e.g. after a failed assertion skipped DEL (they are detached, no guard owns them).
struct AgentReaper(String);

impl Drop for AgentReaper {
    fn drop(&mut self) {
        for pid in agents_with(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn ping_n(from: &NetNs, to: std::net::Ipv4Addr, n: u32) -> u32 {
    let o = from.exec(&[
        "ping",
        "-c",
        &n.to_string(),
        "-i",
        "0.2",
        "-W",
        "2",
        &to.to_string(),
    ]);
    agent_common::received(&out_text(&o))
}

#[test]
fn cni_started_agents_ping_check_restart_del() {
    let _l = e2e_lock();
    let swdir = temp_dir("agcnis");
    let mut sw = Uswitchd::start(swdir.path()).unwrap_or_else(|e| panic!("{e}"));
    let cni = Cni::with_conflist(&sw.control, "uswitch-agent.conflist");
    let fds_before = fd_count(sw.pid());
    let shared = cni.shared().to_string_lossy().into_owned();
    let _reaper = AgentReaper(shared.clone());
    let pods = [
        ("0a9e71c0ffee00000000000000000011", "agcnis-a"),
        ("0a9e71c0ffee00000000000000000012", "agcnis-b"),
    ];
    let mut nss = Vec::new();
    let mut ips = Vec::new();
    for (cid, tag) in pods {
        let ns = NetNs::new(tag).unwrap();
        let res = cni.run("add", &ns, cid);
        ips.push(first_ip(&res));
        // Right after ADD, with no agent started by the test: the interface is there.
        assert_net1_from_result(&ns, &res);
        let link = out_text(&ns.exec(&["ip", "-o", "link", "show", "dev", "net1"]));
        assert!(link.contains("mtu 1500"), "{link}");
        nss.push(ns);
    }
    // One detached agent per pod, recorded in the state record, logging to the pod dir.
    let mut pids = Vec::new();
    for (cid, _) in pods {
        let found = agents_with(&format!("{shared}/{cid}/"));
        assert_eq!(found.len(), 1, "agents of {cid}: {found:?}");
        let pid = found[0];
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(cni.shared().join(cid).join(".uswitch-net1.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(rec["agent"]["pid"].as_u64(), Some(u64::from(pid)), "{rec}");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(f[3], pid.to_string(), "agent leads its own session: {stat}");
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(),
            Path::new("/dev/null")
        );
        let log = std::fs::read_to_string(cni.shared().join(cid).join(".agent-net1.log"))
            .unwrap_or_default();
        assert!(log.contains("tap I/O: io_uring"), "{log}");
        pids.push(pid);
    }
    assert!(ping_n(&nss[0], ips[1], 3) >= 2, "a -> b");
    assert!(ping_n(&nss[1], ips[0], 3) >= 2, "b -> a");
    for (i, (cid, _)) in pods.iter().enumerate() {
        cni.run("check", &nss[i], cid);
    }

    // uswitchd crashes and comes back: the plugin-started agents reconnect by themselves.
    sw.kill9();
    sw.restart().unwrap_or_else(|e| panic!("{e}"));
    let resumed = wait_until(Duration::from_secs(20), || ping_n(&nss[0], ips[1], 1) == 1);
    assert!(
        resumed,
        "ping did not resume after the restart\n{}",
        sw.tail()
    );
    assert!(ping_n(&nss[1], ips[0], 3) >= 2, "b -> a after restart");
    assert_eq!(agents_with(&shared).len(), 2, "agents survive the restart");

    // A dead agent: CHECK says so (103).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(LINK, || agents_with(pods[0].0).is_empty()));
    // (libcni shows the plugin's msg and details; the code, 103, is in the plugin log)
    let (ok, _, text) = cni.try_run("check", &nss[0], pods[0].0);
    assert!(!ok, "{text}");
    assert!(
        text.contains("uswitch-agent for container") && text.contains("is not running"),
        "{text}"
    );
    assert!(text.contains("failed error=[103]"), "{text}");

    for (i, (cid, _)) in pods.iter().enumerate() {
        cni.run("del", &nss[i], cid);
        cni.run("del", &nss[i], cid);
        assert!(
            !nss[i]
                .exec(&["ip", "link", "show", "dev", "net1"])
                .status
                .success(),
            "tap left in pod {i}"
        );
    }
    assert!(agents_with(&shared).is_empty(), "agents left");
    for pid in &pids {
        assert!(!alive(*pid), "agent {pid} still runs");
    }
    assert!(sw.show().ports.is_empty(), "ports left");
    let left = cni.left_in_shared();
    assert!(left.is_empty(), "left in the shared dir: {left:?}");
    // uswitchd was restarted in between, so compare with a fresh uswitchd on the same state
    // (the bridge, no ports): DEL left it no extra fd.
    let after_del = fd_count(sw.pid());
    sw.stop();
    sw.restart().unwrap_or_else(|e| panic!("{e}"));
    let fresh = fd_count(sw.pid());
    assert!(
        after_del <= fresh && fresh <= fds_before + 1,
        "uswitchd fds: {fds_before} at start, {after_del} after DEL, {fresh} fresh"
    );
}

#[test]
fn cni_add_fails_cleanly_when_the_agent_cannot_start() {
    let _l = e2e_lock();
    let swdir = temp_dir("agcnif");
    let sw = Uswitchd::start(swdir.path()).unwrap_or_else(|e| panic!("{e}"));
    let cni = Cni::with_conflist(&sw.control, "uswitch-agent.conflist");
    let _reaper = AgentReaper(cni.shared().to_string_lossy().into_owned());
    let ns = NetNs::new("agcnif").unwrap();
    // The pod already has a net1: the agent refuses to take the name.
    let o = ns.exec(&[
        "ip", "link", "add", "net1", "type", "veth", "peer", "name", "other1",
    ]);
    assert!(o.status.success(), "{}", out_text(&o));
    let cid = "0a9e71c0ffee00000000000000000021";
    let (ok, _, text) = cni.try_run("add", &ns, cid);
    assert!(!ok, "{text}");
    assert!(
        text.contains("uswitch-agent exited before it was ready (exit status: 6)")
            && text.contains("an interface with this name already exists"),
        "{text}"
    );
    assert!(text.contains("failed error=[103]"), "{text}");
    assert!(agents_with(cid).is_empty(), "agent left");
    assert!(sw.show().ports.is_empty(), "port left");
    let left = cni.left_in_shared();
    assert!(left.is_empty(), "left in the shared dir: {left:?}");
    // IPAM released: the same address is handed out again.
    let ipam: Vec<_> = std::fs::read_dir(cni.dir.path().join("ipam"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(ipam.is_empty(), "IPAM reservations left: {ipam:?}");
}
