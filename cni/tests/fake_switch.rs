//! The plugin binary driven like a runtime drives it, against a fake uswitchd control server and
//! the real host-local IPAM plugin (from /usr/lib/cni).
mod common;
use common::{Env, FakeSwitch};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use uswitch::config::VlanMode;

fn has_host_local() -> bool {
    std::path::Path::new("/usr/lib/cni/host-local").exists()
}

macro_rules! need_plugins {
    () => {
        if !has_host_local() {
            panic!(
                "containernetworking-plugins missing: apt-get install containernetworking-plugins"
            );
        }
    };
}

/// ADD → CHECK → DEL → DEL in every supported version.
#[test]
fn add_check_del_every_version() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let cid = format!("ctr{i}abcdef0123456789");
        let conf = e.conf(v);
        let add = e.run("ADD", &cid, "net1", &conf);
        assert!(add.ok, "{v}: {add:?}");
        let r = add.json();
        assert_eq!(r["cniVersion"], *v);
        assert_eq!(r["interfaces"][0]["name"], "net1");
        assert_eq!(
            r["interfaces"][0]["sandbox"],
            format!("/var/run/netns/{cid}")
        );
        let ip = &r["ips"][0];
        assert!(
            ip["address"].as_str().unwrap().starts_with("10.77.0."),
            "{r}"
        );
        assert_eq!(ip["interface"], 0);
        assert_eq!(ip.get("version").is_some(), v.starts_with("0."), "{v}: {r}");
        let sock = format!(
            "{}/{cid}/memif-{}-net1.sock",
            e.shared.display(),
            &cid[..12]
        );
        assert_eq!(
            r["interfaces"][0]
                .get("socketPath")
                .and_then(|s| s.as_str()),
            (*v == "1.1.0").then_some(sock.as_str())
        );
        assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");

        // uswitchd has the port, on br0, access VLAN 100, server role on our socket.
        // The port name is in our record (long IDs get a hashed tag, see netconf::port_tag).
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(e.shared.join(&cid).join(".uswitch-net1.json")).unwrap(),
        )
        .unwrap();
        let pname = rec["port"].as_str().unwrap().to_string();
        assert!(pname.starts_with(&format!("c-{}", &cid[..6])), "{pname}");
        let p = sw.port(&pname).expect("port created");
        assert_eq!(p.bridge.as_deref(), Some("br0"));
        assert_eq!(p.vlan, VlanMode::Access(100));
        let kind = serde_json::to_value(&p.kind).unwrap();
        assert_eq!(
            (kind["type"].as_str(), kind["socket"].as_str()),
            (Some("memif"), Some(sock.as_str()))
        );
        assert_eq!(kind["role"], "server");

        // Files: pod dir 0700, socket, config data, state record.
        let pod = e.shared.join(&cid);
        assert_eq!(std::fs::metadata(&pod).unwrap().mode() & 0o777, 0o700);
        assert!(std::path::Path::new(&sock).exists());
        let data: serde_json::Value = serde_json::from_slice(
            &std::fs::read(pod.join(format!("configData-{}-net1.json", &cid[..12]))).unwrap(),
        )
        .unwrap();
        assert_eq!(data["containerId"], cid);
        assert_eq!(data["ifName"], "net1");
        assert_eq!(data["config"]["memif"]["role"], "slave");
        assert_eq!(
            data["config"]["memif"]["socketfile"],
            format!("memif-{}-net1.sock", &cid[..12])
        );
        assert_eq!(data["socketPath"], sock);
        assert_eq!(data["role"], "client");
        assert_eq!(data["vlan"], 100);
        assert_eq!(data["ips"][0], ip["address"]);
        assert_eq!(data["mac"], r["interfaces"][0]["mac"]);
        assert!(pod.join(".uswitch-net1.json").exists());

        // CHECK with the result as prevResult.
        let mut chk = conf.clone();
        chk["prevResult"] = r.clone();
        let c = e.run("CHECK", &cid, "net1", &chk);
        if v.starts_with("0.3") {
            assert_eq!(c.code(), 1, "CHECK needs 0.4.0+");
        } else {
            assert!(c.ok, "{v}: {c:?}");
        }

        // DEL twice.
        for _ in 0..2 {
            let d = e.run("DEL", &cid, "net1", &chk);
            assert!(d.ok, "{v}: {d:?}");
            assert!(d.stdout.trim().is_empty());
        }
        assert!(sw.port(&pname).is_none());
        assert!(!pod.exists(), "pod dir removed");
        assert!(
            e.leased_ips().is_empty(),
            "IP released: {:?}",
            e.leased_ips()
        );
    }
}

