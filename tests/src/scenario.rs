//! Building blocks shared by the e2e tests: fixed MACs, a uswitchd with one bridge and N
//! memif ports, drop accounting, and "send exactly N and compare counters".
use crate::{Testpmd, Uswitchd};
use std::path::PathBuf;
use std::time::Duration;
use uswitch::port::{PortStats, QueueStats};

/// MAC of the testpmd attached to port `i` (02:00:00:00:00:0i+1).
pub fn mac_of(i: usize) -> String {
    format!("02:00:00:00:00:{:02x}", i + 1)
}

/// Packets per testpmd burst (the harness default `--burst=32`).
pub const BURST: u64 = 32;

/// Sum of all drop counters of a queue.
pub fn drops(q: &QueueStats) -> u64 {
    q.drop_no_buffer + q.drop_ring_full + q.drop_bad_desc + q.drop_no_route
}

/// Panics when `s` has any drop other than `drop_no_route` (flooding back to the ingress
/// port and unknown VLANs are counted there by design).
pub fn assert_no_drops(s: &PortStats) {
    let t = &s.total;
    assert_eq!(
        (t.drop_no_buffer, t.drop_ring_full, t.drop_bad_desc),
        (0, 0, 0),
        "port {} dropped packets: {s:?}",
        s.name
    );
}

/// A uswitchd in a temp dir with bridge `br0` and memif ports `p0..pN` of one role.
pub struct Switch {
    pub dir: tempfile::TempDir,
    pub sw: Uswitchd,
}

impl Switch {
    /// Starts uswitchd and adds bridge `br0`.
    pub fn with_bridge(tag: &str) -> Switch {
        let dir = crate::temp_dir(tag);
        let sw = Uswitchd::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        sw.ctl_ok(&["bridge", "add", "br0"]);
        Switch { dir, sw }
    }

    /// Socket path of port `name` (inside the temp dir).
    pub fn sock(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.sock"))
    }
    pub fn sock_str(&self, name: &str) -> String {
        self.sock(name).to_string_lossy().into_owned()
    }

    /// `port add NAME vhost-user --socket <dir>/NAME.sock --mode MODE --queues N --bridge br0`.
    pub fn add_vhost(&self, name: &str, mode: &str, queues: u16) {
        let sock = self.sock_str(name);
        let q = queues.to_string();
        self.sw.ctl_ok(&[
            "port",
            "add",
            name,
            "vhost-user",
            "--socket",
            &sock,
            "--mode",
            mode,
            "--queues",
            &q,
            "--bridge",
            "br0",
        ]);
    }

    /// `port add NAME memif --socket <dir>/NAME.sock --role ROLE --bridge br0 EXTRA...`.
    pub fn add_port(&self, name: &str, role: &str, extra: &[&str]) {
        let mut a = vec!["--bridge", "br0"];
        a.extend_from_slice(extra);
        self.sw.add_memif(name, &self.sock(name), role, &a);
    }
}

/// Sends `rounds × bursts` bursts (per stream) from `tx` and waits until `rx_port` of uswitch
/// has transmitted `expect` packets more than `before` (or times out); returns uswitch's tx
/// count delta of that port.
pub fn send_and_settle(
    sw: &Uswitchd,
    tx: &mut Testpmd,
    rounds: u32,
    bursts: u32,
    out_port: &str,
    expect: u64,
) -> u64 {
    let before = sw.stats(out_port).total.tx_packets;
    tx.send_paced(rounds, bursts, Duration::from_millis(5))
        .unwrap_or_else(|e| panic!("{e}"));
    crate::wait_until(Duration::from_secs(10), || {
        sw.stats(out_port).total.tx_packets >= before + expect
    });
    // Let anything in flight land, then read once more.
    std::thread::sleep(Duration::from_millis(200));
    sw.stats(out_port).total.tx_packets - before
}
