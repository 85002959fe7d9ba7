//! Server tests over a real Unix socket in a temp dir, against the fake backend.
use super::*;
use crate::config::BridgeConfig;
use crate::control::api::{PortEntry, ShowResult};
use crate::control::client::{call, ClientError};
use crate::control::fake::{fake_port_factory, FakeBackend};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

const T: Duration = Duration::from_secs(5);

fn start(dir: &Path) -> (Server, PathBuf, FakeBackend) {
    let path = dir.join("run/ctl.sock");
    let fake = FakeBackend::new();
    let sw = Switch::new(Box::new(fake.clone()), fake_port_factory(), None);
    let l = bind(&path).unwrap();
    let srv = Server::spawn(l, &path, Arc::new(Mutex::new(sw))).unwrap();
    (srv, path, fake)
}

fn raw(path: &Path, bytes: &[u8]) -> Response {
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.ends_with('\n'));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn requests_round_trip_over_the_socket() {
    let d = tempfile::tempdir().unwrap();
    let (srv, path, fake) = start(d.path());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o660
    );

    call(
        &path,
        &Request::BridgeAdd {
            bridge: BridgeConfig::new("br0"),
        },
        T,
    )
    .unwrap();
    let sock = d.path().join("p0.sock").display().to_string();
    let port = serde_json::from_value(serde_json::json!({
        "name": "p0", "type": "memif", "socket": sock, "role": "server", "bridge": "br0", "vlan": {"access": 7}
    }))
    .unwrap();
    let v = call(&path, &Request::PortAdd { port }, T).unwrap();
    let e: PortEntry = serde_json::from_value(v).unwrap();
    assert_eq!(e.info.kind, "memif");
    assert_eq!(fake.state().port_names(), vec!["p0"]);

    let err = call(&path, &Request::BridgeDel { name: "br0".into() }, T).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Busy));
    let err = call(&path, &Request::PortDel { name: "zz".into() }, T).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(err.to_string().contains("port zz not found"), "{err}");

    let show: ShowResult = serde_json::from_value(call(&path, &Request::Show, T).unwrap()).unwrap();
    assert_eq!((show.bridges.len(), show.ports.len()), (1, 1));
    assert_eq!(show.bridges[0].ports, vec!["p0"]);
    let stats = call(
        &path,
        &Request::Stats {
            port: Some("p0".into()),
            clear: true,
        },
        T,
    )
    .unwrap();
    assert_eq!(stats.as_array().unwrap().len(), 1);
    call(&path, &Request::WorkerStats { clear: false }, T).unwrap();
    call(
        &path,
        &Request::FdbShow {
            bridge: "br0".into(),
        },
        T,
    )
    .unwrap();
    call(&path, &Request::PortDel { name: "p0".into() }, T).unwrap();
    call(&path, &Request::BridgeDel { name: "br0".into() }, T).unwrap();
    assert!(fake.state().bridges.is_empty());

    srv.stop();
    assert!(!path.exists(), "socket removed on stop");
    let err = call(&path, &Request::Show, T).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }));
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn malformed_and_oversized_requests_get_invalid_argument() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, path, _) = start(d.path());
    for bad in [
        &b"not json\n"[..],
        b"{\"cmd\":\"nope\"}\n",
        b"{\"cmd\":\"bridge_add\"}\n",
        b"\xff\xfe\n",
    ] {
        let r = raw(&path, bad);
        assert!(!r.ok);
        assert_eq!(r.error.unwrap().code, ErrorCode::InvalidArgument);
    }
    // No trailing newline but EOF: still handled.
    assert!(raw(&path, b"{\"cmd\":\"show\"}").ok);
    // Oversized: more than 1 MiB without a newline.
    let big = vec![b' '; MAX_REQUEST + 10];
    let mut s = UnixStream::connect(&path).unwrap();
    let _ = s.write_all(&big);
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let r: Response = serde_json::from_str(&out).unwrap();
    assert!(r.error.unwrap().message.contains("longer than"));
    // The server still works.
    assert!(raw(&path, b"{\"cmd\":\"port_list\"}\n").ok);
}

