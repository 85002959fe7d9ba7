//! The polling loop behind every mode.
//!
//! - `tx`: sends on every link (stream id = link index, flows round-robin, `--rate` split
//!   evenly, `--count` split evenly) and also receives on every link (counted, sequence-checked).
//! - `rx`: receives on every link; sequence gaps per stream are reported as `lost`.
//! - `latency`: like `tx` but only link 0 sends, each burst stamped with the time since start;
//!   every stamped packet received on any link adds `now - stamp` to the histogram.
//! - `reflect`: links are paired (0↔1, 2↔3, …); first `--inject` packets per link are sent (like
//!   testpmd `--tx-first`), then every buffer received on one link of a pair is posted on the
//!   other by descriptor (zero-copy, [`Endpoint::forward`]).
//!
//! Timing: the clock is read every iteration only when pacing (`--rate` > 0) or stamping;
//! otherwise every 64 iterations. Control messages are polled every 10 ms, the progress line
//! every second. After `--warmup` the counters are snapshotted and the measurement window
//! runs for `--duration` seconds (or until `--count` packets are sent and acknowledged, or in
//! `rx` mode received).
use crate::endpoint::{Endpoint, EndpointOpts, LinkStats};
use crate::error::BenchError;
use crate::flows::Flows;
use crate::latency::Latency;
use crate::packet::{self, SeqCheck, Stamp, MIN_SIZE, PAYLOAD_OFF};
use crate::report::{snapshot, Counts, LinkReport, Progress, Report};
use std::time::{Duration, Instant};
use uswitch::shm::tsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Tx,
    Rx,
    Reflect,
    Latency,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Tx => "tx",
            Mode::Rx => "rx",
            Mode::Reflect => "reflect",
            Mode::Latency => "latency",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOpts {
    pub mode: Mode,
    pub sockets: Vec<String>,
    pub ids: Vec<u32>,
    pub size: usize,
    pub burst: usize,
    pub rate: u64,
    pub count: Option<u64>,
    pub flows: u32,
    pub dst_mac: Option<[u8; 6]>,
    pub duration: f64,
    pub warmup: f64,
    /// Keep running this long after the window (not counted), so the peer's own measurement
    /// can end first.
    pub linger: f64,
    pub inject: usize,
    pub progress: bool,
    /// Sleep this long after an iteration that moved nothing (tx/rx/latency; 0 = spin).
    pub idle_sleep: Duration,
    pub ep: EndpointOpts,
}

/// Reflector cycle accounting (busy TSC cycles, descriptors moved).
#[derive(Debug, Clone, Copy, Default)]
struct Cycles {
    prev: u64,
    busy: u64,
    moved: u64,
}

/// The report's figures, taken when the measurement window ends.
struct Frozen {
    t: f64,
    stats: Vec<LinkStats>,
    cyc: Cycles,
    lost: u64,
    ooo: u64,
    lat: Option<crate::latency::LatencySummary>,
}

/// Per sending link: templates, sequence, pacing.
struct Sender {
    link: usize,
    queue: usize,
    templates: Vec<Vec<u8>>,
    seq: u64,
    /// Packets this link must send in total (`--count`), if limited.
    quota: Option<u64>,
}

impl Sender {
    fn done(&self) -> bool {
        self.quota.is_some_and(|q| self.seq >= q)
    }

    /// Sends up to `budget` packets stamped `ts_ns`.
    #[inline]
    fn send(&mut self, ep: &mut Endpoint, budget: usize, ts_ns: u64) -> usize {
        let budget = match self.quota {
            Some(q) => budget.min((q - self.seq.min(q)) as usize),
            None => budget,
        };
        if budget == 0 {
            return 0;
        }
        let (seq, stream, t) = (self.seq, self.link as u8, &self.templates);
        let n = ep.tx(self.link, self.queue, budget, |i, seg| {
            let s = seq + i as u64;
            let tmpl = &t[(s % t.len() as u64) as usize];
            seg.write(0, tmpl);
            seg.write(
                PAYLOAD_OFF,
                &packet::payload(Stamp {
                    stream,
                    seq: s,
                    ts_ns,
                }),
            );
            tmpl.len() as u32
        });
        self.seq += n as u64;
        n
    }
}

