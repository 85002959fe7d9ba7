//! Probe mode: a smoltcp stack on a memif port answers ping from a tap pod, and pings the tap
//! pod itself (`--ping ADDR --count N`, exit 0 and N replies).
mod agent_common;

use agent_common::{Agent, Pod, LINK};
use std::time::Duration;
use uswitch_e2e::e2e_lock;
use uswitch_e2e::scenario::Switch;

#[test]
fn probe_answers_and_pings_a_tap_pod() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("agprb");
    s.add_port("pa", "server", &[]);
    s.add_port("pp", "server", &[]);
    s.add_port("pq", "server", &[]);
    let a = Pod::tap("agprb-a", &s.sock("pa"), 1);

    // A probe that only answers.
    let sock = s.sock_str("pp");
    let mut probe = Agent::spawn(
        "probe",
        &[
            "--socket",
            &sock,
            "--mac",
            "02:a6:00:00:00:99",
            "--ip",
            "10.66.0.99/24",
            "probe",
        ],
    );
    probe.wait_link_up(0);
    s.sw.wait_link("pp", true, LINK).unwrap();
    let (n, out) = a.ping("10.66.0.99".parse().unwrap(), 5);
    assert!(n >= 4, "tap pod -> probe: {out}\n{}", probe.proc.tail(2000));

    // A probe that pings the tap pod and exits.
    let sock = s.sock_str("pq");
    let mut pinger = Agent::spawn(
        "pinger",
        &[
            "--socket",
            &sock,
            "--mac",
            "02:a6:00:00:00:98",
            "--ip",
            "10.66.0.98/24",
            "probe",
            "--ping",
            "10.66.0.1",
            "--count",
            "5",
            "--interval-ms",
            "200",
        ],
    );
    let st = pinger
        .proc
        .wait_timeout(Duration::from_secs(30))
        .expect("pinger finished");
    let out = pinger.proc.output();
    assert!(st.success(), "pinger exit {st}\n{out}");
    assert!(
        out.contains("5 packets transmitted, 5 received, 0% packet loss"),
        "{out}"
    );
    assert!(out.contains("rtt min/avg/max"), "{out}");

    // No reply: exit code 7 and 100% loss.
    let mut lost = Agent::spawn(
        "pinger-lost",
        &[
            "--socket",
            &sock,
            "--ip",
            "10.66.0.98/24",
            "probe",
            "--ping",
            "10.66.0.77",
            "--count",
            "2",
            "--interval-ms",
            "100",
            "--timeout-ms",
            "500",
        ],
    );
    let st = lost
        .proc
        .wait_timeout(Duration::from_secs(30))
        .expect("pinger finished");
    let out = lost.proc.output();
    assert_eq!(st.code(), Some(7), "{out}");
    assert!(out.contains("100% packet loss"), "{out}");

    let st = probe
        .proc
        .terminate(Duration::from_secs(5))
        .expect("probe exited");
    assert!(st.success(), "probe exit {st}");
}