#[test]
fn version_verb() {
    let e = Env::new();
    let r = e.run_raw("VERSION", "", "", br#"{"cniVersion":"1.0.0"}"#);
    assert!(r.ok);
    let j = r.json();
    assert_eq!(j["cniVersion"], "1.0.0");
    assert_eq!(
        j["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    let r = e.run_raw("VERSION", "", "", b"");
    assert_eq!(r.json()["cniVersion"], "1.1.0");
}

#[test]
fn del_is_idempotent_across_restart_and_absence() {
    need_plugins!();
    let e = Env::new();
    let conf = e.conf("1.0.0");
    let sw = FakeSwitch::start(&e.control);
    // DEL without ADD.
    assert!(e.run("DEL", "neveradded", "net1", &conf).ok);
    let add = e.run("ADD", "restart1", "net1", &conf);
    assert!(add.ok, "{add:?}");
    // uswitchd down: DEL says try again later (11) and removes nothing.
    let _st = sw.stop();
    let d = e.run("DEL", "restart1", "net1", &conf);
    assert_eq!(d.code(), 11, "{d:?}");
    assert_eq!(e.leased_ips().len(), 1);
    assert!(e.shared.join("restart1").exists());
    // uswitchd restarted without its ports: DEL succeeds and cleans everything.
    let _sw2 = FakeSwitch::start(&e.control);
    let d = e.run("DEL", "restart1", "net1", &conf);
    assert!(d.ok, "{d:?}");
    assert!(e.leased_ips().is_empty());
    assert!(e.pod_dirs().is_empty());
}

/// Every bad input: error JSON with the right code, non-zero exit, nothing left behind.
#[test]
fn bad_inputs_leave_nothing() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    let base = e.conf("1.0.0");
    let mut cases: Vec<(&str, Vec<u8>, u64, &str)> =
        vec![("malformed", b"{\"cniVersion\":".to_vec(), 6, "decode")];
    let mut push = |name: &'static str,
                    f: &dyn Fn(&mut serde_json::Value),
                    code: u64,
                    needle: &'static str| {
        let mut c = base.clone();
        f(&mut c);
        cases.push((name, c.to_string().into_bytes(), code, needle));
    };
    push(
        "unknown iftype",
        &|c| c["host"]["iftype"] = json!("tap"),
        7,
        "iftype",
    );
    push(
        "missing bridge",
        &|c| c["host"]["bridge"] = json!({}),
        7,
        "no bridge",
    );
    push(
        "bad vlan",
        &|c| c["host"]["bridge"]["vlanId"] = json!(5000),
        7,
        "vlanId",
    );
    push(
        "vlan not a number",
        &|c| c["host"]["bridge"]["vlanId"] = json!("ten"),
        7,
        "vlanId",
    );
    push(
        "unknown engine",
        &|c| c["host"]["engine"] = json!("snabb"),
        7,
        "engine",
    );
    push(
        "path too long",
        &|c| c["sharedDir"] = json!(format!("/tmp/{}", "x".repeat(100))),
        7,
        "107 bytes",
    );
    push(
        "old version",
        &|c| c["cniVersion"] = json!("0.2.0"),
        1,
        "not supported",
    );
    push(
        "no version",
        &|c| {
            c.as_object_mut()
                .unwrap()
                .remove("cniVersion")
                .map(|_| ())
                .unwrap()
        },
        1,
        "missing",
    );
    push(
        "missing ipam plugin",
        &|c| c["ipam"]["type"] = json!("nope"),
        7,
        "not found",
    );
    push(
        "same roles",
        &|c| c["container"]["memif"]["role"] = json!("master"),
        7,
        "differ",
    );
    push(
        "vhostuser",
        &|c| c["host"]["iftype"] = json!("vhostuser"),
        7,
        "vhostuser",
    );
    push(
        "typo in our block",
        &|c| c["uswitch"]["contorl"] = json!("/x"),
        6,
        "unknown field",
    );
    push(
        "bad prevResult",
        &|c| {
            c["prevResult"] =
                json!({"cniVersion":"1.0.0","ips":[{"address":"1.2.3.4/32","interface":5}]})
        },
        6,
        "interface 5",
    );
    for (name, stdin, code, needle) in &cases {
        let r = e.run_raw("ADD", "badinput", "net1", stdin);
        assert_eq!(r.code(), *code, "{name}: {r:?}");
        assert!(r.stdout.contains(needle), "{name}: {}", r.stdout);
        assert!(e.pod_dirs().is_empty(), "{name}: left {:?}", e.pod_dirs());
        assert!(sw.port_names().is_empty(), "{name}");
        assert!(e.leased_ips().is_empty(), "{name}");
    }
    // Missing / bad environment: code 4.
    let mut c = std::process::Command::new(common::plugin());
    c.env("CNI_COMMAND", "ADD")
        .env("CNI_IFNAME", "net1")
        .env("CNI_NETNS", "/x")
        .env("CNI_CONTAINERID", "../etc");
    let out = c.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["code"], 6, "empty stdin is a decode error first: {j}");
    let r = e.run("ADD", "bad/../id", "net1", &base);
    assert_eq!(r.code(), 4);
    let r = e.run("ADD", "okid", "averyveryverylongname", &base);
    assert_eq!(r.code(), 4);
    let r = e.run_raw("FROB", "okid", "net1", base.to_string().as_bytes());
    assert_eq!(r.code(), 4);
    // uswitchd unreachable on ADD: 11, nothing left.
    drop(sw);
    let r = e.run("ADD", "nodaemon", "net1", &base);
    assert_eq!(r.code(), 11, "{r:?}");
    assert!(e.pod_dirs().is_empty(), "{:?}", e.pod_dirs());
    assert!(e.leased_ips().is_empty());
}

