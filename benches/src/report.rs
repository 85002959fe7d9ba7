//! Results: the live progress line and the final report (text or `--json`).
//!
//! Rates are over the measurement window (after `--warmup`); totals cover the whole run.
//! Gbps counts frame bytes as carried in memif buffers (no preamble, FCS or gap).
//! JSON keys (stable, used by `benches/loopback.sh` and the integration test): `mode`,
//! `window_s`, `links[]` (`socket`, `peer`, `up`, `down_reason`, `window`, `total`), `rx_pps`,
//! `tx_pps`, `rx_mpps_per_link`, `rx_gbps`, `tx_gbps`, `lost`, `out_of_order`, `bad_desc`,
//! `latency` (latency mode), `busy_cycles_per_packet` (reflect mode).
use crate::endpoint::{Endpoint, LinkStats};
use crate::latency::LatencySummary;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub bad_desc: u64,
}

impl From<LinkStats> for Counts {
    fn from(s: LinkStats) -> Counts {
        Counts {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            bad_desc: s.bad_desc,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    pub socket: String,
    pub peer: String,
    pub up: bool,
    pub down_reason: Option<String>,
    pub window: Counts,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub total: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub size: usize,
    pub burst: usize,
    pub rate_pps: u64,
    pub flows: u32,
    pub memory: String,
    pub warmup_s: f64,
    pub window_s: f64,
    pub links: Vec<LinkReport>,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub rx_mpps_per_link: f64,
    pub rx_gbps: f64,
    pub tx_gbps: f64,
    pub lost: u64,
    pub out_of_order: u64,
    pub bad_desc: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// reflect: our busy TSC cycles per forwarded descriptor in the window (like the switch's
    /// figure; polls that moved nothing are not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_cycles_per_packet: Option<f64>,
    /// reflect: times the loop had died (nothing received for 100 ms) and was injected again.
    pub reinjections: u64,
}

/// Per-link counters at one instant.
pub fn snapshot(ep: &Endpoint) -> Vec<LinkStats> {
    ep.links.iter().map(|l| l.st).collect()
}

/// Sums rx/tx packets and bytes over links of `now - then`.
pub fn sum_delta(now: &[LinkStats], then: &[LinkStats]) -> LinkStats {
    let mut t = LinkStats::default();
    for (a, b) in now.iter().zip(then) {
        let d = a.delta(b);
        t.rx_packets += d.rx_packets;
        t.rx_bytes += d.rx_bytes;
        t.tx_packets += d.tx_packets;
        t.tx_bytes += d.tx_bytes;
        t.bad_desc += d.bad_desc;
    }
    t
}

/// Live progress on a terminal: rewritten in place once a second.
pub struct Progress {
    enabled: bool,
    last: Vec<LinkStats>,
    last_t: f64,
}

impl Progress {
    pub fn new(enabled: bool, ep: &Endpoint) -> Progress {
        Progress {
            enabled,
            last: snapshot(ep),
            last_t: 0.0,
        }
    }

    /// Prints the rates since the previous call; `t` = seconds since start.
    pub fn tick(&mut self, ep: &Endpoint, t: f64, phase: &str, lost: u64) {
        let now = snapshot(ep);
        let dt = (t - self.last_t).max(1e-9);
        let d = sum_delta(&now, &self.last);
        self.last = now;
        self.last_t = t;
        if !self.enabled {
            return;
        }
        let drops = lost + d.bad_desc;
        let line = format!(
            "\r[{t:6.1}s {phase:7}] rx {:7.3} Mpps {:6.2} Gbps | tx {:7.3} Mpps {:6.2} Gbps | drops {drops}   ",
            d.rx_packets as f64 / dt / 1e6,
            d.rx_bytes as f64 * 8.0 / dt / 1e9,
            d.tx_packets as f64 / dt / 1e6,
            d.tx_bytes as f64 * 8.0 / dt / 1e9,
        );
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(line.as_bytes());
        let _ = e.flush();
    }

    pub fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}

impl Report {
    /// Human-readable summary.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} over {:.2} s (after {:.1} s warm-up), {} B frames, burst {}, memory {}\n",
            self.mode, self.window_s, self.warmup_s, self.size, self.burst, self.memory
        );
        for l in &self.links {
            s += &format!(
                "  {:<40} rx {:8.3} Mpps  tx {:8.3} Mpps  (total rx {} tx {}){}\n",
                l.socket,
                l.rx_pps / 1e6,
                l.tx_pps / 1e6,
                l.total.rx_packets,
                l.total.tx_packets,
                l.down_reason
                    .as_deref()
                    .map(|r| format!("  DOWN: {r}"))
                    .unwrap_or_default()
            );
        }
        s += &format!(
            "  all: rx {:.3} Mpps ({:.2} Gbps), tx {:.3} Mpps ({:.2} Gbps), rx per link {:.3} Mpps; lost {} out-of-order {} bad desc {}\n",
            self.rx_pps / 1e6,
            self.rx_gbps,
            self.tx_pps / 1e6,
            self.tx_gbps,
            self.rx_mpps_per_link,
            self.lost,
            self.out_of_order,
            self.bad_desc
        );
        if let Some(c) = self.busy_cycles_per_packet {
            s += &format!("  reflector busy cycles/packet: {c:.1}\n");
        }
        if self.reinjections > 0 {
            s += &format!(
                "  reflector: the loop died {} times (nothing received for 100 ms) and was re-injected\n",
                self.reinjections
            );
        }
        if let Some(l) = &self.latency {
            s += &format!("  {}\n", l.line());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_delta_adds_links() {
        let a = LinkStats {
            rx_packets: 10,
            rx_bytes: 640,
            tx_packets: 5,
            tx_bytes: 320,
            bad_desc: 1,
        };
        let b = LinkStats {
            rx_packets: 4,
            rx_bytes: 256,
            tx_packets: 1,
            tx_bytes: 64,
            bad_desc: 0,
        };
        let now = [a, a];
        let then = [b, LinkStats::default()];
        let d = sum_delta(&now, &then);
        assert_eq!(d.rx_packets, 6 + 10);
        assert_eq!(d.tx_bytes, 256 + 320);
        assert_eq!(d.bad_desc, 2);
    }
}
