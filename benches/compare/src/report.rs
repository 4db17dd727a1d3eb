//! The figures: accumulated per cell over the rounds, turned into results (with ratios to
//! the memcpy and TCP baselines), written as JSON and as Markdown tables.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use camring_testkit::{add_buckets, histogram};
use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use crate::cell::{Cell, CellReport};
use crate::profile::{Profile, Rate, Transport};

/// What one cell reported, summed over the rounds.
#[derive(Debug)]
pub struct Acc {
    cell: Cell,
    hist: Histogram<u64>,
    frames: u64,
    bytes: u64,
    dropped: u64,
    corrupt: u64,
    published: u64,
    missed_ticks: u64,
    ack_timeouts: u64,
    sender_cpu_ns: u64,
    consumer_cpu_ns: u64,
    /// Sum of every consumer's window (nanoseconds): rates are per consumer.
    sink_window_ns: u64,
    rounds: u32,
    errors: Vec<String>,
}

impl Acc {
    /// Nothing yet for `cell`.
    pub fn new(cell: Cell) -> Acc {
        Acc {
            cell,
            hist: histogram(),
            frames: 0,
            bytes: 0,
            dropped: 0,
            corrupt: 0,
            published: 0,
            missed_ticks: 0,
            ack_timeouts: 0,
            sender_cpu_ns: 0,
            consumer_cpu_ns: 0,
            sink_window_ns: 0,
            rounds: 0,
            errors: Vec::new(),
        }
    }

    /// Adds one round's reports (latency histograms merged from their `[value, count]`).
    pub fn add(&mut self, r: &CellReport) -> Result<()> {
        for s in &r.sinks {
            add_buckets(&mut self.hist, &s.latency_ns).context("merging latencies")?;
            self.frames += s.frames;
            self.bytes += s.bytes;
            self.dropped += s.dropped;
            self.corrupt += s.corrupt;
            self.consumer_cpu_ns += s.cpu_ns;
            self.sink_window_ns += s.window_ns;
        }
        self.published += r.source.published;
        self.missed_ticks += r.source.missed_ticks;
        self.ack_timeouts += r.source.ack_timeouts;
        self.sender_cpu_ns += r.source.cpu_ns;
        self.rounds += 1;
        Ok(())
    }

    /// The cell.
    pub fn cell(&self) -> Cell {
        self.cell
    }

    /// Records that round `round` (from 0) failed.
    pub fn fail(&mut self, round: u32, error: &anyhow::Error) {
        self.errors.push(format!("round {}: {error:#}", round + 1));
    }

    /// The cell's result (ratios filled in by [`results`]).
    fn result(&self) -> CellResult {
        let window_s = self.sink_window_ns as f64 / 1e9;
        let per_s = |x: u64| {
            if window_s > 0.0 {
                x as f64 / window_s
            } else {
                0.0
            }
        };
        let us_per = |ns: u64, n: u64| {
            if n > 0 {
                ns as f64 / 1e3 / n as f64
            } else {
                0.0
            }
        };
        let hosted = self.cell.transport == Transport::Memcpy;
        // The memcpy baseline's consumers live in the sender: its CPU is per copy.
        let (sender, consumer) = if hosted {
            (us_per(self.sender_cpu_ns, self.frames), 0.0)
        } else {
            (
                us_per(self.sender_cpu_ns, self.published),
                us_per(self.consumer_cpu_ns, self.frames),
            )
        };
        let mut error = (!self.errors.is_empty()).then(|| self.errors.join("; "));
        if error.is_none() && self.frames == 0 {
            error = Some("no multi-frame received in the window".into());
        }
        let q = |q: f64| self.hist.value_at_quantile(q) as f64 / 1e3;
        let latency_us = if self.frames > 0 {
            LatencyUs {
                p50: q(0.5),
                p99: q(0.99),
                p999: q(0.999),
            }
        } else {
            LatencyUs::default()
        };
        CellResult {
            transport: self.cell.transport,
            profile: self.cell.profile,
            rate: self.cell.rate,
            consumers: self.cell.consumers,
            frames: self.frames,
            fps: per_s(self.frames),
            bytes_per_s: per_s(self.bytes),
            latency_us,
            cpu_us_per_frame: sender + consumer,
            cpu_us_per_frame_sender: sender,
            cpu_us_per_frame_consumer: consumer,
            dropped: self.dropped,
            corrupt: self.corrupt,
            published: self.published,
            missed_ticks: self.missed_ticks,
            ack_timeouts: self.ack_timeouts,
            rounds: self.rounds,
            vs_memcpy: None,
            vs_tcp: None,
            error,
        }
    }
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyUs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// A transport's figures divided by a baseline's, in the same group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    /// fps ÷ the baseline's fps.
    pub fps: f64,
    /// p50 latency ÷ the baseline's.
    pub p50: f64,
}

