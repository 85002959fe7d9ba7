//! uswitch-cni end to end: the plugin driven by the reference runtime library (libcni, through
//! `cnitool-lite`) with conflists from `tests/cni/`, against a real uswitchd, real network
//! namespaces and DPDK testpmd peers.
//!
//! - chain `uswitch-cni` + `tuning`: ADD for two pods → testpmd attaches to each returned socket
//!   and passes traffic through the bridge from pod A to pod B → CHECK → DEL → DEL again;
//! - Intel's README NetConfs, unchanged (plugin installed as `userspace`, default paths);
//! - GC and STATUS (exec'd directly: libcni 1.1.x has neither), STATUS with uswitchd stopped;
//! - DEL after a uswitchd restart and after a crash (kill -9);
//! - error paths through libcni; 50 parallel ADD/DEL pairs.
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use uswitch_e2e::{bin_path, e2e_lock, temp_dir, workspace_root, NetNs, TestpmdBuilder, Uswitchd};

const LINK: Duration = Duration::from_secs(15);

/// `cnitool-lite` from PATH, else built into the target dir from `../shared/tools/cnitool-lite`.
/// A CNI_PATH with the plugin (as `uswitch-cni` and `userspace`) and the Debian plugins.
struct Cni {
    dir: tempfile::TempDir,
    bin: PathBuf,
    tool: PathBuf,
}

impl Cni {
    fn new(tag: &str) -> Cni {
        let dir = temp_dir(tag);
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let plugin = bin_path("uswitch-cni");
        std::os::unix::fs::symlink(&plugin, bin.join("uswitch-cni")).unwrap();
        std::os::unix::fs::symlink(&plugin, bin.join("userspace")).unwrap();
        for p in ["host-local", "tuning"] {
            let src = Path::new("/usr/lib/cni").join(p);
            assert!(
                src.exists(),
                "{} missing: apt-get install containernetworking-plugins",
                src.display()
            );
            std::os::unix::fs::symlink(src, bin.join(p)).unwrap();
        }
        Cni {
            dir,
            bin,
            tool: uswitch_e2e::cnitool(),
        }
    }

    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }
    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// `tests/cni/<name>` with placeholders filled in, written to the temp dir.
    fn render(&self, name: &str, control: &Path) -> PathBuf {
        let text = std::fs::read_to_string(workspace_root().join("tests/cni").join(name)).unwrap();
        let text = text
            .replace("@SHARED@", &self.shared().to_string_lossy())
            .replace("@LOG@", &self.dir.path().join("cni.log").to_string_lossy())
            .replace("@CONTROL@", &control.to_string_lossy())
            .replace(
                "@LOCK@",
                &self.dir.path().join("cni.lock").to_string_lossy(),
            )
            .replace("@IPAMDIR@", &self.ipam_dir().to_string_lossy());
        let out = self.dir.path().join(name);
        std::fs::write(&out, text).unwrap();
        out
    }

    /// Writes a JSON value as a config file.
    fn write(&self, name: &str, v: &Value) -> PathBuf {
        let out = self.dir.path().join(name);
        std::fs::write(&out, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        out
    }

    /// `cnitool-lite CMD FILE NETNS CID IFNAME`.
    fn tool(&self, cmd: &str, file: &Path, netns: &Path, cid: &str, ifname: &str) -> Output {
        Command::new(&self.tool)
            .args([
                cmd,
                &file.to_string_lossy(),
                &netns.to_string_lossy(),
                cid,
                ifname,
            ])
            .env("CNI_PATH", &self.bin)
            .output()
            .unwrap()
    }

    fn tool_ok(&self, cmd: &str, file: &Path, netns: &Path, cid: &str) -> String {
        let o = self.tool(cmd, file, netns, cid, "net1");
        assert!(
            o.status.success(),
            "cnitool {cmd} {cid}: {}\n{}\nplugin log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The plugin run directly (GC, STATUS): returns (exit ok, stdout JSON or Null).
    fn exec(&self, cmd: &str, conf: &Value) -> (bool, Value) {
        let mut child = Command::new(self.bin.join("uswitch-cni"))
            .env("CNI_COMMAND", cmd)
            .env("CNI_PATH", &self.bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes());
        let out = child.wait_with_output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), v)
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("cni.log")).unwrap_or_default();
        s[s.len().saturating_sub(3000)..].to_string()
    }

    fn leased_ips(&self, dir: &Path) -> Vec<String> {
        let mut v = Vec::new();
        for net in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.parse::<std::net::IpAddr>().is_ok() {
                    v.push(n);
                }
            }
        }
        v
    }

    fn pod_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.shared())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn port_names(sw: &Uswitchd) -> Vec<String> {
    let mut v: Vec<String> = sw
        .show()
        .ports
        .iter()
        .map(|p| p.config.name.clone())
        .collect();
    v.sort();
    v
}

