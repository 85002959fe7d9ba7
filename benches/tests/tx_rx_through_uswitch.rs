//! Correctness (not timing): `uswitch-bench tx` → uswitchd bridge → `uswitch-bench rx` at a
//! paced 100 kpps for 2 s; every packet sent must arrive exactly once, in order, and the
//! switch's port counters must agree.
//!
//! Needs the release `uswitchd`/`uswitchctl` in the workspace target dir
//! (`cargo build --release -p uswitch-engine`). Takes the global e2e lock
//! (`flock /tmp/uswitch-e2e.lock`, the same file the e2e harness uses) so it never runs beside
//! another throughput test. Every process it starts is killed by PID on drop.
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOCK_PATH: &str = "/tmp/uswitch-e2e.lock";
const COUNT: u64 = 200_000;
const RATE: u64 = 100_000;

/// Kills the child by PID when dropped.
struct Guard(Option<Child>);

impl Guard {
    fn wait_output(mut self, timeout: Duration) -> Output {
        let mut child = self.0.take().expect("child present");
        let until = Instant::now() + timeout;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return child.wait_with_output().expect("collect output");
            }
            if Instant::now() > until {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "process did not finish within {timeout:?}; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn release_bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build --release -p uswitch-engine` first",
        p.display()
    );
    p
}

fn ctl(control: &Path, args: &[&str]) -> Value {
    let out = Command::new(release_bin("uswitchctl"))
        .arg("--control")
        .arg(control)
        .arg("--json")
        .args(args)
        .output()
        .expect("run uswitchctl");
    assert!(
        out.status.success(),
        "uswitchctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn bench(args: &[&str]) -> Guard {
    let c = Command::new(env!("CARGO_BIN_EXE_uswitch-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uswitch-bench");
    Guard(Some(c))
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "uswitch-bench failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("uswitch-bench --json output")
}

fn port_stat(stats: &Value, port: &str, key: &str) -> u64 {
    stats
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .and_then(|p| p["total"][key].as_u64())
        .unwrap_or_else(|| panic!("no {key} for port {port} in {stats}"))
}

#[test]
fn paced_tx_through_bridge_arrives_exactly() {
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .expect("open e2e lock");
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");

    let dir = tempfile::tempdir().expect("tempdir");
    let control = dir.path().join("ctl.sock");
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let _daemon = Guard(Some(
        Command::new(release_bin("uswitchd"))
            .arg("--control")
            .arg(&control)
            .args(["--no-state", "--core", "0", "--log-level", "warn"])
            .spawn()
            .expect("start uswitchd"),
    ));
    let until = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        assert!(
            Instant::now() < until,
            "uswitchd control socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ctl(&control, &["bridge", "add", "br0"]);
    for (name, sock) in [("a", &a), ("b", &b)] {
        let s = sock.to_str().expect("utf-8 temp path");
        ctl(
            &control,
            &[
                "port", "add", name, "memif", "--socket", s, "--role", "server", "--bridge", "br0",
            ],
        );
    }

    let (sa, sb) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    // Large rings (16384 slots): this 2-core machine is shared, and a receiver descheduled for
    // a while must not make the switch drop (this is a correctness test, not a timing test).
    let count = COUNT.to_string();
    let rx = bench(&[
        "rx",
        "-s",
        sb,
        "--count",
        &count,
        "--duration",
        "60",
        "--ring-size",
        "14",
        "--idle-sleep",
        "20",
        "--core",
        "1",
        "--json",
    ]);
    // Let rx connect first so the bridge has somewhere to flood to (a fixed sleep is not
    // enough on a loaded machine: wait for the link).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let st = ctl(&control, &["stats", "b"]);
        if st[0]["link_up"].as_bool() == Some(true) {
            break;
        }
        assert!(Instant::now() < until, "rx endpoint never connected: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rate = RATE.to_string();
    let tx = bench(&[
        "tx",
        "-s",
        sa,
        "--rate",
        &rate,
        "--count",
        &count,
        "--duration",
        "60",
        "--flows",
        "16",
        "--ring-size",
        "14",
        "--idle-sleep",
        "20",
        "--core",
        "1",
        "--json",
    ]);
    let txr = report(&tx.wait_output(Duration::from_secs(90)));
    let rxr = report(&rx.wait_output(Duration::from_secs(90)));

    let stats = ctl(&control, &["stats"]);
    let ctx = format!("\ntx: {txr}\nrx: {rxr}\nswitch: {stats}");
    let tx_total = &txr["links"][0]["total"];
    let rx_total = &rxr["links"][0]["total"];
    assert_eq!(tx_total["tx_packets"].as_u64(), Some(COUNT), "{ctx}");
    // Paced: 2 s for 200k packets (a little more under load), never faster.
    let window = txr["window_s"].as_f64().unwrap_or(0.0);
    assert!(
        window >= 1.9,
        "tx finished in {window} s: not paced at {RATE} pps"
    );
    assert_eq!(port_stat(&stats, "a", "rx_packets"), COUNT, "{ctx}");
    assert_eq!(port_stat(&stats, "b", "tx_packets"), COUNT, "{ctx}");
    assert_eq!(port_stat(&stats, "b", "drop_ring_full"), 0, "{ctx}");
    assert_eq!(rx_total["rx_packets"].as_u64(), Some(COUNT), "{ctx}");
    assert_eq!(rxr["lost"].as_u64(), Some(0), "{ctx}");
    assert_eq!(rxr["out_of_order"].as_u64(), Some(0), "{ctx}");
    assert_eq!(rxr["bad_desc"].as_u64(), Some(0), "{ctx}");
    assert_eq!(rx_total["rx_bytes"].as_u64(), Some(COUNT * 64), "{ctx}");
}
