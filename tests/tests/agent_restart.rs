//! `kill -9 uswitchd` and a restart on the same state file: the agents reconnect on their own
//! and ping between the tap pods resumes without touching the pods.
mod agent_common;

use agent_common::{ping_until_reply, Pod, LINK};
use std::time::Duration;
use uswitch_e2e::e2e_lock;
use uswitch_e2e::scenario::Switch;

#[test]
fn uswitchd_kill9_restart_ping_resumes() {
    let _l = e2e_lock();
    let mut s = Switch::with_bridge("agrst");
    s.add_port("pa", "server", &[]);
    s.add_port("pb", "server", &[]);
    let mut a = Pod::tap("agrst-a", &s.sock("pa"), 1);
    let b = Pod::tap("agrst-b", &s.sock("pb"), 2);
    let (n, out) = a.ping(b.ip, 3);
    assert!(n >= 2, "before restart: {out}");

    for round in 0..2 {
        let mark = a.agent.out_len();
        s.sw.kill9();
        a.agent
            .proc
            .wait_output(mark, "memif link down", LINK)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(a.ping(b.ip, 1).0, 0, "round {round}: ping without uswitchd");
        s.sw.restart().unwrap_or_else(|e| panic!("{e}"));
        a.agent.wait_link_up(mark);
        s.sw.wait_link("pa", true, LINK).unwrap();
        s.sw.wait_link("pb", true, LINK).unwrap();
        let took = ping_until_reply(&a, b.ip, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("round {round}: ping did not resume\n{}", s.sw.tail()));
        eprintln!("round {round}: ping resumed {took:?} after the link came up");
        let (n, out) = b.ping(a.ip, 3);
        assert!(n >= 2, "round {round}: b -> a after restart: {out}");
        assert!(a.has_tap() && b.has_tap(), "taps survive uswitchd restarts");
    }
}
