//! Hot-path micro benchmarks (criterion): MAC table lookups, bridge and xconnect burst
//! forwarding with in-memory fake ports.
//!
//! Run: `cargo bench -p uswitch-bench --bench hotpath` (add a filter such as `fdb` to run part).
//! Each group is kept short (3 s measurement) because the build machines are small and shared.
//!
//! - `fdb/lookup_{hit,miss}/{1k,64k}`: our open-addressing table vs `std::HashMap` with
//!   reserved capacity (the alternative the design considered), 1024 lookups per iteration.
//! - `forward/*`: one `Switch::poll` over a bridge with fake ports: port `a` replays a burst of
//!   32 frames (no copy on rx), the destination copies each frame once into a scratch buffer
//!   (what a real port's tx costs). Throughput is in packets. `forward_small_burst/*`: the same
//!   with bursts of 4 frames (the per-burst share of the bridge's cost).
//! - `memif/*`: real memif ports over a Unix socket and shared memory, all in this thread.
//!   `c2s_burst`: a client port transmits 32 frames, the server port receives and releases them
//!   (ring enqueue + dequeue, one copy). `bridge_memif_to_memif`: peer client → server port A →
//!   bridge → server port B → peer client, per burst of 32 (three copies: peer tx, switch tx,
//!   none on rx).
#[path = "../common/memif_rig.rs"]
mod memif_rig;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use memif_rig::{bring_up, drain, memif_cfg, sock, tx_set};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uswitch::bridge::{Fdb, Switch};
use uswitch::config::{BridgeConfig, MemifRole, VlanMode};
use uswitch::dataplane::Attach;
use uswitch::fakeport::{frame, mac, FakePort, BROADCAST};
use uswitch::memif::MemifPort;
use uswitch::port::{PktRef, Port};

const BURST: usize = 32;
/// Frames per burst of the `forward_small_burst` group.
const SMALL_BURST: usize = 4;

fn macs(n: u32, salt: u8) -> Vec<[u8; 6]> {
    (0..n)
        .map(|i| {
            let b = i.to_be_bytes();
            [0x02, salt, b[0], b[1], b[2], b[3]]
        })
        .collect()
}

fn bench_fdb(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (label, n) in [("1k", 1024u32), ("64k", 65536)] {
        let present = macs(n, 0);
        let absent = macs(n, 1);
        let mut fdb = Fdb::new(n, 300);
        let mut map: HashMap<(u16, [u8; 6]), (u16, u64)> = HashMap::with_capacity(n as usize);
        for (i, m) in present.iter().enumerate() {
            fdb.learn(10, m, (i % 8) as u16, 0);
            map.insert((10, *m), ((i % 8) as u16, 0));
        }
        // Look up a pseudo-random 1024-key sample so the 64k case is not all cache hits.
        let step = (n / 1024).max(1) as usize * 7 + 1;
        let pick = |v: &Vec<[u8; 6]>| -> Vec<[u8; 6]> {
            (0..1024).map(|k| v[(k * step) % v.len()]).collect()
        };
        let hits = pick(&present);
        let misses = pick(&absent);
        g.throughput(Throughput::Elements(1024));
        g.bench_function(BenchmarkId::new("lookup_hit", label), |b| {
            b.iter(|| {
                let mut s = 0u32;
                for m in &hits {
                    s += u32::from(fdb.lookup(10, black_box(m), 1).unwrap_or(0));
                }
                s
            })
        });
        g.bench_function(BenchmarkId::new("lookup_miss", label), |b| {
            b.iter(|| {
                let mut s = 0u32;
                for m in &misses {
                    s += u32::from(fdb.lookup(10, black_box(m), 1).is_some());
                }
                s
            })
        });
        g.bench_function(BenchmarkId::new("hashmap_hit", label), |b| {
            b.iter(|| {
                let mut s = 0u32;
                for m in &hits {
                    s += u32::from(map.get(&(10, *black_box(m))).map_or(0, |v| v.0));
                }
                s
            })
        });
        g.bench_function(BenchmarkId::new("learn_refresh", label), |b| {
            b.iter(|| {
                for (i, m) in hits.iter().enumerate() {
                    fdb.learn(10, black_box(m), (i % 8) as u16, 2);
                }
            })
        });
    }
    g.finish();
}

/// A switch with ports `a` (replaying `burst`) and `others` more ports on bridge br0 (or an
/// xconnect a↔b when `xconnect`), with `b`'s MAC learned.
fn rig(burst: &[Vec<u8>], others: usize, xconnect: bool) -> Switch {
    let mut sw = Switch::new();
    sw.add_bridge(BridgeConfig::new("br0")).expect("bridge");
    let attach = || {
        if xconnect {
            Attach::None
        } else {
            Attach::Bridge {
                bridge: "br0".into(),
                vlan: VlanMode::None,
            }
        }
    };
    let (mut a, _) = FakePort::new("a");
    a.set_capture(false);
    a.set_replay(burst);
    sw.add_port(Box::new(a), attach()).expect("port a");
    let mut handles = Vec::new();
    for k in 0..others {
        let name = format!("p{k}");
        let (mut p, h) = FakePort::new(&name);
        p.set_capture(false);
        sw.add_port(Box::new(p), attach()).expect("port");
        handles.push(h);
    }
    if xconnect {
        sw.xconnect("a", "p0").expect("xconnect");
    }
    sw.control_tick(Instant::now(), 1);
    // p0 announces mac(2) so unicast to it is known.
    handles[0].inject(&frame(BROADCAST, mac(2), None, 64));
    while handles[0].pending_rx() > 0 {
        sw.poll();
    }
    sw
}