/// A failure after partial steps undoes all of them, including IPAM.
#[test]
fn add_failure_rolls_back() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    // Device-info file in a directory that does not exist: fails after port + IPAM.
    let mut c = e.conf("1.1.0");
    c["runtimeConfig"] = json!({"CNIDeviceInfoFile": e.dir.path().join("no/such/dir/di.json")});
    let r = e.run("ADD", "rollback1", "net1", &c);
    assert_eq!(r.code(), 5, "{r:?}");
    assert!(sw.port_names().is_empty());
    assert!(e.leased_ips().is_empty(), "IPAM released");
    assert!(e.pod_dirs().is_empty());
    // IPAM exhausted: second attachment fails in IPAM after its port was added.
    let mut c = e.conf("1.0.0");
    c["ipam"]["rangeStart"] = json!("10.77.0.10");
    c["ipam"]["rangeEnd"] = json!("10.77.0.10");
    assert!(e.run("ADD", "first", "net1", &c).ok);
    let r = e.run("ADD", "second", "net1", &c);
    assert!(!r.ok);
    assert!(r.stdout.contains("IPAM host-local ADD"), "{}", r.stdout);
    assert_eq!(sw.port_names(), vec!["c-first-net1".to_string()]);
    assert_eq!(e.pod_dirs(), vec!["first".to_string()]);
    // xconnect to a missing port: refused by uswitchd after the port add, rolled back.
    let mut x = e.conf("1.0.0");
    x["host"]["netType"] = json!("interface");
    x["host"]["bridge"] = json!({});
    x["uswitch"]["xconnect"] = json!("nosuchport");
    let r = e.run("ADD", "xc", "net1", &x);
    assert_eq!(r.code(), 100, "{r:?}");
    assert_eq!(sw.port_names(), vec!["c-first-net1".to_string()]);
    assert!(e.run("DEL", "first", "net1", &c).ok);
    assert!(e.pod_dirs().is_empty());
}

#[test]
fn device_info_prev_result_and_mac() {
    need_plugins!();
    let e = Env::new();
    let _sw = FakeSwitch::start(&e.control);
    let di = e.dir.path().join("devinfo.json");
    let mut c = e.conf("1.0.0");
    c["runtimeConfig"] = json!({"CNIDeviceInfoFile": di, "mac": "02:12:34:56:78:9A"});
    c["prevResult"] = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
        "ips":[{"address":"192.168.1.2/24","interface":0}]});
    let r = e.run("ADD", "devinfo", "net1", &c);
    assert!(r.ok, "{r:?}");
    let j = r.json();
    assert_eq!(j["interfaces"].as_array().unwrap().len(), 2);
    assert_eq!(j["interfaces"][1]["mac"], "02:12:34:56:78:9a");
    assert_eq!(j["ips"][0]["address"], "192.168.1.2/24");
    assert_eq!(j["ips"][1]["interface"], 1);
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&di).unwrap()).unwrap();
    assert_eq!(d["type"], "memif");
    assert_eq!(d["version"], "1.1.0");
    assert_eq!(d["memif"]["role"], "slave");
    assert_eq!(d["memif"]["mode"], "ethernet");
    assert!(d["memif"]["path"]
        .as_str()
        .unwrap()
        .ends_with("memif-devinfo-net1.sock"));
    let mut del = c.clone();
    del["prevResult"] = j;
    assert!(e.run("DEL", "devinfo", "net1", &del).ok);
    assert!(!di.exists());
}