/// One cell's figures, as in the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    /// The transport.
    pub transport: Transport,
    /// The payload profile.
    pub profile: Profile,
    /// `30fps` or `max`.
    #[serde(serialize_with = "rate_name")]
    pub rate: Rate,
    /// Number of consumers.
    pub consumers: u32,
    /// Multi-frames received inside the windows, all consumers and rounds.
    pub frames: u64,
    /// Multi-frames received per second, per consumer.
    pub fps: f64,
    /// Payload bytes received per second, per consumer.
    pub bytes_per_s: f64,
    /// Capture → receive latency percentiles.
    pub latency_us: LatencyUs,
    /// Sender plus consumer CPU time per multi-frame, microseconds.
    pub cpu_us_per_frame: f64,
    /// The sender's CPU time per multi-frame published (memcpy: per copy).
    pub cpu_us_per_frame_sender: f64,
    /// A consumer's CPU time per multi-frame received.
    pub cpu_us_per_frame_consumer: f64,
    /// Multi-frames missed by the consumers (summed).
    pub dropped: u64,
    /// Multi-frames that arrived not as sent.
    pub corrupt: u64,
    /// Multi-frames the sender published inside the windows.
    pub published: u64,
    /// Ticks of the 30 fps clock the sender missed.
    pub missed_ticks: u64,
    /// Times the sender at the maximum rate sent on without the acknowledgement it waited
    /// for (lost multi-frames).
    pub ack_timeouts: u64,
    /// Rounds that completed.
    pub rounds: u32,
    /// Ratios to memcpy in the same group (null when it failed).
    pub vs_memcpy: Option<Ratio>,
    /// Ratios to TCP in the same group (null when it failed).
    pub vs_tcp: Option<Ratio>,
    /// Why the cell failed, or null.
    pub error: Option<String>,
}

fn rate_name<S: Serializer>(rate: &Rate, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(rate.name())
}

impl CellResult {
    /// Whether the cell has figures to compare.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn same_group(&self, other: &CellResult) -> bool {
        self.profile == other.profile
            && self.rate == other.rate
            && self.consumers == other.consumers
    }

    /// Names the cell in messages.
    pub fn cell(&self) -> Cell {
        Cell {
            transport: self.transport,
            profile: self.profile,
            rate: self.rate,
            consumers: self.consumers,
        }
    }
}

/// The results of `accs` (in their order), with the ratios to the baselines.
pub fn results(accs: &[Acc]) -> Vec<CellResult> {
    let mut results: Vec<CellResult> = accs.iter().map(Acc::result).collect();
    let snapshot = results.clone();
    let ratio = |r: &CellResult, baseline: Transport| {
        let b = snapshot
            .iter()
            .find(|b| b.transport == baseline && b.same_group(r) && b.ok())?;
        (r.ok() && b.fps > 0.0 && b.latency_us.p50 > 0.0).then(|| Ratio {
            fps: r.fps / b.fps,
            p50: r.latency_us.p50 / b.latency_us.p50,
        })
    };
    for r in &mut results {
        r.vs_memcpy = ratio(r, Transport::Memcpy);
        r.vs_tcp = ratio(r, Transport::Tcp);
    }
    results
}

/// The machine the figures come from (`cores`, `cpu`, `kernel` in the JSON).
pub use camring_testkit::Machine;

