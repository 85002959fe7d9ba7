//! Test helpers: a tiny fake uswitchd control server and a runner that invokes the plugin binary
//! exactly as a runtime does (CNI_* env, config on stdin, JSON on stdout).
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uswitch::config::PortConfig;
use uswitch::control::api::{ApiError, ErrorCode, PortEntry, Request, Response};
use uswitch::port::PortInfo;

#[derive(Default)]
pub struct FakeState {
    pub bridges: Vec<String>,
    /// Port name -> (config, listener bound at its socket).
    pub ports: BTreeMap<String, (PortConfig, Option<UnixListener>)>,
    pub xconnects: Vec<(String, String)>,
    pub requests: Vec<String>,
}

/// A fake uswitchd answering the control API from memory. Server-role memif ports get a real
/// listening socket file, like the daemon binds. Dropping it stops the server and removes the
/// control socket (ports' sockets too, as a dying daemon would leave them... removed here).
pub struct FakeSwitch {
    pub path: PathBuf,
    pub state: Arc<Mutex<FakeState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn handle(st: &Mutex<FakeState>, req: Request) -> Response {
    let mut s = st.lock().unwrap();
    s.requests.push(serde_json::to_string(&req).unwrap());
    let err = |c, m: String| Response::err(ApiError::new(c, m));
    match req {
        Request::BridgeAdd { bridge } => {
            if s.bridges.contains(&bridge.name) {
                return err(
                    ErrorCode::AlreadyExists,
                    format!("bridge {} exists", bridge.name),
                );
            }
            s.bridges.push(bridge.name);
            Response::ok(serde_json::Value::Null)
        }
        Request::PortAdd { port } => {
            if let Err(e) = port.validate() {
                return err(ErrorCode::InvalidArgument, e.to_string());
            }
            if s.ports.contains_key(&port.name) {
                return err(
                    ErrorCode::AlreadyExists,
                    format!("port {} exists", port.name),
                );
            }
            if let Some(b) = &port.bridge {
                if !s.bridges.contains(b) {
                    return err(ErrorCode::NotFound, format!("bridge {b} not found"));
                }
            }
            let (socket, listens) = socket_of(&port);
            let listener = if listens {
                match UnixListener::bind(&socket) {
                    Ok(l) => Some(l),
                    Err(e) => return err(ErrorCode::Io, format!("bind {socket}: {e}")),
                }
            } else {
                None
            };
            let entry = PortEntry {
                config: port.clone(),
                info: info(&port),
                xconnect: None,
            };
            s.ports.insert(port.name.clone(), (port, listener));
            Response::ok(serde_json::to_value(entry).unwrap())
        }
        Request::PortDel { name } => match s.ports.remove(&name) {
            Some((p, _)) => {
                let (socket, listens) = socket_of(&p);
                if listens {
                    let _ = std::fs::remove_file(&socket);
                }
                s.xconnects.retain(|(a, b)| *a != name && *b != name);
                Response::ok(serde_json::Value::Null)
            }
            None => err(ErrorCode::NotFound, format!("port {name} not found")),
        },
        Request::PortList => {
            let list: Vec<PortEntry> = s
                .ports
                .values()
                .map(|(p, _)| PortEntry {
                    config: p.clone(),
                    info: info(p),
                    xconnect: None,
                })
                .collect();
            Response::ok(serde_json::to_value(list).unwrap())
        }
        Request::Xconnect { a, b } => {
            if !s.ports.contains_key(&a) || !s.ports.contains_key(&b) {
                return err(
                    ErrorCode::NotFound,
                    format!("xconnect {a} {b}: port not found"),
                );
            }
            s.xconnects.push((a, b));
            Response::ok(serde_json::Value::Null)
        }
        other => err(ErrorCode::Internal, format!("fake does not do {other:?}")),
    }
}

/// Socket path and whether uswitch listens there, for any port kind (via the wire format:
/// memif `role`, vhost-user `mode`).
pub fn socket_of(p: &PortConfig) -> (String, bool) {
    let v = serde_json::to_value(&p.kind).unwrap();
    let socket = v["socket"].as_str().unwrap_or_default().to_string();
    let listens = v["role"] == "server" || v["mode"] == "server";
    (socket, listens)
}

fn info(p: &PortConfig) -> PortInfo {
    PortInfo {
        name: p.name.clone(),
        kind: serde_json::to_value(&p.kind).unwrap()["type"]
            .as_str()
            .unwrap_or("memif")
            .into(),
        link_up: false,
        peer_name: None,
        peer_version: None,
        details: Default::default(),
    }
}

impl FakeSwitch {
    pub fn start(path: &Path) -> FakeSwitch {
        Self::start_with(path, Arc::new(Mutex::new(FakeState::default())))
    }

