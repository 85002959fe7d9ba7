//! Clear errors and exit codes: missing config (3), socket absent (4), netns not found (5),
//! tun unavailable (6), usage (2). Nothing is left behind after a failed start.
mod agent_common;

use agent_common::out_text;
use std::process::Command;
use uswitch_e2e::{bin_path, temp_dir, NetNs};

fn agent(args: &[&str]) -> (i32, String) {
    let o = Command::new(bin_path("uswitch-agent"))
        .args(args)
        .output()
        .expect("run uswitch-agent");
    (o.status.code().unwrap_or(-1), out_text(&o))
}

#[test]
fn missing_config() {
    let d = temp_dir("agerr");
    let shared = d.path().to_string_lossy().into_owned();
    let (code, out) = agent(&["--shared-dir", &shared, "--container-id", "abc123", "tap"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("missing config") && out.contains("configData-abc123-"),
        "{out}"
    );
    let (code, out) = agent(&["--config", "/nonexistent/c.json", "passthrough"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("/nonexistent/c.json does not exist"), "{out}");
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, "{\"socketPath\": 5}").unwrap();
    let (code, out) = agent(&["--config", &bad.to_string_lossy(), "passthrough"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("not a pod config data file"), "{out}");
}

#[test]
fn socket_absent() {
    let d = temp_dir("agerr");
    let sock = d.path().join("none.sock").to_string_lossy().into_owned();
    for mode in ["tap", "probe"] {
        let (code, out) = agent(&["--socket", &sock, "--wait-socket-ms", "200", mode]);
        assert_eq!(code, 4, "{mode}: {out}");
        assert!(
            out.contains("is absent") && out.contains(&sock),
            "{mode}: {out}"
        );
    }
}

#[test]
fn netns_not_found() {
    let d = temp_dir("agerr");
    let sock = d.path().join("s.sock");
    std::fs::write(&sock, b"").unwrap();
    let s = sock.to_string_lossy().into_owned();
    let (code, out) = agent(&["--socket", &s, "tap", "--netns", "usw-no-such-netns"]);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("/var/run/netns/usw-no-such-netns") && out.contains("not found"),
        "{out}"
    );
    let plain = d.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    let (code, out) = agent(&["--socket", &s, "tap", "--netns", &plain.to_string_lossy()]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("setns failed"), "{out}");
}

#[test]
fn tun_unavailable() {
    // A private mount namespace where /dev/net/tun is an empty regular file.
    let d = temp_dir("agerr");
    let fake = d.path().join("tun");
    std::fs::write(&fake, b"").unwrap();
    let sock = d.path().join("s.sock");
    std::fs::write(&sock, b"").unwrap();
    let ns = NetNs::new("agerr").unwrap();
    let script = format!(
        "mount --bind {} /dev/net/tun && exec {} --socket {} tap --netns {}",
        fake.display(),
        bin_path("uswitch-agent").display(),
        sock.display(),
        ns.name()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let out = out_text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}");
    assert!(out.contains("tun unavailable"), "{out}");
    // Nothing left in the pod.
    let links = out_text(&ns.exec(&["ip", "-o", "link"]));
    assert!(!links.contains("net1"), "{links}");
}

#[test]
fn usage_errors() {
    let (code, out) = agent(&["tap", "--no-such-flag"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = agent(&[
        "--socket",
        "/x.sock",
        "--mac",
        "01:00:00:00:00:01",
        "passthrough",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("multicast"), "{out}");
}
