//! Latency samples and their percentiles (p50/p95/p99/p99.9/max), for nodes that measure the
//! end-to-end latency from the correlation timestamps and for the benchmark harnesses.

/// A bounded set of latency samples in ns.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    samples: Vec<u64>,
    cap: usize,
    overflow: u64,
}

/// Percentiles of a [`Latencies`], in ms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median, ms.
    pub p50: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest, ms.
    pub max: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.3}ms p95={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms",
            self.n, self.p50, self.p95, self.p99, self.p999, self.max
        )
    }
}

impl Latencies {
    /// Keeps at most `cap` samples (later ones are counted, not kept).
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            samples: Vec::with_capacity(cap.min(1 << 16)),
            cap,
            overflow: 0,
        }
    }

    /// Records one latency.
    pub fn record(&mut self, ns: u64) {
        if self.samples.len() < self.cap {
            self.samples.push(ns);
        } else {
            self.overflow += 1;
        }
    }

    /// Samples not kept because the cap was reached.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// Percentiles (nearest rank), `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
            s[rank - 1] as f64 / 1e6
        };
        Some(Summary {
            n: s.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: s[s.len() - 1] as f64 / 1e6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::with_capacity(1000);
        for i in 1..=100u64 {
            l.record(i * 1_000_000);
        }
        let s = l.summary().unwrap();
        assert_eq!(
            (s.n, s.p50, s.p95, s.p99, s.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert!(Latencies::default().summary().is_none());
    }

    #[test]
    fn cap_counts_overflow() {
        let mut l = Latencies::with_capacity(2);
        for i in 0..5 {
            l.record(i);
        }
        assert_eq!((l.summary().unwrap().n, l.overflow()), (2, 3));
    }
}