/// The conflist with only its first plugin (same network name, so the same libcni cache).
fn only_first(cni: &Cni, conflist: &Path) -> PathBuf {
    let mut v: Value = serde_json::from_slice(&std::fs::read(conflist).unwrap()).unwrap();
    v["plugins"] = json!([v["plugins"][0].clone()]);
    let name = format!("first-{}", conflist.file_name().unwrap().to_string_lossy());
    cni.write(&name, &v)
}

/// The first element of a conflist's `plugins`, as a standalone config (for direct exec).
fn first_plugin(conflist: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(conflist).unwrap()).unwrap();
    let mut p = v["plugins"][0].clone();
    p["cniVersion"] = json!("1.1.0");
    p["name"] = v["name"].clone();
    p
}

#[test]
fn chain_add_traffic_check_del() {
    let _l = e2e_lock();
    let dir = temp_dir("cnisw");
    let sw = Uswitchd::start(dir.path()).unwrap();
    let cni = Cni::new("cni1");
    let conf = cni.render("uswitch-tuning.conflist", &sw.control);
    let (na, nb) = (NetNs::new("cnia").unwrap(), NetNs::new("cnib").unwrap());
    // IDs sharing their first 12 characters (as cnitool's do): still distinct ports.
    let (ca, cb) = ("cnitool-usw-a1", "cnitool-usw-b2");

    let ra: Value = serde_json::from_str(&cni.tool_ok("add", &conf, &na.path(), ca)).unwrap();
    let rb: Value = serde_json::from_str(&cni.tool_ok("add", &conf, &nb.path(), cb)).unwrap();
    assert_eq!(ra["cniVersion"], "1.0.0");
    assert_eq!(ra["interfaces"][0]["name"], "net1");
    assert_eq!(
        ra["interfaces"][0]["sandbox"],
        na.path().to_string_lossy().as_ref()
    );
    assert!(
        ra["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.99.0."),
        "{ra}"
    );
    assert_ne!(ra["ips"][0]["address"], rb["ips"][0]["address"]);
    // tuning ran in pod A's netns.
    let so = na.exec(&["sysctl", "-n", "net.core.somaxconn"]);
    assert_eq!(
        String::from_utf8_lossy(&so.stdout).trim(),
        "512",
        "tuning applied in the netns"
    );

    // The socket the pod gets, from its config data file.
    let data = |cid: &str| -> Value {
        let f = cni
            .shared()
            .join(cid)
            .join(format!("configData-{}-net1.json", &cid[..12]));
        serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap()
    };
    let (da, db) = (data(ca), data(cb));
    let (sa, sb) = (
        da["socketPath"].as_str().unwrap().to_string(),
        db["socketPath"].as_str().unwrap().to_string(),
    );
    assert!(Path::new(&sa).exists());
    assert_eq!(da["mac"], ra["interfaces"][0]["mac"]);
    // Port names from the plugin's records; uswitchd has exactly these two.
    let record = |cid: &str| -> Value {
        let f = cni.shared().join(cid).join(".uswitch-net1.json");
        serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap()
    };
    let names = vec![
        record(ca)["port"].as_str().unwrap().to_string(),
        record(cb)["port"].as_str().unwrap().to_string(),
    ];
    assert_ne!(names[0], names[1]);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(port_names(&sw), sorted);
    let show = sw.show();
    assert!(show
        .bridges
        .iter()
        .any(|b| b.config.name == "br-cni" && b.ports.len() == 2));
    for p in &show.ports {
        assert_eq!(
            p.config.vlan,
            uswitch::config::VlanMode::Access(100),
            "vlanId honoured"
        );
    }

    // testpmd in "pod A" sends through the bridge to "pod B".
    let (ma, mb) = (
        da["mac"].as_str().unwrap().to_string(),
        db["mac"].as_str().unwrap().to_string(),
    );
    let mut tx = TestpmdBuilder::new("cnitx")
        .memif_client(&sa, &ma)
        .eth_peer(0, &mb)
        .start()
        .unwrap();
    let mut rx = TestpmdBuilder::new("cnirx")
        .memif_client(&sb, &mb)
        .start()
        .unwrap();
    tx.wait_link_up(LINK).unwrap();
    rx.wait_link_up(LINK).unwrap();
    sw.wait_link(&names[0], true, LINK).unwrap();
    sw.wait_link(&names[1], true, LINK).unwrap();
    rx.start_fwd().unwrap();
    let want = 20 * 2 * 32;
    tx.send_paced(20, 2, Duration::from_millis(5)).unwrap();
    let t = tx
        .wait_stats(0, Duration::from_secs(5), |c| c.tx_packets >= want)
        .unwrap();
    let r = rx
        .wait_stats(0, Duration::from_secs(5), |c| c.rx_packets >= want)
        .unwrap();
    eprintln!(
        "pod A testpmd sent {} packets, pod B testpmd received {}",
        t.tx_packets, r.rx_packets
    );
    assert_eq!(t.tx_packets, want);
    assert_eq!(r.rx_packets, want, "every packet crossed the bridge");
    assert_eq!(r.rx_bytes, t.tx_bytes);
    assert_eq!(sw.stats(&names[1]).total.tx_packets, want);
    tx.quit().unwrap();
    rx.quit().unwrap();

    // CHECK: libcni passes the cached chain result as prevResult. tuning's own CHECK looks for
    // a kernel link named net1 in the netns, which a memif attachment does not have (until the
    // pod-side agent of issue 6 provides one), so the chain CHECK fails in tuning; CHECK the
    // same network (same libcni cache) with the uswitch-cni part of the chain.
    let chain_check = cni.tool("check", &conf, &na.path(), ca, "net1");
    assert!(!chain_check.status.success());
    let msg = String::from_utf8_lossy(&chain_check.stderr);
    assert!(
        msg.contains("Cannot find container link net1"),
        "fails in tuning, not in uswitch-cni: {msg}"
    );
    let ours = only_first(&cni, &conf);
    cni.tool_ok("check", &ours, &na.path(), ca);
    cni.tool_ok("check", &ours, &nb.path(), cb);
    // CHECK notices a port removed behind its back.
    sw.ctl_ok(&["port", "del", &names[1]]);
    let o = cni.tool("check", &ours, &nb.path(), cb, "net1");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // DEL (the whole chain), DEL again.
    for _ in 0..2 {
        cni.tool_ok("del", &conf, &na.path(), ca);
        cni.tool_ok("del", &conf, &nb.path(), cb);
    }
    assert!(port_names(&sw).is_empty());
    assert!(cni.pod_dirs().is_empty(), "{:?}", cni.pod_dirs());
    assert!(cni.leased_ips(&cni.ipam_dir()).is_empty());
    assert!(!Path::new(&sa).exists());
}