/// Receives on every link: sequence check, latency.
#[inline]
fn receive_all(
    ep: &mut Endpoint,
    burst: usize,
    seq: &mut SeqCheck,
    lat: Option<(&mut Latency, u64)>,
) -> usize {
    let mut head = [0u8; MIN_SIZE];
    let (lat, now_ns) = match lat {
        Some((l, t)) => (Some(l), t),
        None => (None, 0),
    };
    let mut lat = lat;
    let nq = ep.queues();
    let mut got = 0;
    for (li, qi) in (0..ep.links.len()).flat_map(|l| (0..nq).map(move |q| (l, q))) {
        got += ep.rx(li, qi, burst, |seg| {
            let n = seg.read(0, &mut head);
            if let Some(s) = packet::parse(&head[..n]) {
                seq.check(&s);
                if let Some(l) = lat.as_deref_mut() {
                    if s.ts_ns != 0 {
                        l.record(now_ns.saturating_sub(s.ts_ns));
                    }
                }
            }
        });
    }
    got
}

/// reflect: seconds without any packet received before injecting again.
const REINJECT_AFTER: f64 = 0.1;

/// reflect: sends `--inject` packets on every link and queue (like testpmd `--tx-first`).
fn inject(ep: &mut Endpoint, o: &RunOpts, nl: usize, nq: usize) {
    if o.inject == 0 {
        return;
    }
    for (li, qi) in (0..nl).flat_map(|l| (0..nq).map(move |q| (l, q))) {
        let mut s = Sender {
            link: li,
            queue: qi,
            templates: {
                let flows = Flows::with_dst(li as u8, o.flows, o.dst_mac);
                (0..flows.len())
                    .map(|f| packet::build(flows.get(f), o.size))
                    .collect()
            },
            seq: 0,
            quota: None,
        };
        s.send(ep, o.inject, 0);
    }
}

