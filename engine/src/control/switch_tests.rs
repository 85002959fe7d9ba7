//! Tests of the switch model against the fake backend: validation, rollback, persistence.
use super::*;
use crate::control::fake::{FakeBackend, FakePort};
use crate::port::Port;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn port(name: &str, socket: &str) -> PortConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "type": "memif", "socket": socket, "role": "server"
    }))
    .unwrap()
}

fn bport(name: &str, socket: &str, bridge: &str) -> PortConfig {
    PortConfig {
        bridge: Some(bridge.into()),
        ..port(name, socket)
    }
}

/// A factory that counts constructions (a construction = a socket bound).
fn counting_factory() -> (PortFactory, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let f: PortFactory = Box::new(move |pc: &PortConfig, _| {
        n2.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakePort::new(pc)) as Box<dyn Port>)
    });
    (f, n)
}

fn switch(state: Option<StateFile>) -> (Switch, FakeBackend, Arc<AtomicUsize>) {
    let fake = FakeBackend::new();
    let (f, n) = counting_factory();
    (Switch::new(Box::new(fake.clone()), f, state), fake, n)
}

#[test]
fn validation_rejects_before_creating_anything() {
    let (mut sw, fake, made) = switch(None);
    // Port to a missing bridge: not found, and no port constructed.
    let e = sw.add_port(bport("p0", "/tmp/x0.sock", "br0")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert_eq!(made.load(Ordering::SeqCst), 0);
    // VLAN without bridge.
    let mut p = port("p0", "/tmp/x0.sock");
    p.vlan = VlanMode::Access(10);
    assert_eq!(
        sw.add_port(p).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    // Bad single-item values.
    assert_eq!(
        sw.add_port(port("bad name", "/tmp/x.sock"))
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        sw.add_port(port("p0", "rel.sock")).unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    assert_eq!(made.load(Ordering::SeqCst), 0);

    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    assert_eq!(
        sw.add_bridge(BridgeConfig::new("br0")).unwrap_err().code(),
        ErrorCode::AlreadyExists
    );
    sw.add_port(bport("p0", "/tmp/x0.sock", "br0")).unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 1);
    // Duplicate name; duplicate server socket.
    assert_eq!(
        sw.add_port(port("p0", "/tmp/x9.sock")).unwrap_err().code(),
        ErrorCode::AlreadyExists
    );
    let e = sw.add_port(port("p1", "/tmp/x0.sock")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(e.to_string().contains("already served by port p0"), "{e}");
    assert_eq!(made.load(Ordering::SeqCst), 1);
    // A client on our own server socket (a loop) is fine; two clients need different ids.
    let client = |name: &str, id: u32| {
        let mut c = port(name, "/tmp/x0.sock");
        if let PortKind::Memif(m) = &mut c.kind {
            m.role = crate::config::MemifRole::Client;
            m.id = id;
        }
        c
    };
    sw.add_port(client("c0", 0)).unwrap();
    let e = sw.add_port(client("c1", 0)).unwrap_err();
    assert!(
        e.to_string()
            .contains("id 0 is already used by client port c0"),
        "{e}"
    );
    sw.add_port(client("c1", 1)).unwrap();
    sw.del_port("c0").unwrap();
    sw.del_port("c1").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 3);
    // Bridge with ports is busy.
    let e = sw.del_bridge("br0").unwrap_err();
    assert_eq!(e.code(), ErrorCode::Busy);
    assert!(e.to_string().contains("p0"));
    assert_eq!(
        sw.del_bridge("nope").unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(fake.state().bridge_names(), vec!["br0"]);
}

#[test]
fn xconnect_rules() {
    let (mut sw, fake, _) = switch(None);
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    sw.add_port(bport("b0", "/tmp/b0.sock", "br0")).unwrap();
    sw.add_port(port("a", "/tmp/a.sock")).unwrap();
    sw.add_port(port("b", "/tmp/b.sock")).unwrap();
    sw.add_port(port("c", "/tmp/c.sock")).unwrap();
    assert_eq!(sw.xconnect("a", "b0").unwrap_err().code(), ErrorCode::Busy);
    assert_eq!(
        sw.xconnect("a", "zz").unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        sw.xconnect("a", "a").unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    sw.xconnect("a", "b").unwrap();
    assert_eq!(sw.xconnect("c", "b").unwrap_err().code(), ErrorCode::Busy);
    let list = sw.port_list().unwrap();
    assert_eq!(
        list.iter()
            .find(|e| e.config.name == "b")
            .unwrap()
            .xconnect
            .as_deref(),
        Some("a")
    );
    // Delete by either side.
    sw.del_xconnect("b").unwrap();
    assert_eq!(
        sw.del_xconnect("b").unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert!(fake.state().xconnects.is_empty());
    // Port delete takes its xconnect with it.
    sw.xconnect("a", "c").unwrap();
    sw.del_port("a").unwrap();
    assert!(sw.config().xconnects.is_empty());
    assert!(fake.state().xconnects.is_empty());
    assert_eq!(fake.state().port_names(), vec!["b0", "b", "c"]);
    sw.xconnect("b", "c").unwrap();
}

#[test]
fn backend_failure_leaves_model_unchanged() {
    let (mut sw, fake, made) = switch(None);
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    let before = sw.config().clone();
    fake.state().fail_next = Some(DpError::Busy("worker busy".into()));
    let e = sw.add_port(bport("p0", "/tmp/p0.sock", "br0")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Busy);
    assert_eq!(
        made.load(Ordering::SeqCst),
        1,
        "constructed once, then dropped by the backend"
    );
    assert_eq!(sw.config(), &before);
    assert!(fake.state().ports.is_empty());

    fake.state().fail_next = Some(DpError::Stopped);
    assert_eq!(
        sw.del_bridge("br0").unwrap_err().code(),
        ErrorCode::Internal
    );
    assert_eq!(sw.config(), &before);

    // Port factory failure: io error, nothing changed.
    let f: PortFactory = Box::new(|_, _| Err("bind: permission denied".into()));
    let mut sw2 = Switch::new(Box::new(FakeBackend::new()), f, None);
    let e = sw2.add_port(port("p0", "/tmp/p0.sock")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Io);
    assert!(e.to_string().contains("permission denied"));
    assert!(sw2.config().ports.is_empty());
}

#[test]
fn state_write_failure_rolls_back_every_kind_of_change() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("state.json");
    let (mut sw, fake, _) = switch(Some(StateFile::open(&path).unwrap()));
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    sw.add_port(bport("p0", "/tmp/p0.sock", "br0")).unwrap();
    sw.add_port(port("a", "/tmp/a.sock")).unwrap();
    sw.add_port(port("b", "/tmp/b.sock")).unwrap();
    sw.xconnect("a", "b").unwrap();
    let good = sw.config().clone();
    let backend_ports = fake.state().port_names();

    // Break the state file: a directory where the temp file goes.
    let blocker = d
        .path()
        .join(format!(".state.json.tmp.{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    type Attempt = Box<dyn Fn(&mut Switch) -> Result<(), SwitchError>>;
    let attempts: Vec<Attempt> = vec![
        Box::new(|s| s.add_bridge(BridgeConfig::new("br1"))),
        Box::new(|s| s.add_port(port("p9", "/tmp/p9.sock")).map(|_| ())),
        Box::new(|s| s.del_port("a")),
        Box::new(|s| s.del_port("p0")),
        Box::new(|s| s.del_xconnect("a")),
        Box::new(|s| s.del_bridge("br9")), // not found: validation error, not io
    ];
    for (i, f) in attempts.iter().enumerate() {
        let e = f(&mut sw).unwrap_err();
        let want = if i == 5 {
            ErrorCode::NotFound
        } else {
            ErrorCode::Io
        };
        assert_eq!(e.code(), want, "attempt {i}: {e}");
        assert_eq!(sw.config(), &good, "attempt {i}");
        let st = fake.state();
        assert_eq!(st.port_names().len(), backend_ports.len(), "attempt {i}");
        assert_eq!(st.bridge_names(), vec!["br0"]);
        assert_eq!(
            st.xconnects,
            vec![("a".to_string(), "b".to_string())],
            "attempt {i}"
        );
    }
    std::fs::remove_dir(&blocker).unwrap();
    // The saved file still has the last good state.
    drop(sw);
    assert_eq!(StateFile::open(&path).unwrap().load().unwrap(), Some(good));
}

#[test]
fn state_round_trip_restores_everything() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("state.json");
    let (mut sw, _, _) = switch(Some(StateFile::open(&path).unwrap()));
    sw.add_bridge(BridgeConfig {
        aging_secs: 60,
        fdb_max: 10,
        ..BridgeConfig::new("br0")
    })
    .unwrap();
    let mut p = bport("p0", "/tmp/p0.sock", "br0");
    p.vlan = VlanMode::Trunk(vec![10, 20]);
    sw.add_port(p).unwrap();
    sw.add_port(port("a", "@abs-a")).unwrap();
    sw.add_port(port("b", "/tmp/b.sock")).unwrap();
    sw.xconnect("a", "b").unwrap();
    let want = sw.config().clone();
    sw.shutdown();

    let sf = StateFile::open(&path).unwrap();
    let saved = sf.load().unwrap().unwrap();
    assert_eq!(saved, want);
    let (mut sw2, fake2, _) = switch(Some(sf));
    assert!(sw2.restore(&saved).is_empty());
    assert_eq!(sw2.config(), &want);
    assert_eq!(fake2.state().port_names(), vec!["p0", "a", "b"]);
    assert_eq!(fake2.state().xconnects.len(), 1);
}

#[test]
fn restore_skips_failed_items_and_brings_up_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let ok_sock = d.path().join("ok.sock").display().to_string();
    let cfg = SwitchConfig {
        bridges: vec![BridgeConfig::new("br0"), BridgeConfig::new("br0")],
        ports: vec![
            bport("p0", &ok_sock, "br0"),
            port("gone", "/nonexistent-dir-uswitch/x.sock"),
            port("c", "@c"),
            bport("orphan", "@o", "brX"),
        ],
        xconnects: vec![XconnectConfig {
            a: "gone".into(),
            b: "c".into(),
        }],
        dpdk: None,
    };
    let fake = FakeBackend::new();
    let mut sw = Switch::new(
        Box::new(fake.clone()),
        crate::control::fake::fake_port_factory(),
        None,
    );
    let errs = sw.restore(&cfg);
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs[0].starts_with("bridge br0"));
    assert!(
        errs[1].contains("gone") && errs[1].contains("does not exist"),
        "{errs:?}"
    );
    assert!(errs[2].contains("orphan") && errs[2].contains("brX"));
    assert!(errs[3].starts_with("xconnect gone <-> c"));
    assert_eq!(fake.state().port_names(), vec!["p0", "c"]);
    assert_eq!(sw.restore_errors().len(), 4);
    assert_eq!(sw.show().unwrap().restore_errors.len(), 4);
}

#[test]
fn validate_config_whole_file() {
    let mut c = SwitchConfig {
        bridges: vec![BridgeConfig::new("br0")],
        ..Default::default()
    };
    c.ports.push(bport("p0", "/tmp/p0.sock", "br0"));
    c.ports.push(port("a", "/tmp/a.sock"));
    validate_config(&c).unwrap();
    c.xconnects.push(XconnectConfig {
        a: "a".into(),
        b: "p0".into(),
    });
    assert!(validate_config(&c)
        .unwrap_err()
        .to_string()
        .contains("on bridge br0"));
    c.xconnects.clear();
    c.ports.push(port("a", "/tmp/a2.sock"));
    assert_eq!(
        validate_config(&c).unwrap_err().code(),
        ErrorCode::AlreadyExists
    );
}

#[test]
fn stats_and_fdb_need_existing_objects() {
    let (mut sw, _, _) = switch(None);
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    let mut p = port("p0", "/tmp/p0.sock");
    let PortKind::Memif(m) = &mut p.kind else {
        panic!("not memif")
    };
    m.queues = 2;
    sw.add_port(p).unwrap();
    let s = sw.stats(Some("p0"), false).unwrap();
    assert_eq!((s.len(), s[0].queues.len()), (1, 2));
    assert_eq!(
        sw.stats(Some("nope"), false).unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(sw.fdb("nope").unwrap_err().code(), ErrorCode::NotFound);
    assert!(sw.fdb("br0").unwrap().is_empty());
    let show = sw.show().unwrap();
    assert_eq!(show.ports.len(), 1);
    assert_eq!(show.bridges[0].config.name, "br0");
}

fn kport(name: &str, iface: &str) -> PortConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "type": "kernel", "iface": iface, "bridge": "br0", "vlan": {"access": 10}
    }))
    .unwrap()
}

