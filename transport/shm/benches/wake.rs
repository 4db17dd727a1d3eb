//! One-way wake latency between processes: producer publish (the `publish_ns` stamp that
//! `commit` takes right before the head store and the futex wake) to reader wake-up
//! (`Reader::wait` returning, CLOCK_REALTIME in both processes).
//!
//! The reader is a separate process: this binary re-executed with a marker argument. It
//! opens the ring and loops `wait` → `try_read(Latest)` → records `now - publish_ns` into
//! an hdrhistogram, then prints the histogram as JSON. The producer (this process)
//! publishes a tiny multi-frame (1 camera, 64×48 GRAY8) about every millisecond, long
//! enough for a blocking reader to fall asleep on the futex.
//!
//! Two modes, in alternating rounds (blocking, spin, spin, blocking, ...):
//! * blocking: `wait` sleeps on the futex at once (spin 0, the default);
//! * spin: `set_spin(20 ms)`, longer than the publish interval, so the reader is spinning
//!   when each publish happens.
//!
//! `cargo bench -p camring-shm --bench wake` runs the full benchmark; without `--bench` a smoke run.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use camring_shm::{ProducerState, ReadMode, Reader, Writer};
use camring_testkit::{self as kit, fmt_ns, Helpers, RingGuard, Table};
use common::Group;
use hdrhistogram::Histogram;

const SPIN: Duration = Duration::from_millis(20);
const INTERVAL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
struct Params {
    rounds: usize,
    warmup: u64,
    samples: u64,
}

fn main() -> Result<()> {
    kit::Run::dispatch(reader_child, |full| {
        let p = if full {
            Params {
                rounds: 8,
                warmup: 50,
                samples: 1000,
            }
        } else {
            Params {
                rounds: 2,
                warmup: 3,
                samples: 20,
            }
        };
        run(p, full)
    })
}

/// The reader process: `wake-reader <ring> <spin µs> <warmup> <samples>`.
fn reader_child(args: &[String]) -> Result<()> {
    let [what, ring, spin_us, warmup, samples] = args else {
        bail!("wake helper: bad arguments {args:?}");
    };
    if what != "wake-reader" {
        bail!("wake helper: unknown role {what}");
    }
    let warmup: u64 = warmup.parse()?;
    let samples: u64 = samples.parse()?;
    let mut reader = Reader::open_wait(ring, Duration::from_secs(5))?;
    reader.set_spin(Duration::from_micros(spin_us.parse()?));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;

    let mut wake = kit::histogram();
    let mut in_hand = kit::histogram();
    let (mut seen, mut raced, mut torn) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while wake.len() < samples {
        if Instant::now() > deadline {
            bail!("wake helper: timed out after {} samples", wake.len());
        }
        let ready = reader.wait(Duration::from_millis(500));
        let woke = now_ns();
        // `wait` also returns on a state change (the producer stopping), with nothing new.
        if !ready || !reader.has_new() {
            if !matches!(reader.producer(), ProducerState::Live { .. }) {
                bail!("wake helper: producer went away");
            }
            continue;
        }
        let Some(frame) = reader.try_read(ReadMode::Latest)? else {
            continue;
        };
        let published = frame.header().publish_ns;
        let got = now_ns();
        if frame.validate().is_err() {
            torn += 1;
            continue;
        }
        seen += 1;
        if seen <= warmup {
            continue;
        }
        if woke < published {
            // A newer frame was published between the wake and the read.
            raced += 1;
            continue;
        }
        kit::record(&mut wake, woke - published);
        kit::record(&mut in_hand, got - published);
    }
    let stats = reader.stats();
    let json = serde_json::json!({
        "wake": kit::buckets(&wake),
        "in_hand": kit::buckets(&in_hand),
        "raced": raced,
        "torn": torn,
        "skipped": stats.skipped,
    });
    writeln!(out, "{json}")?;
    Ok(())
}

#[derive(Debug)]
struct Mode {
    name: &'static str,
    spin: Duration,
    goal: &'static str,
    wake: Histogram<u64>,
    in_hand: Histogram<u64>,
    commit: Histogram<u64>,
    round_p50: Vec<f64>,
    raced: u64,
    skipped: u64,
}

impl Mode {
    fn new(name: &'static str, spin: Duration, goal: &'static str) -> Mode {
        Mode {
            name,
            spin,
            goal,
            wake: kit::histogram(),
            in_hand: kit::histogram(),
            commit: kit::histogram(),
            round_p50: Vec::new(),
            raced: 0,
            skipped: 0,
        }
    }
}