#[test]
fn bind_replaces_stale_refuses_live_and_non_sockets() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ctl.sock");
    // Stale: a socket file nobody listens on.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let l = bind(&path).unwrap();
    // Live: somebody accepts on it.
    assert!(matches!(bind(&path), Err(ServerError::InUse(_))));
    drop(l);
    std::fs::remove_file(&path).unwrap();
    // A regular file is never removed.
    std::fs::write(&path, "keep me").unwrap();
    assert!(matches!(bind(&path), Err(ServerError::NotSocket(_))));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn silent_client_does_not_block_others_forever() {
    let d = tempfile::tempdir().unwrap();
    let (_srv, path, _) = start(d.path());
    // A client that connects, sends half a line and closes.
    {
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"cmd\":").unwrap();
    }
    assert!(raw(&path, b"{\"cmd\":\"show\"}\n").ok);
}

/// A backend whose queries panic (like a dataplane bug); changes are refused.
struct PanickingBackend;

impl crate::control::backend::Backend for PanickingBackend {
    fn add_bridge(&self, _: BridgeConfig) -> Result<(), crate::dataplane::DpError> {
        Err(crate::dataplane::DpError::Stopped)
    }
    fn del_bridge(&self, _: &str) -> Result<(), crate::dataplane::DpError> {
        Err(crate::dataplane::DpError::Stopped)
    }
    fn add_port(
        &self,
        _: Box<dyn crate::port::Port>,
        _: crate::dataplane::Attach,
    ) -> Result<(), crate::dataplane::DpError> {
        Err(crate::dataplane::DpError::Stopped)
    }
    fn del_port(&self, _: &str) -> Result<(), crate::dataplane::DpError> {
        Err(crate::dataplane::DpError::Stopped)
    }
    fn xconnect(&self, _: &str, _: &str) -> Result<(), crate::dataplane::DpError> {
        Err(crate::dataplane::DpError::Stopped)
    }
    fn del_xconnect(&self, _: &str) -> Result<(), crate::dataplane::DpError> {
        Err(crate::dataplane::DpError::Stopped)
    }
    fn port_stats(
        &self,
        _: Option<&str>,
        _: bool,
    ) -> Result<Vec<crate::port::PortStats>, crate::dataplane::DpError> {
        panic!("bug in port_stats")
    }
    fn port_infos(&self) -> Result<Vec<crate::port::PortInfo>, crate::dataplane::DpError> {
        panic!("bug in port_infos")
    }
    fn bridges(&self) -> Result<Vec<crate::control::api::BridgeEntry>, crate::dataplane::DpError> {
        Ok(Vec::new())
    }
    fn fdb(
        &self,
        _: &str,
    ) -> Result<Vec<crate::control::api::FdbEntry>, crate::dataplane::DpError> {
        Ok(Vec::new())
    }
    fn worker_stats(
        &self,
        _: bool,
    ) -> Result<crate::control::api::WorkerStats, crate::dataplane::DpError> {
        Ok(Default::default())
    }
    fn stop(self: Box<Self>) {}
}

#[test]
fn handler_panic_becomes_internal_error_and_server_survives() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ctl.sock");
    let sw = Switch::new(Box::new(PanickingBackend), fake_port_factory(), None);
    let _srv = Server::spawn(bind(&path).unwrap(), &path, Arc::new(Mutex::new(sw))).unwrap();
    let err = call(&path, &Request::PortList, T).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Internal));
    let err = call(
        &path,
        &Request::BridgeAdd {
            bridge: BridgeConfig::new("br0"),
        },
        T,
    )
    .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Internal));
    assert!(err.to_string().contains("not running"), "{err}");
    call(&path, &Request::WorkerStats { clear: false }, T).unwrap();
}

#[test]
fn client_timeout_says_so() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("mute.sock");
    let _l = UnixListener::bind(&path).unwrap(); // never accepts, never answers
    let e = call(&path, &Request::Show, Duration::from_millis(200)).unwrap_err();
    assert!(e.to_string().contains("did not answer within 200ms"), "{e}");
}
