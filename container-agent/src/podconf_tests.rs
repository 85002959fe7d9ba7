//! Tests of pod config loading: the CNI's file, Intel's file, discovery, overrides, bad input.
use super::*;
use serde_json::json;

fn cni_file(socket: &str) -> serde_json::Value {
    json!({
        "containerId": "0123456789abcdef",
        "ifName": "net1",
        "name": "memif-net",
        "config": {"engine": "uswitch", "iftype": "memif", "netType": "bridge",
                   "memif": {"role": "slave", "mode": "ethernet"}},
        "ipResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "mac": "02:aa:00:00:00:09"}],
                     "ips": [{"address": "10.9.9.9/24", "interface": 0}]},
        "iftype": "memif",
        "role": "client",
        "mode": "ethernet",
        "socketPath": socket,
        "mac": "02:aa:00:00:00:01",
        "ips": ["10.56.217.2/24"],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.56.217.1"}, {"dst": "10.1.0.0/16"}],
        "bridge": "br0"
    })
}

fn write(dir: &Path, rel: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
}

#[test]
fn reads_the_cni_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "0123456789abcdef/configData-0123456789ab-net1.json",
        &cni_file("/run/x.sock"),
    );
    let c = PodConfig::load(&Overrides {
        config: Some(f.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.source, Some(f));
    assert_eq!(c.ifname, "net1");
    assert_eq!(c.iftype, IfType::Memif);
    assert_eq!(c.role, MemifRole::Client);
    assert_eq!(c.socket, "/run/x.sock");
    assert_eq!(c.mac, Some([2, 0xaa, 0, 0, 0, 1]));
    assert_eq!(c.ips, vec![Cidr::parse("10.56.217.2/24").unwrap()]);
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].to_string(), "0.0.0.0/0 via 10.56.217.1");
    assert_eq!(c.routes[1].to_string(), "10.1.0.0/16");
    assert_eq!(c.mtu, DEFAULT_MTU);
    assert_eq!(c.bridge.as_deref(), Some("br0"));
    assert_eq!(c.queues, 1);
}

#[test]
fn queues_from_the_file() {
    let d = tempfile::tempdir().unwrap();
    let load = |q: serde_json::Value| {
        let mut v = cni_file("/run/x.sock");
        v["queues"] = q;
        let f = write(d.path(), "q/configData-q-net1.json", &v);
        PodConfig::load(&Overrides {
            config: Some(f),
            ..Default::default()
        })
    };
    assert_eq!(load(json!(4)).unwrap().queues, 4);
    for bad in [json!(0), json!(17)] {
        let e = load(bad).unwrap_err().to_string();
        assert!(e.contains("queues"), "{e}");
    }
}

#[test]
fn discovers_by_container_id_and_ifname() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "0123456789ab/configData-0123456789ab-net1.json",
        &cni_file("/a.sock"),
    );
    write(
        d.path(),
        "fedcba987654/configData-fedcba987654-net1.json",
        &cni_file("/b.sock"),
    );
    let o = Overrides {
        shared_dir: Some(d.path().into()),
        container_id: Some("0123456789abcdef".into()),
        ifname: Some("net1".into()),
        ..Default::default()
    };
    assert_eq!(PodConfig::load(&o).unwrap().socket, "/a.sock");
    // Without a container id two files match: a clear error.
    let o2 = Overrides {
        container_id: None,
        ..o.clone()
    };
    let e = PodConfig::load(&o2).unwrap_err().to_string();
    assert!(e.contains("2 pod config files"), "{e}");
    // Unknown pod: missing config.
    let o3 = Overrides {
        container_id: Some("999999999999".into()),
        ..o
    };
    let e = PodConfig::load(&o3).unwrap_err();
    assert!(matches!(e, AgentError::MissingConfig(_)), "{e}");
}