#[test]
fn kernel_ports_have_no_socket_and_one_port_per_interface() {
    let (mut sw, fake, made) = switch(None);
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    let e = sw.add_port(kport("up0", "bad/name")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let entry = sw.add_port(kport("up0", "veth-k0")).unwrap();
    assert_eq!(entry.info.kind, "kernel");
    // A memif port next to it: sockets and interfaces do not collide.
    sw.add_port(bport("p0", "/tmp/k0.sock", "br0")).unwrap();
    let e = sw.add_port(kport("up1", "veth-k0")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(
        e.to_string()
            .contains("interface veth-k0 is already used by kernel port up0"),
        "{e}"
    );
    assert_eq!(made.load(Ordering::SeqCst), 2);
    sw.add_port(kport("up1", "veth-k1")).unwrap();
    assert_eq!(fake.state().port_names(), vec!["up0", "p0", "up1"]);
    // After deleting it, the interface is free again.
    sw.del_port("up0").unwrap();
    sw.add_port(kport("up2", "veth-k0")).unwrap();
    // The state file form round-trips.
    let text = serde_json::to_string(sw.config()).unwrap();
    assert!(
        text.contains(r#""type":"kernel","iface":"veth-k1""#),
        "{text}"
    );
    let back: SwitchConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, sw.config());
    validate_config(&back).unwrap();
}

fn dport(name: &str, devargs: &str) -> PortConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "type": "dpdk", "devargs": devargs, "bridge": "br0"
    }))
    .unwrap()
}

