//! Tap I/O selection: io_uring by default, read/write when io_uring is unavailable. A seccomp
//! filter (the `seccomp-deny` helper, as a container runtime's profile would) makes
//! `io_uring_setup` fail with EPERM or ENOSYS: the agent logs why and falls back, and the
//! fallback pod exchanges ping and a byte-exact TCP stream with an io_uring pod (both code
//! paths in one transfer, both directions). `--tap-io uring` under the same filter fails with
//! a clear error (exit 6) and leaves no tap; `--tap-io rw` forces read/write.
mod agent_common;

use agent_common::{out_text, tcp_transfer, Pod};
use std::process::Command;
use uswitch_e2e::scenario::Switch;
use uswitch_e2e::{bin_path, e2e_lock, temp_dir, NetNs};

const DENY: &str = env!("CARGO_BIN_EXE_seccomp-deny");

#[test]
fn io_uring_denied_falls_back_and_talks_to_an_io_uring_pod() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("agtio");
    s.add_port("pa", "server", &[]);
    s.add_port("pb", "server", &[]);
    s.add_port("pc", "server", &[]);
    let a = Pod::tap("agtio-a", &s.sock("pa"), 1);
    let na = NetNs::new("agtio-b").unwrap();
    let b = Pod::tap_wrapped(
        "agtio-b",
        na,
        &s.sock("pb"),
        2,
        &[],
        &[DENY, "io_uring_setup", "EPERM", "--"],
    );
    let nc = NetNs::new("agtio-c").unwrap();
    let c = Pod::tap_in("agtio-c", nc, &s.sock("pc"), 3, &["--tap-io", "rw"]);

    let la = a.agent.proc.output();
    assert!(la.contains("tap I/O: io_uring"), "{la}");
    let lb = b.agent.proc.output();
    assert!(
        lb.contains("tap I/O: read/write (io_uring unavailable: io_uring_setup:")
            && lb.contains("Operation not permitted"),
        "{lb}"
    );
    let lc = c.agent.proc.output();
    assert!(
        lc.contains("tap I/O: read/write (forced by --tap-io rw)"),
        "{lc}"
    );

    for (x, y) in [(&a, &b), (&b, &a), (&a, &c), (&c, &b)] {
        let (n, out) = x.ping(y.ip, 3);
        assert!(n >= 2, "{} -> {}: {out}", x.ip, y.ip);
    }
    let total = 30 * 1000 * 1000;
    let (got, secs) = tcp_transfer(&a, &b, total, 5311);
    assert_eq!(got, total);
    eprintln!(
        "io_uring -> read/write: {:.0} Mbit/s",
        total as f64 * 8.0 / secs / 1e6
    );
    let (got, secs) = tcp_transfer(&b, &a, total, 5312);
    assert_eq!(got, total);
    eprintln!(
        "read/write -> io_uring: {:.0} Mbit/s",
        total as f64 * 8.0 / secs / 1e6
    );
}

#[test]
fn forced_io_uring_fails_clearly_when_denied() {
    let _l = e2e_lock();
    let d = temp_dir("agtio");
    let sock = d.path().join("s.sock");
    std::fs::write(&sock, b"").unwrap();
    let ns = NetNs::new("agtio-f").unwrap();
    for errno in ["EPERM", "ENOSYS"] {
        let o = Command::new(DENY)
            .args(["io_uring_setup", errno, "--"])
            .arg(bin_path("uswitch-agent"))
            .args(["--socket", &sock.to_string_lossy(), "--ifname", "eth1"])
            .args(["tap", "--netns", ns.name(), "--tap-io", "uring"])
            .output()
            .unwrap();
        let out = out_text(&o);
        assert_eq!(o.status.code(), Some(6), "{errno}: {out}");
        assert!(
            out.contains("--tap-io uring: io_uring unavailable: io_uring_setup"),
            "{errno}: {out}"
        );
        let links = out_text(&ns.exec(&["ip", "-o", "link"]));
        assert!(!links.contains("eth1"), "tap left behind: {links}");
    }
}
