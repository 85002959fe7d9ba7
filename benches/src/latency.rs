//! Latency recording: an HDR histogram of one-way (tx → switch → rx) delays in nanoseconds.
//!
//! Values are clamped to 1 ns ..= [`MAX_NS`] (10 s) so recording never fails; 3 significant
//! digits (0.1 % resolution). Percentiles come out as nanoseconds.
use hdrhistogram::Histogram;
use serde::Serialize;

pub const MAX_NS: u64 = 10_000_000_000;

pub struct Latency {
    h: Histogram<u64>,
}

/// The summary printed and put in the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p99_9_ns: u64,
    pub max_ns: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // 1 ns .. 10 s with 3 significant digits: valid bounds, cannot fail.
        let h = Histogram::new_with_bounds(1, MAX_NS, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits are valid"));
        Latency { h }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        let _ = self.h.record(ns.clamp(1, MAX_NS));
    }

    pub fn clear(&mut self) {
        self.h.reset();
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// None when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.h.is_empty() {
            return None;
        }
        let q = |p: f64| self.h.value_at_quantile(p);
        Some(LatencySummary {
            samples: self.h.len(),
            min_ns: self.h.min(),
            mean_ns: self.h.mean(),
            p50_ns: q(0.50),
            p90_ns: q(0.90),
            p99_ns: q(0.99),
            p99_9_ns: q(0.999),
            max_ns: self.h.max(),
        })
    }
}

impl LatencySummary {
    /// One line: `latency (n=...): p50 1.23 us p90 ... max ...`.
    pub fn line(&self) -> String {
        let us = |ns: u64| ns as f64 / 1000.0;
        format!(
            "latency ({} samples): min {:.2} us  p50 {:.2} us  p90 {:.2} us  p99 {:.2} us  p99.9 {:.2} us  max {:.2} us",
            self.samples,
            us(self.min_ns),
            us(self.p50_ns),
            us(self.p90_ns),
            us(self.p99_ns),
            us(self.p99_9_ns),
            us(self.max_ns)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentile within HDR's 3-digit precision of the exact value.
    fn close(got: u64, want: u64) -> bool {
        let tol = (want / 500).max(1);
        got.abs_diff(want) <= tol
    }

    #[test]
    fn percentiles_of_a_uniform_ramp() {
        let mut l = Latency::new();
        assert!(l.summary().is_none());
        for v in 1..=100_000u64 {
            l.record(v);
        }
        let s = l.summary().unwrap();
        assert_eq!(s.samples, 100_000);
        assert_eq!(s.min_ns, 1);
        assert!(close(s.p50_ns, 50_000), "{s:?}");
        assert!(close(s.p90_ns, 90_000), "{s:?}");
        assert!(close(s.p99_ns, 99_000), "{s:?}");
        assert!(close(s.p99_9_ns, 99_900), "{s:?}");
        assert!(close(s.max_ns, 100_000), "{s:?}");
        assert!((s.mean_ns - 50_000.5).abs() < 100.0, "{s:?}");
    }

    #[test]
    fn tail_is_seen_and_extremes_clamped() {
        let mut l = Latency::new();
        for _ in 0..999 {
            l.record(1_000);
        }
        l.record(5_000_000);
        let s = l.summary().unwrap();
        assert!(close(s.p99_ns, 1_000));
        assert!(close(s.max_ns, 5_000_000));
        assert!(close(s.p99_9_ns, 1_000), "999 of 1000 are 1 us: {s:?}");
        l.record(0);
        l.record(u64::MAX);
        let s = l.summary().unwrap();
        assert_eq!(s.min_ns, 1);
        assert!(close(s.max_ns, MAX_NS));
        l.clear();
        assert!(l.is_empty());
        assert!(s.line().contains("p99.9"));
    }
}