/// Connects, runs the mode, and returns the report (also when a link went down mid-run: the
/// report says which and why).
pub fn run(o: &RunOpts) -> Result<Report, BenchError> {
    if o.mode == Mode::Reflect && !o.sockets.len().is_multiple_of(2) {
        return Err(BenchError::Usage(
            "reflect needs an even number of --socket (pairs 0-1, 2-3, ...)".into(),
        ));
    }
    let mut ep = Endpoint::connect(&o.sockets, &o.ids, &o.ep)?;
    let peers: Vec<String> = ep
        .links
        .iter()
        .map(|l| format!("{} ({})", l.socket, l.peer_name))
        .collect();
    eprintln!(
        "uswitch-bench: links up: {}; memory {}",
        peers.join(", "),
        ep.backing
    );

    let nl = ep.links.len();
    let nq = ep.queues();
    let tx_links: Vec<usize> = match o.mode {
        Mode::Tx => (0..nl).collect(),
        Mode::Latency => vec![0],
        Mode::Rx | Mode::Reflect => vec![],
    };
    let mut senders: Vec<Sender> = tx_links
        .iter()
        .enumerate()
        .map(|(k, &li)| {
            let flows = Flows::with_dst(li as u8, o.flows, o.dst_mac);
            let templates = (0..flows.len())
                .map(|f| packet::build(flows.get(f), o.size))
                .collect();
            let quota = o.count.map(|c| {
                let n = tx_links.len() as u64;
                c / n + u64::from((k as u64) < c % n)
            });
            Sender {
                link: li,
                queue: 0,
                templates,
                seq: 0,
                quota,
            }
        })
        .collect();
    let per_link_rate = if tx_links.is_empty() {
        0.0
    } else {
        o.rate as f64 / tx_links.len() as f64
    };
    let stamping = o.mode == Mode::Latency;
    let paced = o.rate > 0 && !tx_links.is_empty();

    let start = Instant::now();
    if o.mode == Mode::Reflect {
        inject(&mut ep, o, nl, nq);
    }
    // reflect: a loop whose rx count stands still for REINJECT_AFTER (every packet lost, e.g.
    // dropped by a starved switch) is restarted by injecting again.
    let mut last_rx = 0u64;
    let mut still_since: Option<f64> = None;
    let mut reinjections = 0u64;

    let mut seq = SeqCheck::default();
    let mut lat = Latency::new();
    let mut progress = Progress::new(o.progress, &ep);
    let mut measuring = o.warmup <= 0.0;
    let mut base: Vec<LinkStats> = snapshot(&ep);
    let mut base_lost = 0u64;
    let mut base_ooo = 0u64;
    let mut t_measure = 0.0f64;
    let mut next_control = 0.01f64;
    let mut next_progress = 1.0f64;
    let mut drain_since: Option<f64> = None;
    let mut iter: u64 = 0;
    let mut t = 0.0f64;
    let mut cyc = Cycles {
        prev: tsc(),
        ..Cycles::default()
    };
    let mut cyc_base = Cycles::default();
    let pairs: Vec<(usize, usize)> = (0..nl / 2).map(|p| (2 * p, 2 * p + 1)).collect();

    let mut frozen: Option<Frozen> = None;
    let end_t = loop {
        iter += 1;
        if paced || stamping || iter & 63 == 0 {
            t = start.elapsed().as_secs_f64();
        }
        match o.mode {
            Mode::Reflect => {
                let mut moved = 0;
                for &(a, b) in &pairs {
                    for q in 0..nq {
                        moved += ep.forward(a, b, q, o.burst);
                        moved += ep.forward(b, a, q, o.burst);
                    }
                }
                // Our own cost, accounted like the switch's: TSC per iteration that moved
                // something, per descriptor moved.
                let now_tsc = tsc();
                if moved > 0 {
                    cyc.busy += now_tsc.wrapping_sub(cyc.prev);
                    cyc.moved += moved as u64;
                }
                cyc.prev = now_tsc;
            }
            _ => {
                let ts = if stamping { (t * 1e9) as u64 } else { 0 };
                let mut moved = 0;
                for s in &mut senders {
                    let budget = if paced {
                        let due = (t * per_link_rate) as u64;
                        (due.saturating_sub(s.seq) as usize).min(o.burst)
                    } else {
                        o.burst
                    };
                    if budget > 0 {
                        moved += s.send(&mut ep, budget, ts.max(1));
                    }
                }
                let now_ns = if stamping {
                    start.elapsed().as_nanos() as u64
                } else {
                    0
                };
                let l = if stamping && measuring {
                    Some((&mut lat, now_ns))
                } else {
                    None
                };
                moved += receive_all(&mut ep, o.burst, &mut seq, l);
                if moved == 0 && !o.idle_sleep.is_zero() {
                    std::thread::sleep(o.idle_sleep);
                }
            }
        }
        if t < next_control {
            continue;
        }
        // ---- control tick (every 10 ms) ----
        next_control = t + 0.01;
        ep.poll_control();
        if ep.links.iter().all(|l| !l.is_up()) {
            break t;
        }
        if o.mode == Mode::Reflect && o.inject > 0 {
            let rx: u64 = ep.links.iter().map(|l| l.st.rx_packets).sum();
            if rx != last_rx {
                last_rx = rx;
                still_since = None;
            } else if t - *still_since.get_or_insert(t) >= REINJECT_AFTER {
                inject(&mut ep, o, nl, nq);
                reinjections += 1;
                still_since = None;
            }
        }
        if t >= next_progress {
            next_progress += 1.0;
            let phase = if measuring { "measure" } else { "warmup" };
            progress.tick(&ep, t, phase, seq.lost);
        }
        if !measuring && t >= o.warmup {
            measuring = true;
            base = snapshot(&ep);
            base_lost = seq.lost;
            base_ooo = seq.out_of_order;
            lat.clear();
            t_measure = t;
            cyc_base = cyc;
        }
        if measuring && frozen.is_none() && t - t_measure >= o.duration {
            // Window over: freeze the figures; keep running (not counted) for --linger.
            frozen = Some(Frozen {
                t,
                stats: snapshot(&ep),
                cyc,
                lost: seq.lost,
                ooo: seq.out_of_order,
                lat: stamping.then(|| lat.summary()).flatten(),
            });
        }
        if let Some(f) = &frozen {
            if t - f.t >= o.linger {
                break f.t;
            }
        }
        if o.mode == Mode::Rx {
            if let Some(c) = o.count {
                if ep.links.iter().map(|l| l.st.rx_packets).sum::<u64>() >= c {
                    break t;
                }
            }
        }
        if !senders.is_empty() && senders.iter().all(|s| s.done()) {
            // Every packet sent: wait (up to 1 s) until the server took them all.
            ep.reclaim_all();
            let since = *drain_since.get_or_insert(t);
            let in_flight: u32 = senders
                .iter()
                .map(|s| ep.links[s.link].tx_in_flight())
                .sum();
            if in_flight == 0 || t - since > 1.0 {
                // Let packets still inside the switch arrive (latency / tx+rx on one endpoint).
                let until = Instant::now() + Duration::from_millis(50);
                while Instant::now() < until {
                    receive_all(&mut ep, o.burst, &mut seq, None);
                }
                break start.elapsed().as_secs_f64();
            }
        }
    };
    progress.finish();
    if !measuring {
        // Ended during warm-up: report the whole run.
        base = vec![LinkStats::default(); nl];
        t_measure = 0.0;
    }
    let f = frozen.unwrap_or_else(|| Frozen {
        t: end_t,
        stats: snapshot(&ep),
        cyc,
        lost: seq.lost,
        ooo: seq.out_of_order,
        lat: stamping.then(|| lat.summary()).flatten(),
    });
    let window_s = (f.t - t_measure).max(1e-9);
    let mut links = Vec::with_capacity(nl);
    let (mut rx_pps, mut tx_pps, mut rx_bytes, mut tx_bytes, mut bad) =
        (0.0, 0.0, 0u64, 0u64, 0u64);
    for ((l, b), end) in ep.links.iter().zip(&base).zip(&f.stats) {
        let w = end.delta(b);
        let lr = LinkReport {
            socket: l.socket.clone(),
            peer: l.peer_name.clone(),
            up: l.is_up(),
            down_reason: l.down.clone(),
            window: Counts::from(w),
            rx_pps: w.rx_packets as f64 / window_s,
            tx_pps: w.tx_packets as f64 / window_s,
            total: Counts::from(*end),
        };
        rx_pps += lr.rx_pps;
        tx_pps += lr.tx_pps;
        rx_bytes += w.rx_bytes;
        tx_bytes += w.tx_bytes;
        bad += w.bad_desc;
        links.push(lr);
    }
    Ok(Report {
        mode: o.mode.name().to_string(),
        size: o.size,
        burst: o.burst,
        rate_pps: o.rate,
        flows: o.flows,
        memory: ep.backing.to_string(),
        warmup_s: o.warmup,
        window_s,
        rx_mpps_per_link: rx_pps / nl as f64 / 1e6,
        links,
        rx_pps,
        tx_pps,
        rx_gbps: rx_bytes as f64 * 8.0 / window_s / 1e9,
        tx_gbps: tx_bytes as f64 * 8.0 / window_s / 1e9,
        lost: f.lost - base_lost,
        out_of_order: f.ooo - base_ooo,
        bad_desc: bad,
        latency: f.lat,
        reinjections,
        busy_cycles_per_packet: {
            let (busy, moved) = if measuring {
                (f.cyc.busy - cyc_base.busy, f.cyc.moved - cyc_base.moved)
            } else {
                (f.cyc.busy, f.cyc.moved)
            };
            (o.mode == Mode::Reflect && moved > 0).then(|| busy as f64 / moved as f64)
        },
    })
}
