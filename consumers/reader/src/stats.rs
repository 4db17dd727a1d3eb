//! Latency statistics and the summary consumers print.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds (1 µs to 100 s, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Latency {
            hist: Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds"),
        }
    }

    /// Records one latency in nanoseconds (clamped to the histogram's range).
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record((ns / 1000).max(1));
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Forgets all samples.
    pub fn clear(&mut self) {
        self.hist.reset();
    }

    /// The percentiles.
    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        let q = |p: f64| self.hist.value_at_quantile(p) as f64;
        LatencySummary {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: self.hist.max() as f64,
            mean: self.hist.mean(),
        }
    }
}

/// The machine-readable summary of a consumer's run (`--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Multi-frames received and accepted (validated).
    pub frames: u64,
    /// Frames whose synthetic cameras all matched the pattern.
    pub verified: u64,
    /// Frames accepted as whole that did not match the pattern (must be 0).
    pub corrupt: u64,
    /// Reads discarded because a write overlapped them.
    pub torn: u64,
    /// Frames lost because the producer overwrote them first.
    pub lapped: u64,
    /// Frames passed over on purpose to stay on the newest (latest mode).
    pub skipped: u64,
    /// Slots whose header failed validation.
    pub invalid: u64,
    /// Producer restarts followed without restarting the consumer.
    pub resyncs: u64,
    /// Seconds the consumer ran.
    pub duration_s: f64,
    /// Frames per second over the run.
    pub fps: f64,
    /// Capture-to-consumer latency, microseconds.
    pub latency_us: LatencySummary,
    /// Why the first corrupt frame was refused, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_corruption: Option<String>,
}