/// One round: a fresh reader process in `mode`, frames every `INTERVAL` until it has its
/// samples.
fn round(name: &str, writer: &mut Writer, group: &Group, mode: &mut Mode, p: Params) -> Result<()> {
    let mut kids = Helpers::default();
    kids.spawn(&[
        "wake-reader".to_owned(),
        name.to_owned(),
        mode.spin.as_micros().to_string(),
        p.warmup.to_string(),
        p.samples.to_string(),
    ])?;
    kids.expect_line("ready")?;
    // Let the reader reach its first wait.
    std::thread::sleep(Duration::from_millis(5));
    let limit = 3 * (p.warmup + p.samples) + 1000;
    let mut sent = 0;
    while !kids.exited(0)? {
        kit::check_interrupt()?;
        if sent > limit {
            bail!(
                "the {} reader did not finish after {sent} frames",
                mode.name
            );
        }
        let t = Instant::now();
        group.publish(writer)?;
        kit::record(&mut mode.commit, t.elapsed().as_nanos() as u64);
        sent += 1;
        std::thread::sleep(INTERVAL);
    }
    let out = kids.finish(Duration::from_secs(2))?;
    let v: serde_json::Value = serde_json::from_str(out[0].trim()).context("reader output")?;
    let mut h = kit::histogram();
    kit::add_buckets(&mut h, &pairs(&v["wake"])?)?;
    mode.round_p50.push(h.value_at_quantile(0.5) as f64);
    mode.wake.add(&h)?;
    kit::add_buckets(&mut mode.in_hand, &pairs(&v["in_hand"])?)?;
    mode.raced += v["raced"].as_u64().unwrap_or(0);
    mode.skipped += v["skipped"].as_u64().unwrap_or(0);
    Ok(())
}

/// A histogram's `[value, count]` pairs, as [`kit::buckets`] made them in the reader.
fn pairs(v: &serde_json::Value) -> Result<Vec<[u64; 2]>> {
    serde_json::from_value(v.clone()).context("reader output: buckets")
}

fn run(p: Params, full: bool) -> Result<()> {
    let group = Group::new(1, PixelFormat::Gray8, 64, 48);
    let name = kit::ring_name("wake");
    let _guard = RingGuard(name.clone());
    let mut writer = Writer::create(&name, &group.ring_config(8))?;
    let mut modes = [
        Mode::new("blocking (futex)", Duration::ZERO, "≤ 6 µs"),
        Mode::new("spin (set_spin 20 ms)", SPIN, "≤ 0.5 µs"),
    ];
    for r in 0..p.rounds {
        // ABBA order: blocking, spin, spin, blocking, ...
        let m = (r + r / 2) % 2;
        round(&name, &mut writer, &group, &mut modes[m], p)?;
    }
    drop(writer);

    println!(
        "## wake: one-way publish → reader wake-up between processes\n\n\
         Machine: {}\n\n\
         {} rounds alternating the modes (ABBA), one reader process per round, {} samples \
         per round after {} warm-up frames; a 64×48 GRAY8 frame every ~{} ms{}\n",
        kit::Machine::this(),
        p.rounds,
        p.samples,
        p.warmup,
        INTERVAL.as_millis(),
        if full {
            ""
        } else {
            " (SMOKE RUN, figures meaningless)"
        }
    );
    let mut t = Table::new(&[
        "mode", "what", "samples", "p50", "p90", "p99", "p99.9", "max", "goal p50",
    ]);
    for m in &modes {
        for (what, h) in [("wake", &m.wake), ("frame in hand", &m.in_hand)] {
            t.row(vec![
                m.name.to_owned(),
                what.to_owned(),
                h.len().to_string(),
                fmt_ns(h.value_at_quantile(0.5) as f64),
                fmt_ns(h.value_at_quantile(0.9) as f64),
                fmt_ns(h.value_at_quantile(0.99) as f64),
                fmt_ns(h.value_at_quantile(0.999) as f64),
                fmt_ns(h.max() as f64),
                if what == "wake" { m.goal } else { "" }.to_owned(),
            ]);
        }
    }
    t.print();
    println!(
        "\"wake\": `publish_ns` (stamped in `commit` before the head store and the futex \
         wake) → `wait` returned in the reader; \"frame in hand\": → `try_read` returned the \
         validated header.\n"
    );
    let (b, s) = (&modes[0], &modes[1]);
    println!(
        "blocking / spin, ratio of the wake medians: {:.1}×; per-round wake p50s: blocking {}, spin {}\n",
        b.wake.value_at_quantile(0.5) as f64 / s.wake.value_at_quantile(0.5).max(1) as f64,
        list(&b.round_p50),
        list(&s.round_p50),
    );
    let mut t = Table::new(&[
        "mode",
        "producer publish p50",
        "p99",
        "frames skipped",
        "raced",
    ]);
    for m in &modes {
        t.row(vec![
            m.name.to_owned(),
            fmt_ns(m.commit.value_at_quantile(0.5) as f64),
            fmt_ns(m.commit.value_at_quantile(0.99) as f64),
            m.skipped.to_string(),
            m.raced.to_string(),
        ]);
    }
    t.print();
    println!(
        "Producer publish = loan + 3 KB copy + commit, including the futex wake syscall when the \
         reader sleeps (blocking) and none when it spins. \"frames skipped\": frames the reader \
         missed because it was not back in `wait` in time; \"raced\": samples dropped because a \
         newer frame was published between the wake and the read.\n"
    );
    Ok(())
}

fn list(xs: &[f64]) -> String {
    xs.iter().map(|&x| fmt_ns(x)).collect::<Vec<_>>().join(", ")
}