#[test]
fn check_reports_precise_errors() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    let c = e.conf("1.0.0");
    let r = e.run("ADD", "chk", "net1", &c).json();
    let mut chk = c.clone();
    chk["prevResult"] = r.clone();
    assert!(e.run("CHECK", "chk", "net1", &chk).ok);
    // Missing prevResult.
    assert_eq!(e.run("CHECK", "chk", "net1", &c).code(), 7);
    // Different VLAN in the config than on the port.
    let mut v = chk.clone();
    v["host"]["bridge"]["vlanId"] = json!(200);
    let out = e.run("CHECK", "chk", "net1", &v);
    assert_eq!(out.code(), 102);
    assert!(out.stdout.contains("VLAN"), "{}", out.stdout);
    // prevResult lacking our address.
    let mut p = chk.clone();
    p["prevResult"]["ips"] = json!([]);
    assert_eq!(e.run("CHECK", "chk", "net1", &p).code(), 102);
    // Unknown attachment.
    assert_eq!(e.run("CHECK", "other", "net1", &chk).code(), 3);
    // Port removed behind our back.
    sw.state.lock().unwrap().ports.clear();
    let out = e.run("CHECK", "chk", "net1", &chk);
    assert_eq!(out.code(), 101, "{out:?}");
    assert!(e.run("DEL", "chk", "net1", &chk).ok);
}

#[test]
fn gc_removes_only_invalid_attachments() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    let c = e.conf("1.1.0");
    for cid in ["keep", "drop1", "drop2"] {
        assert!(e.run("ADD", cid, "net1", &c).ok);
    }
    // Another network on the same shared dir must be left alone.
    let mut other = c.clone();
    other["name"] = json!("othernet");
    other["ipam"]["subnet"] = json!("10.78.0.0/24");
    assert!(e.run("ADD", "othernet1", "net1", &other).ok);
    // An orphan port (no record) under our shared dir.
    let orphan_sock = e.shared.join("orphan").join("memif-orphan-net1.sock");
    std::fs::create_dir_all(orphan_sock.parent().unwrap()).unwrap();
    let orphan =
        json!({"name":"c-orphan-net1","type":"memif","socket":orphan_sock,"role":"server"});
    let resp = uswitch::control::client::call(
        &e.control,
        &uswitch::control::api::Request::PortAdd {
            port: serde_json::from_value(orphan).unwrap(),
        },
        std::time::Duration::from_secs(2),
    );
    assert!(resp.is_ok());
    assert_eq!(e.leased_ips().len(), 4);

    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID":"keep","ifname":"net1"}]);
    let r = e.run("GC", "", "", &gc);
    assert!(r.ok, "{r:?}");
    let mut ports = sw.port_names();
    ports.sort();
    assert_eq!(
        ports,
        vec!["c-keep-net1".to_string(), "c-othernet1-net1".to_string()]
    );
    let mut dirs = e.pod_dirs();
    dirs.sort();
    assert_eq!(dirs, vec!["keep".to_string(), "othernet1".to_string()]);
    assert_eq!(e.leased_ips().len(), 2, "{:?}", e.leased_ips());
    // GC without the list is refused.
    assert_eq!(e.run("GC", "", "", &c).code(), 7);
}

#[test]
fn status_follows_uswitchd() {
    let e = Env::new();
    let c = e.conf("1.1.0");
    let sw = FakeSwitch::start(&e.control);
    let r = e.run("STATUS", "", "", &c);
    assert!(r.ok, "{r:?}");
    drop(sw);
    let r = e.run("STATUS", "", "", &c);
    assert_eq!(r.code(), 50);
    assert!(r.stdout.contains("not reachable"));
}