/// Without the feature `dpdk` a DPDK port is a typed `unsupported` error and nothing is
/// constructed; with it (fake factory here), one port per device.
#[test]
fn dpdk_ports_need_the_feature_and_one_port_per_device() {
    let (mut sw, fake, made) = switch(None);
    sw.add_bridge(BridgeConfig::new("br0")).unwrap();
    let e = sw.add_port(dport("up0", "")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    if !crate::dpdk::BUILT_IN {
        let e = sw.add_port(dport("up0", "net_tap0,iface=t0")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unsupported);
        assert_eq!(
            e.to_string(),
            "port up0: uswitchd built without DPDK support (cargo feature dpdk)"
        );
        assert_eq!(made.load(Ordering::SeqCst), 0);
        assert!(sw.config().ports.is_empty());
        // A state file with a DPDK port restores everything else.
        let mut c: SwitchConfig = serde_json::from_value(serde_json::json!({
            "bridges": [{"name": "br1"}],
            "dpdk": {"eal_args": ["--no-pci"]},
        }))
        .unwrap();
        c.ports.push(dport("up1", "0000:af:00.0"));
        c.ports[0].bridge = Some("br1".into());
        let errs = sw.restore(&c);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("cargo feature dpdk"), "{errs:?}");
        assert_eq!(fake.state().port_names(), Vec::<String>::new());
        assert_eq!(sw.config().dpdk.as_ref().unwrap().eal_args, ["--no-pci"]);
        return;
    }
    sw.add_port(dport("up0", "net_tap0,iface=t0")).unwrap();
    let e = sw.add_port(dport("up1", "net_tap0,iface=t1")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(
        e.to_string()
            .contains("DPDK device net_tap0 is already used by port up0"),
        "{e}"
    );
    sw.add_port(dport("up1", "net_tap1,iface=t1")).unwrap();
    assert_eq!(fake.state().port_names(), vec!["up0", "up1"]);
}

/// Ports built at startup (and re-created by a rollback) are built with
/// `PortOrigin::Restore`; `port_add` requests with `PortOrigin::Request`.
#[test]
fn factory_is_told_why_a_port_is_built() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let f: PortFactory = Box::new(move |pc: &PortConfig, origin| {
        seen2.lock().unwrap().push((pc.name.clone(), origin));
        Ok(Box::new(FakePort::new(pc)) as Box<dyn Port>)
    });
    let mut sw = Switch::new(Box::new(FakeBackend::new()), f, None);
    let cfg = SwitchConfig {
        ports: vec![port("old", "/tmp/old.sock")],
        ..SwitchConfig::default()
    };
    assert!(sw.restore(&cfg).is_empty());
    sw.add_port(port("new", "/tmp/new.sock")).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("old".to_string(), PortOrigin::Restore),
            ("new".to_string(), PortOrigin::Request)
        ]
    );
}