/// Everything `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// Where it ran.
    pub machine: Machine,
    /// The command that ran it.
    pub command: String,
    /// Whether it was the short run.
    pub quick: bool,
    /// Rounds per cell.
    pub rounds: u32,
    /// Warm-up before each cell's window, seconds.
    pub warmup_s: f64,
    /// Each cell's window, seconds.
    pub window_s: f64,
    /// One per (transport, profile, rate, consumers).
    pub results: Vec<CellResult>,
}

impl Document {
    /// The Markdown report: a header, then one table per profile and rate.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let rounds = if self.rounds == 1 { "round" } else { "rounds" };
        let _ = writeln!(
            s,
            "Machine: {}. Command: `{}`. {} {rounds} of {} s warm-up + {} s window per cell.\n",
            self.machine, self.command, self.rounds, self.warmup_s, self.window_s
        );
        for profile in Profile::ALL {
            for rate in [Rate::Fixed, Rate::Max] {
                let rows: Vec<&CellResult> = self
                    .results
                    .iter()
                    .filter(|r| r.profile == profile && r.rate == rate)
                    .collect();
                if !rows.is_empty() {
                    table(&mut s, profile, rate, &rows);
                }
            }
        }
        s
    }
}

/// One Markdown table: rows per transport (table order) and consumer count.
fn table(s: &mut String, profile: Profile, rate: Rate, rows: &[&CellResult]) {
    let _ = writeln!(s, "### {profile} ({}), {rate}\n", profile.describe());
    s.push_str(
        "| transport | consumers | fps | MB/s | p50 µs | p99 µs | p99.9 µs \
         | CPU µs/frame sender | CPU µs/frame consumer | dropped | ×TCP fps | ×TCP p50 |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|r| {
        (
            Transport::ALL.iter().position(|t| *t == r.transport),
            r.consumers,
        )
    });
    let mut failures = Vec::new();
    for r in sorted {
        if let Some(e) = &r.error {
            let _ = writeln!(
                s,
                "| {} | {} | failed | | | | | | | | | |",
                r.transport, r.consumers
            );
            failures.push(format!(
                "- {}: {}",
                r.cell(),
                e.lines().next().unwrap_or("")
            ));
            continue;
        }
        let l = &r.latency_us;
        let ratio = |x: Option<f64>| x.map_or("—".into(), |x| format!("×{}", num(x)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.transport,
            r.consumers,
            num(r.fps),
            num(r.bytes_per_s / 1e6),
            num(l.p50),
            num(l.p99),
            num(l.p999),
            num(r.cpu_us_per_frame_sender),
            num(r.cpu_us_per_frame_consumer),
            r.dropped,
            ratio(r.vs_tcp.map(|v| v.fps)),
            ratio(r.vs_tcp.map(|v| v.p50)),
        );
    }
    s.push('\n');
    if !failures.is_empty() {
        let _ = writeln!(s, "Failed:\n{}\n", failures.join("\n"));
    }
}