/// Intel's README NetConfs, byte for byte, with the plugin installed as `userspace`: default
/// control socket, shared dir and host-local data dir.
#[test]
fn intel_readme_netconfs_unchanged() {
    let _l = e2e_lock();
    let control = Path::new(uswitch::control::client::DEFAULT_CONTROL);
    assert!(
        uswitch::control::client::call(
            control,
            &uswitch::control::api::Request::PortList,
            Duration::from_millis(500)
        )
        .is_err(),
        "a uswitchd already serves {}; stop it to run this test",
        control.display()
    );
    let dir = temp_dir("cniintel");
    let sw = Uswitchd::start(dir.path()).unwrap();
    // The NetConfs name no control socket: point the default path at this test's daemon.
    let _link = Symlink::new(&sw.control, control);
    let cni = Cni::new("cniintel");
    let ns = NetNs::new("cniintel").unwrap();
    for (i, name) in ["intel-readme-memif.conf", "intel-readme-memif-ipam2.conf"]
        .iter()
        .enumerate()
    {
        let file = workspace_root().join("tests/cni").join(name);
        let cid = format!("{}{i}", "0123456789abcdef".repeat(4).get(..63).unwrap());
        let out = cni.tool("add", &file, &ns.path(), &cid, "net1");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ip = r["ips"][0]["address"].as_str().unwrap();
        assert!(
            ip.starts_with(if i == 0 { "10.56.217." } else { "192.168.210." }),
            "{r}"
        );
        let port_prefix = format!("c-{}", &cid[..6]);
        let show = uswitch::control::client::call(
            control,
            &uswitch::control::api::Request::PortList,
            Duration::from_secs(2),
        )
        .unwrap();
        let ports: Vec<uswitch::control::api::PortEntry> = serde_json::from_value(show).unwrap();
        let p = ports
            .iter()
            .find(|p| p.config.name.starts_with(&port_prefix) && p.config.name.ends_with("-net1"))
            .expect("port in uswitchd");
        assert_eq!(
            p.config.bridge.as_deref(),
            Some("4"),
            "VPP bridge id 4 mapped to uswitch bridge \"4\""
        );
        // 64-char container ID: the pod directory is the 12-char prefix so the socket fits.
        let pod = Path::new("/var/lib/cni/usrspcni").join(&cid[..12]);
        assert!(pod.join(format!("memif-{}-net1.sock", &cid[..12])).exists());
        assert!(pod
            .join(format!("configData-{}-net1.json", &cid[..12]))
            .exists());
        // 0.3.1 has no CHECK in libcni; DEL twice.
        for _ in 0..2 {
            let d = cni.tool("del", &file, &ns.path(), &cid, "net1");
            assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
        }
        assert!(!pod.exists());
        let leases = cni.leased_ips(Path::new("/var/lib/cni/networks"));
        assert!(!leases.iter().any(|l| l == ip), "{ip} released");
    }
    drop(sw);
}