    pub fn start_with(path: &Path, state: Arc<Mutex<FakeState>>) -> FakeSwitch {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve(&st, conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        FakeSwitch {
            path: path.to_path_buf(),
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port_names(&self) -> Vec<String> {
        self.state.lock().unwrap().ports.keys().cloned().collect()
    }

    pub fn port(&self, name: &str) -> Option<PortConfig> {
        self.state
            .lock()
            .unwrap()
            .ports
            .get(name)
            .map(|(p, _)| p.clone())
    }

    /// Stops serving (the control socket disappears); the in-memory state is returned.
    pub fn stop(mut self) -> Arc<Mutex<FakeState>> {
        self.halt();
        self.state.clone()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for FakeSwitch {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(st: &Mutex<FakeState>, conn: UnixStream) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    if BufReader::new(&conn).read_line(&mut line).is_err() {
        return;
    }
    let resp = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handle(st, req),
        Err(e) => Response::err(ApiError::new(ErrorCode::InvalidArgument, e.to_string())),
    };
    let mut out = serde_json::to_string(&resp).unwrap();
    out.push('\n');
    let _ = (&conn).write_all(out.as_bytes());
}

/// Output of one plugin run.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout not JSON ({e}): {self:?}"))
    }
    /// The error code of a failed run (asserting the error JSON shape).
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected failure: {self:?}");
        let j = self.json();
        assert!(j["msg"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
        assert!(j["cniVersion"].as_str().is_some(), "{j}");
        j["code"].as_u64().unwrap()
    }
}

/// Test environment: temp dirs, CNI_PATH with the plugin and host-local, a fake switch.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub cni_path: PathBuf,
    pub shared: PathBuf,
    pub ipam_dir: PathBuf,
    pub control: PathBuf,
}

pub fn plugin() -> &'static str {
    env!("CARGO_BIN_EXE_uswitch-cni")
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ucni")
            .tempdir_in("/tmp")
            .unwrap();
        let cni_path = dir.path().join("bin");
        std::fs::create_dir_all(&cni_path).unwrap();
        std::os::unix::fs::symlink(plugin(), cni_path.join("uswitch-cni")).unwrap();
        std::os::unix::fs::symlink(plugin(), cni_path.join("userspace")).unwrap();
        for p in ["host-local", "tuning"] {
            std::os::unix::fs::symlink(Path::new("/usr/lib/cni").join(p), cni_path.join(p))
                .unwrap();
        }
        Env {
            shared: dir.path().join("shared"),
            ipam_dir: dir.path().join("ipam"),
            control: dir.path().join("ctl.sock"),
            cni_path,
            dir,
        }
    }

    /// A config in our style, version `v`, bridge br0.
    pub fn conf(&self, v: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": v, "name": "unet", "type": "uswitch-cni",
            "sharedDir": self.shared, "logLevel": "debug",
            "uswitch": {"control": self.control, "lockFile": self.dir.path().join("cni.lock")},
            "host": {"engine": "uswitch", "iftype": "memif", "netType": "bridge",
                     "memif": {"role": "master", "mode": "ethernet"},
                     "bridge": {"bridgeName": "br0", "vlanId": 100}},
            "container": {"engine": "uswitch", "iftype": "memif", "netType": "interface",
                          "memif": {"role": "slave", "mode": "ethernet"}},
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": self.ipam_dir,
                     "routes": [{"dst": "0.0.0.0/0"}]}
        })
    }

    pub fn run(&self, cmd: &str, cid: &str, ifname: &str, conf: &serde_json::Value) -> Run {
        self.run_raw(cmd, cid, ifname, conf.to_string().as_bytes())
    }

    pub fn run_raw(&self, cmd: &str, cid: &str, ifname: &str, stdin: &[u8]) -> Run {
        let mut c = Command::new(self.cni_path.join("uswitch-cni"));
        c.env("CNI_COMMAND", cmd)
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !cid.is_empty() {
            c.env("CNI_CONTAINERID", cid)
                .env("CNI_IFNAME", ifname)
                .env("CNI_NETNS", format!("/var/run/netns/{cid}"));
        }
        let mut child = c.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin); // EPIPE when the plugin exits early
        let out = child.wait_with_output().unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Addresses host-local has handed out (files named like IPs in its data dir).
    pub fn leased_ips(&self) -> Vec<String> {
        let mut v = Vec::new();
        for net in std::fs::read_dir(&self.ipam_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
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

    /// Entries under the shared dir (pod dirs).
    pub fn pod_dirs(&self) -> Vec<String> {
        std::fs::read_dir(&self.shared)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}