#[test]
fn missing_shared_dir_and_file_are_clear() {
    let e = PodConfig::load(&Overrides {
        shared_dir: Some("/nonexistent/uswitch".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("/nonexistent/uswitch"), "{e}");
    let e = PodConfig::load(&Overrides {
        config: Some("/nonexistent/c.json".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn flags_override_and_suffice() {
    let o = Overrides {
        socket: Some("@abstract-sock".into()),
        ifname: Some("eth7".into()),
        mac: Some("02:00:00:00:00:05".into()),
        ips: vec!["192.168.7.2/24".into()],
        routes: vec!["default via 192.168.7.1".into()],
        mtu: Some(9000),
        id: Some(3),
        ..Default::default()
    };
    let c = PodConfig::load(&o).unwrap();
    assert_eq!(c.source, None);
    assert_eq!(c.socket, "@abstract-sock");
    assert!(c.socket_file().is_none());
    assert_eq!(c.routes[0].to_string(), "0.0.0.0/0 via 192.168.7.1");
    assert_eq!((c.mtu, c.id, c.ifname.as_str()), (9000, 3, "eth7"));
}

#[test]
fn intel_only_file_is_understood() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("memif-x.sock"), b"").unwrap();
    let v = json!({
        "containerId": "abc", "ifName": "net2", "name": "n",
        "config": {"iftype": "memif", "memif": {"role": "slave", "mode": "ip", "socketfile": "memif-x.sock"}},
        "ipResult": {"interfaces": [{"name": "net2", "mac": "02:aa:00:00:00:09"}],
                     "ips": [{"address": "10.9.9.9/24"}], "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.9.1"}]}
    });
    let f = write(d.path(), "c.json", &v);
    let c = PodConfig::load(&Overrides {
        config: Some(f),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        c.socket,
        d.path().join("memif-x.sock").display().to_string()
    );
    assert_eq!(c.mode, MemifMode::Ip);
    assert_eq!(c.mac, Some([2, 0xaa, 0, 0, 0, 9]));
    assert_eq!(c.ips[0].to_string(), "10.9.9.9/24");
    assert_eq!(c.routes[0].gw, Some("10.9.9.1".parse().unwrap()));
}

#[test]
fn socket_found_next_to_the_file_when_host_path_is_not_visible() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("memif-p.sock"), b"").unwrap();
    let f = write(
        d.path(),
        "configData-p-net1.json",
        &cni_file("/host/only/memif-p.sock"),
    );
    let c = PodConfig::load(&Overrides {
        config: Some(f),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        c.socket,
        d.path().join("memif-p.sock").display().to_string()
    );
}

#[test]
fn bad_values_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("mac", json!("01:00:00:00:00:00")),
        ("mac", json!("zz")),
        ("ips", json!(["10.0.0.1/33"])),
        ("ips", json!(["nope"])),
        ("role", json!("boss")),
        ("iftype", json!("tun")),
        ("routes", json!([{"dst": "10.0.0.0/8", "gw": "fe80::1"}])),
        ("socketPath", json!("/".repeat(200))),
        ("ifName", json!("this-name-is-far-too-long")),
        ("mtu", json!(20)),
    ];
    for (k, v) in cases {
        let mut f = cni_file("/s.sock");
        f[k] = v.clone();
        let p = write(d.path(), "c.json", &f);
        let e = PodConfig::load(&Overrides {
            config: Some(p),
            ..Default::default()
        })
        .expect_err(&format!("{k}={v} accepted"));
        assert_eq!(e.exit_code(), 3, "{k}: {e}");
    }
    let p = write(d.path(), "c.json", &json!([1, 2]));
    assert!(PodConfig::load(&Overrides {
        config: Some(p),
        ..Default::default()
    })
    .is_err());
}

#[test]
fn parsers() {
    assert_eq!(Cidr::parse("fd00::2/64").unwrap().to_string(), "fd00::2/64");
    assert_eq!(Cidr::parse("10.0.0.1").unwrap().prefix, 32);
    assert!(RouteSpec::parse("10.0.0.0/8 via").is_err());
    assert_eq!(
        RouteSpec::parse("default via fd00::1")
            .unwrap()
            .dst
            .to_string(),
        "::/0"
    );
    assert_eq!(
        fmt_mac(&parse_mac("02-AB-00-00-00-01").unwrap()),
        "02:ab:00:00:00:01"
    );
    let c = PodConfig::load(&Overrides {
        socket: Some("/x".into()),
        ..Default::default()
    })
    .unwrap();
    let m = c.mac_or_derived();
    assert_eq!(m[0], 2);
    assert_eq!(m, c.mac_or_derived());
}