/// 50 parallel ADD/DEL pairs: no leaked port, socket, directory or IP.
#[test]
fn fifty_parallel_add_del_pairs() {
    need_plugins!();
    let e = std::sync::Arc::new(Env::new());
    let sw = FakeSwitch::start(&e.control);
    let c = e.conf("1.0.0");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let (e, c) = (e.clone(), c.clone());
            std::thread::spawn(move || {
                let cid = format!("par{i:02}");
                let a = e.run("ADD", &cid, "net1", &c);
                assert!(a.ok, "{cid}: {a:?}");
                let mut d = c.clone();
                d["prevResult"] = a.json();
                let r = e.run("DEL", &cid, "net1", &d);
                assert!(r.ok, "{cid}: {r:?}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(sw.port_names().is_empty(), "{:?}", sw.port_names());
    assert!(e.pod_dirs().is_empty(), "{:?}", e.pod_dirs());
    assert!(e.leased_ips().is_empty(), "{:?}", e.leased_ips());
    let adds = sw
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.contains("port_add"))
        .count();
    assert_eq!(adds, 50);
}

/// Owner of the pod directory and socket, short pod dir names, xconnect instead of a bridge.
#[test]
fn owner_pod_dir_name_and_xconnect() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    let mut c = e.conf("1.1.0");
    c["uswitch"]["uid"] = json!(1234);
    c["uswitch"]["gid"] = json!(2345);
    c["uswitch"]["podDirName"] = json!("cid12");
    let cid = "owner0123456789";
    let r = e.run("ADD", cid, "net1", &c);
    assert!(r.ok, "{r:?}");
    let pod = e.shared.join(&cid[..12]);
    let md = std::fs::metadata(&pod).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (1234, 2345, 0o700));
    let sock = r.json()["interfaces"][0]["socketPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sock.starts_with(&pod.to_string_lossy().into_owned()),
        "{sock}"
    );
    let sm = std::fs::metadata(&sock).unwrap();
    assert_eq!((sm.uid(), sm.gid()), (1234, 2345));
    assert!(e.run("DEL", cid, "net1", &c).ok);
    assert!(!pod.exists());

    // netType interface + xconnect to an existing port: no bridge, no VLAN, xconnect made.
    let peer = json!({"name":"uplink","type":"memif","socket":e.dir.path().join("up.sock"),"role":"server"});
    uswitch::control::client::call(
        &e.control,
        &uswitch::control::api::Request::PortAdd {
            port: serde_json::from_value(peer).unwrap(),
        },
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let mut x = e.conf("1.0.0");
    x["host"]["netType"] = json!("interface");
    x["host"]["bridge"] = json!({});
    x["uswitch"]["xconnect"] = json!("uplink");
    let r = e.run("ADD", "xc1", "net1", &x);
    assert!(r.ok, "{r:?}");
    let p = sw.port("c-xc1-net1").unwrap();
    assert_eq!((p.bridge, p.vlan), (None, VlanMode::None));
    assert_eq!(
        sw.state.lock().unwrap().xconnects,
        vec![("c-xc1-net1".to_string(), "uplink".to_string())]
    );
    assert!(e.run("DEL", "xc1", "net1", &x).ok);
    assert!(sw.state.lock().unwrap().xconnects.is_empty());
    assert_eq!(sw.port_names(), vec!["uplink".to_string()]);
}

/// iftype vhostuser (Intel's ovs-dpdk style NetConf): a vhost-user port, device-info, CHECK, DEL.
#[test]
fn vhostuser_attachment() {
    need_plugins!();
    let e = Env::new();
    let sw = FakeSwitch::start(&e.control);
    let di = e.dir.path().join("vh-devinfo.json");
    let mut c = e.conf("1.1.0");
    c["host"] = json!({"engine": "ovs-dpdk", "iftype": "vhostuser", "netType": "bridge",
        "vhost": {"mode": "server"}, "bridge": {"bridgeName": "br0", "vlanId": 7}});
    c["container"] = json!({"engine": "ovs-dpdk", "iftype": "vhostuser", "netType": "interface",
        "vhost": {"mode": "client"}});
    c["runtimeConfig"] = json!({"CNIDeviceInfoFile": di});
    // Same mode on both sides is a config error whatever the engine.
    let mut same = c.clone();
    same["container"]["vhost"]["mode"] = json!("server");
    assert_eq!(e.run("ADD", "vh0", "net1", &same).code(), 7);

    let r = e.run("ADD", "vh1", "net1", &c);
    assert!(r.ok, "{r:?}");
    let j = r.json();
    let sock = j["interfaces"][0]["socketPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sock.ends_with("/vh1/vh1-net1"), "{sock}");
    let p = sw.port("c-vh1-net1").unwrap();
    let kind = serde_json::to_value(&p.kind).unwrap();
    assert_eq!(
        (kind["type"].as_str(), kind["mode"].as_str()),
        (Some("vhost-user"), Some("server"))
    );
    assert_eq!(p.vlan, VlanMode::Access(7));
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&di).unwrap()).unwrap();
    assert_eq!(d["type"], "vhost-user");
    assert_eq!(d["vhost-user"]["mode"], "client");
    assert_eq!(d["vhost-user"]["path"], sock.as_str());
    let mut chk = c.clone();
    chk["prevResult"] = j;
    assert!(e.run("CHECK", "vh1", "net1", &chk).ok);
    assert!(e.run("DEL", "vh1", "net1", &chk).ok);
    assert!(e.pod_dirs().is_empty() && sw.port_names().is_empty() && e.leased_ips().is_empty());
}
