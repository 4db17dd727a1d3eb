//! Publish cost of a 4 × 1920×1080 RGB8 multi-frame (4 × 6.2 MB) through the real ring,
//! against a plain memcpy of the same four source images into the same slot payload area
//! of the same segment.
//!
//! Variants, interleaved iteration by iteration (the order rotates every round so that
//! noise on a shared machine hits all of them alike):
//!
//! * `memcpy`: `copy_from_slice` of the four sources into the slot's payload buffers of a
//!   loan that is dropped unpublished (no header, no seqlock completion, no wake-up).
//! * `publish`: `writer.loan()`, `push_camera` + `copy_from_slice` per camera, `commit`.
//! * `ring only`: the same without the copies, i.e. the ring's own fixed cost.
//!
//! `cargo bench -p camring-shm --bench publish` runs the full benchmark; without `--bench` (as under
//! `cargo test --all-targets`) a smoke run with tiny frames checks that everything works.

mod common;

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use camring_protocol::PixelFormat;
use camring_shm::{ReadMode, Reader, Writer};
use camring_testkit::{self as kit, median, RingGuard, Table};
use common::Group;
use hdrhistogram::Histogram;

const SLOTS: u32 = 4;

#[derive(Debug, Clone, Copy)]
struct Params {
    cameras: u32,
    width: u32,
    height: u32,
    warmup_rounds: usize,
    rounds: usize,
    /// Iterations of each variant per round.
    per_round: usize,
}

const VARIANTS: [&str; 3] = ["memcpy", "publish", "ring only"];

fn main() -> Result<()> {
    let full = kit::Run::get()?.full();
    let p = if full {
        Params {
            cameras: 4,
            width: 1920,
            height: 1080,
            warmup_rounds: 2,
            rounds: 40,
            per_round: 10,
        }
    } else {
        Params {
            cameras: 4,
            width: 64,
            height: 48,
            warmup_rounds: 1,
            rounds: 2,
            per_round: 4,
        }
    };
    run(p, full)
}

/// Checks that a publish delivers the source images intact.
fn check_publish(name: &str, writer: &mut Writer, group: &Group) -> Result<()> {
    let mut reader = Reader::open(name)?;
    let n = group.publish(writer)?;
    let frame = reader
        .try_read(ReadMode::Latest)?
        .context("no frame after publish")?;
    ensure!(frame.number() == n, "read frame {} not {n}", frame.number());
    for c in 0..frame.cameras().len() {
        ensure!(
            frame.payload(c).eq_bytes(&group.sources[c]),
            "camera {c}: payload differs"
        );
    }
    frame.validate()?;
    Ok(())
}

struct Bench<'a> {
    writer: Writer,
    group: &'a Group,
}

impl Bench<'_> {
    /// Runs variant `v` once and returns its duration in nanoseconds.
    fn once(&mut self, v: usize) -> Result<u64> {
        let t = Instant::now();
        match v {
            0 => {
                // The same copies into the same slot's payload area, never published: the
                // loan's own cost is one store and one fence (measured by `ring only`).
                let mut loan = self.writer.loan();
                self.group.fill(&mut loan, camring_shm::clock::now_ns())?;
                // `loan` goes out of scope uncommitted: nothing is published.
            }
            1 => {
                self.group.publish(&mut self.writer)?;
            }
            _ => {
                let now = camring_shm::clock::now_ns();
                let seq = self.writer.next_frame();
                let mut loan = self.writer.loan();
                for (cam, src) in self.group.sources.iter().enumerate() {
                    loan.push_camera(self.group.entry(cam, now, seq), src.len())?;
                }
                loan.commit(now, 0)?;
            }
        }
        Ok(t.elapsed().as_nanos() as u64)
    }
}

fn run(p: Params, full: bool) -> Result<()> {
    let group = Group::new(p.cameras, PixelFormat::Rgb8, p.width, p.height);
    let name = kit::ring_name("publish");
    let _guard = RingGuard(name.clone());
    let mut writer = Writer::create(&name, &group.ring_config(SLOTS))?;
    check_publish(&name, &mut writer, &group)?;
    let mut bench = Bench {
        writer,
        group: &group,
    };

    let mut hist: Vec<Histogram<u64>> = VARIANTS.iter().map(|_| kit::histogram()).collect();
    // Per-round medians of memcpy and publish, for the per-round ratio.
    let mut round_ratio = Vec::new();
    let n = VARIANTS.len();
    for round in 0..p.warmup_rounds + p.rounds {
        kit::check_interrupt()?;
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
        for i in 0..p.per_round {
            for k in 0..n {
                let v = (k + i + round) % n;
                let ns = bench.once(v)?;
                samples[v].push(ns as f64);
                if round >= p.warmup_rounds {
                    kit::record(&mut hist[v], ns);
                }
            }
        }
        if round >= p.warmup_rounds {
            round_ratio.push(median(&samples[1]) / median(&samples[0]));
        }
    }
    let published = bench.writer.next_frame();
    drop(bench);

    let mb = group.frame_len() as f64 / 1e6;
    println!(
        "## publish: {} × {}×{} RGB8 ({:.1} MB per multi-frame), {SLOTS} slots\n",
        p.cameras, p.width, p.height, mb
    );
    println!("Machine: {}", kit::Machine::this());
    println!(
        "{} rounds × {} iterations of each variant, interleaved; {} frames published{}\n",
        p.rounds,
        p.per_round,
        published,
        if full {
            ""
        } else {
            " (SMOKE RUN: tiny frames, figures meaningless)"
        }
    );
    let base = hist[0].value_at_quantile(0.5) as f64;
    let mut t = Table::new(
        &[
            &["variant"][..],
            &kit::SPREAD,
            &["GB/s at p50", "p50 / memcpy p50"],
        ]
        .concat(),
    );
    let label = [
        "memcpy into the slot (baseline)",
        "publish: loan + push_camera + copy + commit",
        "ring only: loan + push_camera + commit, no copy",
    ];
    for (v, h) in hist.iter().enumerate() {
        let p50 = h.value_at_quantile(0.5) as f64;
        let mut row = vec![label[v].to_owned()];
        row.extend(kit::spread(h));
        row.extend([
            if v == 2 {
                "-".to_owned()
            } else {
                format!("{:.2}", group.frame_len() as f64 / p50)
            },
            format!("{:.3}", p50 / base),
        ]);
        t.row(row);
    }
    t.print();
    let ratio = hist[1].value_at_quantile(0.5) as f64 / base;
    println!(
        "publish / memcpy, ratio of the medians: **{ratio:.3}** (goal ≤ 1.1); median of the \
         {} per-round ratios: {:.3} (range {:.3}–{:.3})\n",
        round_ratio.len(),
        median(&round_ratio),
        round_ratio.iter().copied().fold(f64::INFINITY, f64::min),
        round_ratio.iter().copied().fold(0.0, f64::max),
    );
    Ok(())
}
