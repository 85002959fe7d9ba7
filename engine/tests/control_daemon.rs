//! End-to-end tests of the `uswitchd` and `uswitchctl` binaries against the fake dataplane:
//! startup from config and state, SIGTERM shutdown, restart, corrupt state, CLI exit codes.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const USWITCHD: &str = env!("CARGO_BIN_EXE_uswitchd");
const USWITCHCTL: &str = env!("CARGO_BIN_EXE_uswitchctl");

/// Kills the daemon (by PID) if the test did not stop it.
struct Daemon {
    child: Option<Child>,
    control: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Daemon {
    fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let control = dir.join("ctl.sock");
        let mut args = vec![
            "--fake-dataplane".to_string(),
            "--control".into(),
            control.display().to_string(),
            "--state".into(),
            dir.join("state/state.json").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(USWITCHD)
            .args(&args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let d = Daemon {
            child: Some(child),
            control,
        };
        let t0 = Instant::now();
        while !d.control.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "uswitchd did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The socket exists once bound; wait until it answers.
        while !ctl(&d.control, &["show"]).status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "uswitchd does not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// SIGTERM, then the exit status and stderr.
    fn stop(mut self) -> (i32, String) {
        let c = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let out = c.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn ctl(control: &Path, args: &[&str]) -> Output {
    Command::new(USWITCHCTL)
        .arg("--control")
        .arg(control)
        .args(args)
        .output()
        .unwrap()
}

fn ok(control: &Path, args: &[&str]) -> String {
    let o = ctl(control, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn run_daemon_expect_fail(dir: &Path, extra: &[&str]) -> (i32, String) {
    let o = Command::new(USWITCHD)
        .args(["--fake-dataplane", "--control"])
        .arg(dir.join("ctl.sock"))
        .arg("--state")
        .arg(dir.join("state/state.json"))
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn config_then_state_survives_restart_and_sigterm_cleans_up() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("cfg.json");
    let sock = |n: &str| d.path().join(n).display().to_string();
    std::fs::write(
        &cfg,
        serde_json::json!({
            "bridges": [{"name": "br0"}],
            "ports": [{"name": "p0", "type": "memif", "socket": sock("p0.sock"), "role": "server", "bridge": "br0"}]
        })
        .to_string(),
    )
    .unwrap();
    let cfg_s = cfg.display().to_string();
    let dm = Daemon::start(d.path(), &["--config", &cfg_s]);
    let c = dm.control.clone();
    ok(
        &c,
        &[
            "port",
            "add",
            "a",
            "memif",
            "--socket",
            &sock("a.sock"),
            "--role",
            "server",
        ],
    );
    ok(
        &c,
        &[
            "port",
            "add",
            "b",
            "memif",
            "--socket",
            "@uswitch-test-b",
            "--role",
            "client",
            "--queues",
            "2",
        ],
    );
    ok(&c, &["xconnect", "a", "b"]);
    ok(&c, &["bridge", "add", "br1", "--aging", "30"]);
    let (code, log) = dm.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(!c.exists(), "control socket removed");
    let state = std::fs::read_to_string(d.path().join("state/state.json")).unwrap();
    assert!(state.contains("\"br1\"") && state.contains("uswitch-test-b"));

    // Restart with the same --config: the state file wins (a, b, br1 and the xconnect are back).
    let dm = Daemon::start(d.path(), &["--config", &cfg_s]);
    let show: serde_json::Value = serde_json::from_str(&ok(&c, &["show", "--json"])).unwrap();
    let ports: Vec<&str> = show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["config"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, vec!["p0", "a", "b"]);
    assert_eq!(show["xconnects"][0]["a"], "a");
    assert_eq!(show["bridges"].as_array().unwrap().len(), 2);
    let table = ok(&c, &["port", "list"]);
    assert!(
        table.contains("xconnect b") && table.contains("PORT"),
        "{table}"
    );
    let stats = ok(&c, &["stats", "b"]);
    assert_eq!(
        stats.lines().filter(|l| l.starts_with("b ")).count(),
        3,
        "{stats}"
    );
    assert!(ok(&c, &["stats", "--worker"]).contains("busy cycles/packet"));

    // A second daemon on the same control socket is refused, the first keeps working.
    let (code, err) = run_daemon_expect_fail(d.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("uswitchd: error:") && (err.contains("locked") || err.contains("in use")),
        "{err}"
    );
    ok(&c, &["show"]);

    // CLI errors: exit 1 with the message; usage errors exit 2.
    let o = ctl(&c, &["bridge", "del", "br0"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.starts_with("uswitchctl: error: bridge br0 still has ports: p0"),
        "{e}"
    );
    let o = ctl(
        &c,
        &[
            "port", "add", "x", "memif", "--socket", "/x", "--role", "server", "--vlan", "3",
            "--trunk", "4",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let (code, _) = dm.stop();
    assert_eq!(code, 0);
}

#[test]
fn unreachable_daemon_names_the_socket() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("none.sock");
    let o = Command::new(USWITCHCTL)
        .arg("show")
        .env("USWITCH_CONTROL", &p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&p.display().to_string()) && e.contains("is uswitchd running"),
        "{e}"
    );
}

#[test]
fn corrupt_state_is_fatal_and_kept() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("state")).unwrap();
    let st = d.path().join("state/state.json");
    std::fs::write(&st, "{\"bridges\":[{\"name\":").unwrap();
    let (code, err) = run_daemon_expect_fail(d.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("corrupt") && err.contains(&st.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&st).unwrap(),
        "{\"bridges\":[{\"name\":"
    );
    assert!(!d.path().join("ctl.sock").exists());
}

#[test]
fn invalid_config_is_fatal() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("cfg.toml");
    std::fs::write(
        &cfg,
        "[[ports]]\nname='p0'\ntype='memif'\nsocket='@x'\nrole='server'\nbridge='nope'\n",
    )
    .unwrap();
    let (code, err) = run_daemon_expect_fail(d.path(), &["--config", &cfg.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cfg.toml") && err.contains("bridge nope not found"),
        "{err}"
    );
    assert!(!d.path().join("state/state.json").exists());
    assert!(!d.path().join("ctl.sock").exists());
}

#[test]
fn failed_restore_items_are_reported_rest_comes_up() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("state")).unwrap();
    let st = d.path().join("state/state.json");
    let text = serde_json::json!({
        "ports": [
            {"name": "gone", "type": "memif", "socket": "/nonexistent-uswitch-dir/x.sock", "role": "server"},
            {"name": "ok", "type": "memif", "socket": "@uswitch-test-ok", "role": "server"}
        ]
    })
    .to_string();
    std::fs::write(&st, &text).unwrap();
    let dm = Daemon::start(d.path(), &[]);
    let out = ok(&dm.control, &["show"]);
    assert!(
        out.contains("Not restored at startup") && out.contains("port gone"),
        "{out}"
    );
    assert!(ok(&dm.control, &["port", "list"]).contains("uswitch-test-ok"));
    // Not rewritten at startup, so a fixed environment brings the item back on restart.
    assert_eq!(std::fs::read_to_string(&st).unwrap(), text);
    let (code, log) = dm.stop();
    assert_eq!(code, 0);
    assert!(log.contains("not restored"), "{log}");
}

/// Starts the daemon with the real dataplane (no `--fake-dataplane`).
fn start_real(dir: &Path, extra: &[&str]) -> Daemon {
    let control = dir.join("ctl.sock");
    let child = Command::new(USWITCHD)
        .arg("--control")
        .arg(&control)
        .arg("--state")
        .arg(dir.join("state/state.json"))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let d = Daemon {
        child: Some(child),
        control,
    };
    let t0 = Instant::now();
    while !(d.control.exists() && ctl(&d.control, &["show"]).status.success()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "uswitchd does not answer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn links_up(c: &Path, ports: &[&str]) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let v: serde_json::Value = serde_json::from_str(&ok(c, &["stats", "--json"])).unwrap();
        let up = |n: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == n && p["link_up"] == true)
        };
        if ports.iter().all(|p| up(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The real dataplane and memif ports: a server port and a client port of the same daemon on
/// one socket link up with each other; SIGTERM removes the memif socket; a restart restores
/// both from the state file and they link up again.
#[test]
fn real_dataplane_memif_self_loop_survives_restart() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("loop.sock").display().to_string();
    let dm = start_real(d.path(), &[]);
    let c = dm.control.clone();
    ok(
        &c,
        &[
            "port", "add", "s", "memif", "--socket", &sock, "--role", "server", "--id", "7",
        ],
    );
    ok(
        &c,
        &[
            "port", "add", "k", "memif", "--socket", &sock, "--role", "client", "--id", "7",
        ],
    );
    assert!(
        links_up(&c, &["s", "k"]),
        "links did not come up: {}",
        ok(&c, &["port", "list"])
    );
    let list = ok(&c, &["port", "list"]);
    assert!(
        list.lines().filter(|l| l.contains(" up ")).count() == 2,
        "{list}"
    );
    // Duplicate server socket refused, nothing changed.
    let o = ctl(
        &c,
        &[
            "port", "add", "s2", "memif", "--socket", &sock, "--role", "server",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let (code, log) = dm.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        !Path::new(&sock).exists(),
        "memif server socket removed on shutdown"
    );

    let dm = start_real(d.path(), &[]);
    assert!(
        links_up(&dm.control, &["s", "k"]),
        "links did not come up after restart"
    );
    ok(&dm.control, &["port", "del", "k"]);
    ok(&dm.control, &["port", "del", "s"]);
    assert!(
        !Path::new(&sock).exists(),
        "memif server socket removed by port del"
    );
    let (code, _) = dm.stop();
    assert_eq!(code, 0);
}

/// `--burst N` sets the worker's rx burst (shown by `stats --worker`); values outside
/// 1..=256 are refused with a clear error before anything starts.
#[test]
fn burst_option_is_applied_and_checked() {
    let d = tempfile::tempdir().unwrap();
    for bad in ["0", "257", "x"] {
        let o = Command::new(USWITCHD)
            .args(["--no-state", "--control"])
            .arg(d.path().join("bad.sock"))
            .args(["--burst", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--burst {bad}: {err}");
        assert!(err.contains("--burst"), "--burst {bad}: {err}");
        assert!(!d.path().join("bad.sock").exists());
    }
    let dm = start_real(d.path(), &["--burst", "128"]);
    let w: serde_json::Value =
        serde_json::from_str(&ok(&dm.control, &["--json", "stats", "--worker"])).unwrap();
    assert_eq!(w["burst"], 128, "{w}");
    assert!(ok(&dm.control, &["stats", "--worker"]).contains("burst:              128"));
    let (code, _) = dm.stop();
    assert_eq!(code, 0);
    let dm = start_real(d.path(), &[]);
    let w: serde_json::Value =
        serde_json::from_str(&ok(&dm.control, &["--json", "stats", "--worker"])).unwrap();
    assert_eq!(w["burst"], 32, "the default");
}
