//! Deterministic hot-path workload for instruction counting (valgrind callgrind), because the
//! build machines are too noisy for timing small changes.
//!
//! `icount MODE ITERS [BURST]`: a [`Switch`] with two memif server ports a, b (one bridge, or
//! an xconnect) and two in-process memif client peers pa, pb. Every iteration each peer sends
//! one burst of BURST (default 32, at most 64) frames of 64 B (like `testpmd --tx-first`
//! traffic, MACs never learned as destinations: pa sends src mac(1) → mac(100), pb src
//! mac(2) → mac(101)), then one `Switch::poll` moves both bursts, then the peers drain. MODE:
//! `bridge`, `xconnect`, `bridge-known` (destinations learned: unicast), `idle` (no traffic:
//! the cost of empty polls).
//!
//! Count only the switch's work:
//! `valgrind --tool=callgrind --toggle-collect='*Switch*poll*' target/release/examples/icount
//! bridge 2000`, then Ir / packets (printed on stderr). `idle` prints polls instead. BURST 1
//! or 2 models the small bursts a slow peer (the testpmd reflector) leaves the switch.
#[path = "../common/memif_rig.rs"]
mod memif_rig;

use memif_rig::{bring_up, drain, memif_cfg, sock, tx_set};
use uswitch::bridge::Switch;
use uswitch::config::{BridgeConfig, MemifRole, VlanMode};
use uswitch::dataplane::Attach;
use uswitch::fakeport::{frame, mac, BROADCAST};
use uswitch::memif::MemifPort;
use uswitch::port::{PktRef, Port};

const MAX_BURST: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("bridge", String::as_str).to_string();
    let iters: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let burst: usize = match args.get(3).map(|s| s.parse::<usize>()) {
        None => 32,
        Some(Ok(b)) if (1..=MAX_BURST).contains(&b) => b,
        Some(_) => {
            eprintln!("icount: BURST must be a number in 1..={MAX_BURST}");
            std::process::exit(2);
        }
    };
    let (sa, sb) = (sock("icount-a"), sock("icount-b"));
    let mut sw = Switch::new();
    let xc = mode == "xconnect";
    let attach = || {
        if xc {
            Attach::None
        } else {
            Attach::Bridge {
                bridge: "br0".into(),
                vlan: VlanMode::None,
            }
        }
    };
    if !xc {
        sw.add_bridge(BridgeConfig::new("br0")).expect("bridge");
    }
    let a = MemifPort::new("a", &memif_cfg(&sa, MemifRole::Server)).expect("a");
    let b = MemifPort::new("b", &memif_cfg(&sb, MemifRole::Server)).expect("b");
    sw.add_port(Box::new(a), attach()).expect("add a");
    sw.add_port(Box::new(b), attach()).expect("add b");
    if xc {
        sw.xconnect("a", "b").expect("xconnect");
    }
    let mut pa = MemifPort::new("pa", &memif_cfg(&sa, MemifRole::Client)).expect("pa");
    let mut pb = MemifPort::new("pb", &memif_cfg(&sb, MemifRole::Client)).expect("pb");
    bring_up(Some(&mut sw), &mut [&mut pa, &mut pb]);
    let mut scratch = vec![PktRef::default(); MAX_BURST];
    let known = mode == "bridge-known";
    let (da, db) = if known {
        (mac(2), mac(1))
    } else {
        (mac(100), mac(101))
    };
    let set_a = tx_set(&vec![frame(da, mac(1), None, 64); burst]);
    let set_b = tx_set(&vec![frame(db, mac(2), None, 64); burst]);
    if known {
        let hello = tx_set(&[frame(BROADCAST, mac(2), None, 64)]);
        pb.tx_burst(0, &hello.pkts, &hello.items);
        let hello = tx_set(&[frame(BROADCAST, mac(1), None, 64)]);
        pa.tx_burst(0, &hello.pkts, &hello.items);
        sw.poll();
        drain(&mut pa, &mut scratch);
        drain(&mut pb, &mut scratch);
    }
    let mut moved = 0u64;
    let mut got = 0u64;
    for _ in 0..iters {
        if mode != "idle" {
            pa.tx_burst(0, &set_a.pkts, &set_a.items);
            pb.tx_burst(0, &set_b.pkts, &set_b.items);
        }
        moved += sw.poll() as u64;
        got += drain(&mut pa, &mut scratch) as u64;
        got += drain(&mut pb, &mut scratch) as u64;
    }
    eprintln!(
        "icount {mode}: burst {burst} iterations {iters} polls {iters} packets {moved} delivered {got}"
    );
    if mode != "idle" {
        assert_eq!(moved, iters * 2 * burst as u64, "every frame moved");
        assert_eq!(got, moved, "every frame delivered");
    }
}