/// A figure with three significant digits or so: 0.123, 1.23, 12.3, 123, 12345.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{SinkReport, SourceReport};

    fn cell(transport: Transport) -> Cell {
        Cell {
            transport,
            profile: Profile::Small,
            rate: Rate::Fixed,
            consumers: 2,
        }
    }

    /// A round in which each of two consumers received `frames` multi-frames in 1 s, all
    /// with latency `us` µs.
    fn round(frames: u64, us: u64) -> CellReport {
        let sink = SinkReport {
            frames,
            bytes: frames * 1000,
            dropped: 1,
            corrupt: 0,
            window_ns: 1_000_000_000,
            cpu_ns: frames * 2_000,
            latency_ns: vec![[us * 1000, frames]],
        };
        CellReport {
            source: SourceReport {
                published: frames,
                missed_ticks: 0,
                ack_timeouts: 0,
                window_ns: 1_000_000_000,
                cpu_ns: frames * 3_000,
                local: Vec::new(),
            },
            sinks: vec![sink.clone(), sink],
        }
    }

    #[test]
    fn rounds_accumulate_per_consumer() {
        let mut acc = Acc::new(cell(Transport::ShmCopy));
        acc.add(&round(30, 100)).unwrap();
        acc.add(&round(10, 300)).unwrap();
        let r = &results(&[acc])[0];
        assert_eq!(r.frames, 80);
        // 80 frames over 4 consumer-seconds.
        assert!((r.fps - 20.0).abs() < 1e-9, "{}", r.fps);
        assert!((r.bytes_per_s - 20_000.0).abs() < 1e-6);
        assert!((r.latency_us.p50 - 100.0).abs() < 0.5, "{:?}", r.latency_us);
        assert!((r.latency_us.p99 - 300.0).abs() < 0.5, "{:?}", r.latency_us);
        assert!((r.cpu_us_per_frame_sender - 3.0).abs() < 1e-9);
        assert!((r.cpu_us_per_frame_consumer - 2.0).abs() < 1e-9);
        assert!((r.cpu_us_per_frame - 5.0).abs() < 1e-9);
        assert_eq!(r.dropped, 4);
        assert_eq!(r.rounds, 2);
        assert!(r.ok());
    }

    #[test]
    fn ratios_need_a_working_baseline() {
        let mut tcp = Acc::new(cell(Transport::Tcp));
        tcp.add(&round(30, 200)).unwrap();
        let mut shm = Acc::new(cell(Transport::ShmZeroCopy));
        shm.add(&round(30, 50)).unwrap();
        let mut memcpy = Acc::new(cell(Transport::Memcpy));
        memcpy.fail(0, &anyhow::anyhow!("boom"));
        let rs = results(&[memcpy, shm, tcp]);
        assert!(!rs[0].ok());
        assert!(rs[0].error.as_deref().unwrap().contains("round 1: boom"));
        assert_eq!(rs[1].vs_memcpy, None);
        let v = rs[1].vs_tcp.unwrap();
        assert!((v.fps - 1.0).abs() < 1e-9);
        assert!((v.p50 - 0.25).abs() < 0.01, "{v:?}");
    }

    #[test]
    fn a_cell_without_frames_is_an_error() {
        let mut acc = Acc::new(cell(Transport::Udp));
        acc.add(&round(0, 1)).unwrap();
        let r = &results(&[acc])[0];
        assert!(r.error.as_deref().unwrap().contains("no multi-frame"));
    }

    #[test]
    fn json_and_table_use_the_fixed_names() {
        let mut acc = Acc::new(cell(Transport::ShmZeroCopy));
        acc.add(&round(30, 100)).unwrap();
        let mut failed = Acc::new(cell(Transport::Ws));
        failed.fail(0, &anyhow::anyhow!("no bridge\nmore"));
        let doc = Document {
            machine: Machine::this(),
            command: "camring bench --quick".into(),
            quick: true,
            rounds: 1,
            warmup_s: 0.2,
            window_s: 0.5,
            results: results(&[acc, failed]),
        };
        let v: serde_json::Value = serde_json::to_value(&doc).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["transport"], "shm-zero-copy");
        assert_eq!(r["profile"], "small");
        assert_eq!(r["rate"], "30fps");
        for k in [
            "frames",
            "fps",
            "bytes_per_s",
            "cpu_us_per_frame",
            "dropped",
        ] {
            assert!(r[k].is_number(), "{k}");
        }
        for k in ["p50", "p99", "p999"] {
            assert!(r["latency_us"][k].is_number(), "{k}");
        }
        assert!(r["error"].is_null());
        assert!(v["machine"]["cores"].as_u64().unwrap() > 0);
        let md = doc.markdown();
        assert!(md.contains("### small (1×640×480 JPEG), 30fps"), "{md}");
        assert!(md.contains("| shm-zero-copy | 2 | 30.0 |"), "{md}");
        assert!(md.contains("| ws | 2 | failed |"), "{md}");
        assert!(
            md.contains("- ws small 30fps 2 consumers: round 1: no bridge\n"),
            "{md}"
        );
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.4), "1234");
    }
}