fn bench_forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(BURST as u64));
    for size in [64usize, 1500] {
        let unicast: Vec<Vec<u8>> = (0..BURST)
            .map(|_| frame(mac(2), mac(1), None, size))
            .collect();
        let mut sw = rig(&unicast, 2, false);
        g.bench_function(BenchmarkId::new("bridge_unicast", size), |b| {
            b.iter(|| sw.poll())
        });

        // 32 different sources in one burst: no per-burst cache hits on the learning side.
        let flows: Vec<Vec<u8>> = (0..BURST as u16)
            .map(|k| frame(mac(2), mac(100 + k), None, size))
            .collect();
        let mut sw = rig(&flows, 2, false);
        g.bench_function(BenchmarkId::new("bridge_unicast_32src", size), |b| {
            b.iter(|| sw.poll())
        });

        let bcast: Vec<Vec<u8>> = (0..BURST)
            .map(|_| frame(BROADCAST, mac(1), None, size))
            .collect();
        let mut sw = rig(&bcast, 3, false);
        g.bench_function(BenchmarkId::new("bridge_flood_3", size), |b| {
            b.iter(|| sw.poll())
        });

        let mut sw = rig(&unicast, 1, true);
        g.bench_function(BenchmarkId::new("xconnect", size), |b| b.iter(|| sw.poll()));
    }
    g.finish();

    // Bursts of 4: what a ring visit carries when the switch keeps ahead of its peers over
    // many ports (the 16-port xconnect loopback: 4-14 frames per visit, `pkt/busy iter` /
    // ports). The per-burst costs weigh 8x more per packet than at 32.
    let mut g = c.benchmark_group("forward_small_burst");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(SMALL_BURST as u64));
    let unicast: Vec<Vec<u8>> = (0..SMALL_BURST)
        .map(|_| frame(mac(2), mac(1), None, 64))
        .collect();
    let mut sw = rig(&unicast, 2, false);
    g.bench_function(BenchmarkId::new("bridge_unicast", 64), |b| {
        b.iter(|| sw.poll())
    });
    let mut sw = rig(&unicast, 1, true);
    g.bench_function(BenchmarkId::new("xconnect", 64), |b| b.iter(|| sw.poll()));
    g.finish();
}

fn bench_memif(c: &mut Criterion) {
    let mut g = c.benchmark_group("memif");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(BURST as u64));
    let mut scratch = vec![PktRef::default(); 64];
    for size in [64usize, 1500] {
        let set = tx_set(
            &(0..BURST)
                .map(|_| frame(mac(2), mac(1), None, size))
                .collect::<Vec<_>>(),
        );

        let s = sock("ring");
        let mut srv = MemifPort::new("srv", &memif_cfg(&s, MemifRole::Server)).expect("server");
        let mut cli = MemifPort::new("cli", &memif_cfg(&s, MemifRole::Client)).expect("client");
        bring_up(None, &mut [&mut srv, &mut cli]);
        g.bench_function(BenchmarkId::new("c2s_burst", size), |b| {
            b.iter(|| {
                let sent = cli.tx_burst(0, &set.pkts, &set.items);
                let got = drain(&mut srv, &mut scratch);
                assert_eq!((sent, got), (BURST, BURST));
            })
        });
        drop((srv, cli));

        // Switch: server ports a and b on br0; peers pa and pb are clients.
        let (sa, sb) = (sock("a"), sock("b"));
        let mut sw = Switch::new();
        sw.add_bridge(BridgeConfig::new("br0")).expect("bridge");
        let on_br = || Attach::Bridge {
            bridge: "br0".into(),
            vlan: VlanMode::None,
        };
        let a = MemifPort::new("a", &memif_cfg(&sa, MemifRole::Server)).expect("a");
        let bp = MemifPort::new("b", &memif_cfg(&sb, MemifRole::Server)).expect("b");
        sw.add_port(Box::new(a), on_br()).expect("add a");
        sw.add_port(Box::new(bp), on_br()).expect("add b");
        let mut pa = MemifPort::new("pa", &memif_cfg(&sa, MemifRole::Client)).expect("pa");
        let mut pb = MemifPort::new("pb", &memif_cfg(&sb, MemifRole::Client)).expect("pb");
        bring_up(Some(&mut sw), &mut [&mut pa, &mut pb]);
        // pb announces mac(2) so a→b is known unicast.
        let hello = tx_set(&[frame(BROADCAST, mac(2), None, 64)]);
        pb.tx_burst(0, &hello.pkts, &hello.items);
        sw.poll();
        drain(&mut pa, &mut scratch);
        g.bench_function(BenchmarkId::new("bridge_memif_to_memif", size), |b| {
            b.iter(|| {
                let sent = pa.tx_burst(0, &set.pkts, &set.items);
                let moved = sw.poll();
                let got = drain(&mut pb, &mut scratch);
                assert_eq!((sent, moved, got), (BURST, BURST, BURST));
            })
        });
        drop((pa, pb, sw));
    }
    g.finish();
}

criterion_group!(benches, bench_fdb, bench_forward, bench_memif);
criterion_main!(benches);
