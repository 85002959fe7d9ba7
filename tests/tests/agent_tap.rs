//! Two "pods" (network namespaces) on one uswitch bridge, each with a tap interface run by
//! `uswitch-agent` in tap mode: ping both ways, a 100 MB TCP transfer checked byte by byte, and
//! SIGTERM removing the tap (exit 0, link down at uswitch).
mod agent_common;

use agent_common::{tcp_transfer, Pod};
use std::time::Duration;
use uswitch_e2e::e2e_lock;
use uswitch_e2e::scenario::Switch;

#[test]
fn two_tap_pods_ping_tcp_and_sigterm() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("agtap");
    s.add_port("pa", "server", &[]);
    s.add_port("pb", "server", &[]);
    let mut a = Pod::tap("agtap-a", &s.sock("pa"), 1);
    let b = Pod::tap("agtap-b", &s.sock("pb"), 2);
    s.sw.wait_link("pa", true, agent_common::LINK).unwrap();
    s.sw.wait_link("pb", true, agent_common::LINK).unwrap();

    let (n, out) = a.ping(b.ip, 5);
    assert!(n >= 4, "a -> b: {out}");
    let (n, out) = b.ping(a.ip, 5);
    assert!(n >= 4, "b -> a: {out}");

    let total = 100 * 1000 * 1000;
    let (got, secs) = tcp_transfer(&a, &b, total, 5301);
    assert_eq!(got, total);
    eprintln!(
        "TCP a->b: {total} bytes in {secs:.2} s = {:.0} Mbit/s",
        total as f64 * 8.0 / secs / 1e6
    );
    let (got, _) = tcp_transfer(&b, &a, 10 * 1000 * 1000, 5302);
    assert_eq!(got, 10 * 1000 * 1000);

    // SIGTERM: exit 0, tap gone, uswitch sees the link go down.
    assert!(a.has_tap());
    let st = a
        .agent
        .proc
        .terminate(Duration::from_secs(5))
        .expect("agent exited");
    assert!(
        st.success(),
        "agent exit status {st}\n{}",
        a.agent.proc.tail(3000)
    );
    assert!(!a.has_tap(), "tap eth1 still present after SIGTERM");
    s.sw.wait_link("pa", false, agent_common::LINK).unwrap();
    let out = a.agent.proc.output();
    assert!(out.contains("tap removed"), "{out}");
}

/// The pod's netns is deleted under a running agent (as a runtime does at pod teardown): the
/// agent notices (its tap fd would otherwise keep the namespace alive), exits 0, and uswitch
/// sees the link go down.
#[test]
fn netns_deleted_agent_exits() {
    let _l = e2e_lock();
    let s = Switch::with_bridge("agnsd");
    s.add_port("pa", "server", &[]);
    let mut a = Pod::tap("agnsd-a", &s.sock("pa"), 1);
    s.sw.wait_link("pa", true, agent_common::LINK).unwrap();
    let o = std::process::Command::new("ip")
        .args(["netns", "del", a.ns.name()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", agent_common::out_text(&o));
    let st = a
        .agent
        .proc
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("agent still runs\n{}", a.agent.proc.tail(2000)));
    assert!(st.success(), "{st}\n{}", a.agent.proc.tail(2000));
    let out = a.agent.proc.output();
    assert!(out.contains("the pod's netns is gone; stopping"), "{out}");
    s.sw.wait_link("pa", false, agent_common::LINK).unwrap();
}