/// A symlink removed on drop (only if it is still ours).
struct Symlink(PathBuf);

impl Symlink {
    fn new(target: &Path, link: &Path) -> Symlink {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(link).unwrap(); // stale: nothing answered on it (checked above)
        }
        std::os::unix::fs::symlink(target, link).unwrap();
        Symlink(link.to_path_buf())
    }
}

impl Drop for Symlink {
    fn drop(&mut self) {
        if self
            .0
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn gc_status_and_restart() {
    let _l = e2e_lock();
    let dir = temp_dir("cnigc");
    let mut sw = Uswitchd::start(dir.path()).unwrap();
    let cni = Cni::new("cnigc");
    let conf = cni.render("uswitch-tuning.conflist", &sw.control);
    let ns = NetNs::new("cnigc").unwrap();
    for cid in ["gckeep", "gcdrop1", "gcdrop2", "restart1"] {
        cni.tool_ok("add", &conf, &ns.path(), cid);
    }
    let plugin = first_plugin(&conf);
    let (ok, _) = cni.exec("STATUS", &plugin);
    assert!(ok, "STATUS with uswitchd up");

    // GC keeps only the valid attachments.
    let mut gc = plugin.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID":"gckeep","ifname":"net1"}, {"containerID":"restart1","ifname":"net1"}]);
    let (ok, out) = cni.exec("GC", &gc);
    assert!(ok, "GC: {out}\n{}", cni.log_tail());
    assert_eq!(
        port_names(&sw),
        vec!["c-gckeep-net1".to_string(), "c-restart1-net1".to_string()]
    );
    let mut dirs = cni.pod_dirs();
    dirs.sort();
    assert_eq!(dirs, vec!["gckeep".to_string(), "restart1".to_string()]);
    assert_eq!(cni.leased_ips(&cni.ipam_dir()).len(), 2);

    // DEL after a clean restart (ports restored from uswitchd's state file) and after a crash.
    sw.stop();
    sw.restart().unwrap();
    assert_eq!(port_names(&sw).len(), 2, "uswitchd restored the ports");
    cni.tool_ok("del", &conf, &ns.path(), "restart1");
    sw.kill9();
    sw.restart().unwrap();
    cni.tool_ok("del", &conf, &ns.path(), "gckeep");
    cni.tool_ok("del", &conf, &ns.path(), "gckeep");
    assert!(port_names(&sw).is_empty());
    assert!(cni.pod_dirs().is_empty());
    assert!(cni.leased_ips(&cni.ipam_dir()).is_empty());

    // STATUS with uswitchd stopped: error 50.
    sw.stop();
    let (ok, err) = cni.exec("STATUS", &plugin);
    assert!(!ok);
    assert_eq!(err["code"], 50, "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("not reachable"),
        "{err}"
    );
}

/// A change applied to a good conflist.
type Edit = Box<dyn Fn(&mut Value)>;

/// Bad configs through libcni: the runtime sees the failure and the plugin's message; nothing
/// is left behind.
#[test]
fn error_paths_through_libcni() {
    let _l = e2e_lock();
    let dir = temp_dir("cnierr");
    let sw = Uswitchd::start(dir.path()).unwrap();
    let cni = Cni::new("cnierr");
    let good = cni.render("uswitch-tuning.conflist", &sw.control);
    let base: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    let ns = NetNs::new("cnierr").unwrap();
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "iftype",
            Box::new(|v| v["plugins"][0]["host"]["iftype"] = json!("tap")),
            "iftype \"tap\" is unknown",
        ),
        (
            "bridge",
            Box::new(|v| v["plugins"][0]["host"]["bridge"] = json!({})),
            "no bridge is named",
        ),
        (
            "vlan",
            Box::new(|v| v["plugins"][0]["host"]["bridge"]["vlanId"] = json!(4095)),
            "vlanId 4095 is invalid",
        ),
        (
            "engine",
            Box::new(|v| v["plugins"][0]["host"]["engine"] = json!("snabb")),
            "engine \"snabb\" is not supported",
        ),
        (
            "path",
            Box::new(|v| v["plugins"][0]["sharedDir"] = json!(format!("/tmp/{}", "p".repeat(100)))),
            "longer than the 107 bytes",
        ),
    ];
    for (name, edit, needle) in &cases {
        let mut v = base.clone();
        edit(&mut v);
        let f = cni.write(&format!("bad-{name}.conflist"), &v);
        let o = cni.tool("add", &f, &ns.path(), &format!("err{name}"), "net1");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(port_names(&sw).is_empty(), "{name}");
        assert!(cni.pod_dirs().is_empty(), "{name}");
        assert!(cni.leased_ips(&cni.ipam_dir()).is_empty(), "{name}");
    }
    // The error JSON itself (code, msg, details), as libcni received it.
    let mut v = first_plugin(&good);
    v["host"]["bridge"]["vlanId"] = json!(5000);
    let mut child = Command::new(cni.bin.join("uswitch-cni"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "errjson")
        .env("CNI_IFNAME", "net1")
        .env("CNI_NETNS", ns.path())
        .env("CNI_PATH", &cni.bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(v.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["code"], 7);
    assert_eq!(e["cniVersion"], "1.1.0");
    assert!(e["details"].as_str().unwrap().contains("1..=4094"), "{e}");
}

/// 50 parallel ADD/DEL pairs through libcni: no leaked port, socket, directory or IP.
#[test]
fn fifty_parallel_add_del_pairs() {
    let _l = e2e_lock();
    let dir = temp_dir("cnipar");
    let sw = Uswitchd::start(dir.path()).unwrap();
    let cni = std::sync::Arc::new(Cni::new("cnipar"));
    // Only our plugin: tuning would need a netns per pod.
    let conf = std::sync::Arc::new(only_first(
        &cni,
        &cni.render("uswitch-tuning.conflist", &sw.control),
    ));
    let ns = std::sync::Arc::new(NetNs::new("cnipar").unwrap());
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let (cni, conf, ns) = (cni.clone(), conf.clone(), ns.clone());
            std::thread::spawn(move || {
                let cid = format!("par{i:02}");
                cni.tool_ok("add", &conf, &ns.path(), &cid);
                cni.tool_ok("del", &conf, &ns.path(), &cid);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    eprintln!("50 ADD/DEL pairs in {:?}", started.elapsed());
    assert!(port_names(&sw).is_empty(), "{:?}", port_names(&sw));
    assert!(cni.pod_dirs().is_empty(), "{:?}", cni.pod_dirs());
    assert!(cni.leased_ips(&cni.ipam_dir()).is_empty());
    let socks: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
        .collect();
    assert!(socks.len() <= 1, "only the control socket: {socks:?}");
}
