//! What attached readers cost the producer: the producer's rate with 0 (baseline), 1, 4 and
//! 16 reader processes attached, publishing 4 × 640×480 RGB8 multi-frames (3.7 MB).
//!
//! Each reader is a separate process (this binary re-executed with a marker argument) that
//! loops `wait` → `try_read(Latest)` → sums the first 4 KiB and the last byte of every
//! camera's payload → `Frame::validate`, and reports its counts and CPU time as JSON.
//!
//! Three scenarios, each in 3 rounds of 0, 1, 4, 16 readers (forward, then reverse order,
//! so that drift on a shared machine hits every reader count alike), medians reported:
//!
//! * A. flat out, greedy readers: the producer publishes as fast as it can; readers take
//!   every frame they can (each publish wakes every sleeping reader).
//! * B. flat out, readers at their own pace: each reader sleeps 33 ms after each frame
//!   (a 30 Hz detector): the producer rarely has a sleeper to wake.
//! * C. producer at 30 fps (a real camera group), greedy readers: the producer's CPU time
//!   per publish (CLOCK_THREAD_CPUTIME_ID around loan..commit), which includes the futex
//!   wake syscall that wakes the readers.
//!
//! `cargo bench -p camring-shm --bench readers` runs the full benchmark; without `--bench` a smoke run.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camring_protocol::PixelFormat;
use camring_shm::{ProducerState, ReadMode, Reader, Writer};
use camring_testkit::{self as kit, fmt_ns, median, Helpers, RingGuard, Table};
use common::Group;
use hdrhistogram::Histogram;

const SLOTS: u32 = 8;
/// Bytes of each camera's payload a reader sums.
const TOUCH: usize = 4096;

#[derive(Debug, Clone)]
struct Params {
    cameras: u32,
    width: u32,
    height: u32,
    rounds: usize,
    counts: Vec<usize>,
    /// Overrides the scenarios' durations (smoke run).
    duration: Option<Duration>,
    scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    key: &'static str,
    title: &'static str,
    /// Readers sleep this long after each frame (0: greedy).
    reader_pace: Duration,
    /// Producer rate; `None`: as fast as it can.
    producer_fps: Option<f64>,
    /// Length of one configuration's run in the full benchmark.
    duration: Duration,
}

const GREEDY: Scenario = Scenario {
    key: "A",
    title: "producer flat out, greedy readers (wait → read → touch → validate, no pause)",
    reader_pace: Duration::ZERO,
    producer_fps: None,
    duration: Duration::from_secs(1),
};
const PACED: Scenario = Scenario {
    key: "B",
    title: "producer flat out, readers at their own pace (sleep 33 ms after each frame)",
    reader_pace: Duration::from_millis(33),
    producer_fps: None,
    duration: Duration::from_secs(1),
};
const CAMERA_RATE: Scenario = Scenario {
    key: "C",
    title: "producer at 30 fps (a camera group), greedy readers",
    reader_pace: Duration::ZERO,
    producer_fps: Some(30.0),
    duration: Duration::from_secs(2),
};

fn main() -> Result<()> {
    kit::Run::dispatch(reader_child, |full| {
        let p = if full {
            Params {
                cameras: 4,
                width: 640,
                height: 480,
                rounds: 5,
                counts: vec![0, 1, 4, 16],
                duration: None,
                scenarios: vec![GREEDY, PACED, CAMERA_RATE],
            }
        } else {
            Params {
                cameras: 4,
                width: 64,
                height: 48,
                rounds: 1,
                counts: vec![0, 1],
                duration: Some(Duration::from_millis(100)),
                scenarios: vec![GREEDY],
            }
        };
        run(&p, full)
    })
}

/// A reader process: `reader <ring> <pace µs>`.
fn reader_child(args: &[String]) -> Result<()> {
    let [what, ring, pace_us] = args else {
        bail!("reader helper: bad arguments {args:?}");
    };
    if what != "reader" {
        bail!("reader helper: unknown role {what}");
    }
    let pace = Duration::from_micros(pace_us.parse()?);
    let mut reader = Reader::open_wait(ring, Duration::from_secs(5))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let cpu0 = kit::process_cpu_ns();
    let (mut valid, mut torn, mut errors, mut sum) = (0u64, 0u64, 0u64, 0u64);
    let mut head = [0u8; TOUCH];
    loop {
        // `wait` also returns on a state change (the producer stopping), with nothing new.
        if !reader.wait(Duration::from_millis(100)) || !reader.has_new() {
            if !matches!(reader.producer(), ProducerState::Live { .. }) {
                break;
            }
            continue;
        }
        match reader.try_read(ReadMode::Latest) {
            Ok(Some(frame)) => {
                for i in 0..frame.cameras().len() {
                    let p = frame.payload(i);
                    let n = TOUCH.min(p.len());
                    p.slice(..n).copy_to_slice(&mut head[..n]);
                    sum = sum.wrapping_add(head[..n].iter().map(|&b| u64::from(b)).sum::<u64>());
                    let last = p.get(p.len().wrapping_sub(1)).unwrap_or(0);
                    sum = sum.wrapping_add(u64::from(last));
                }
                if frame.validate().is_ok() {
                    valid += 1;
                } else {
                    torn += 1;
                }
            }
            Ok(None) => {}
            Err(_) => errors += 1,
        }
        if !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    let stats = reader.stats();
    let json = serde_json::json!({
        "valid": valid,
        "torn": torn,
        "errors": errors,
        "lapped": stats.lapped,
        "skipped": stats.skipped,
        "cpu_ns": kit::process_cpu_ns() - cpu0,
        "checksum": sum,
    });
    writeln!(out, "{json}")?;
    Ok(())
}

/// What one configuration (scenario, reader count) measured.
#[derive(Debug)]
struct Run {
    frames: u64,
    wall_ns: u64,
    /// Producer thread CPU per publish, and wall time per publish.
    pub_cpu: Histogram<u64>,
    pub_wall: Histogram<u64>,
    /// Producer thread CPU in `commit` alone (header, seqlock, head, futex wake).
    commit_cpu: Histogram<u64>,
    reader_frames: Vec<u64>,
    reader_cpu_ns: u64,
    torn: u64,
    errors: u64,
}

impl Run {
    fn fps(&self) -> f64 {
        self.frames as f64 * 1e9 / self.wall_ns as f64
    }
}

/// `Group::publish`, returning the thread CPU time at which `commit` starts.
fn publish_split(group: &Group, writer: &mut Writer) -> Result<u64> {
    let now = camring_shm::clock::now_ns();
    let mut loan = writer.loan();
    group.fill(&mut loan, now)?;
    let c = kit::thread_cpu_ns();
    loan.commit(now, 0)?;
    Ok(c)
}

fn run_config(p: &Params, group: &Group, s: Scenario, readers: usize) -> Result<Run> {
    let name = kit::ring_name("readers");
    let _guard = RingGuard(name.clone());
    let mut writer = Writer::create(&name, &group.ring_config(SLOTS))?;
    let mut kids = Helpers::default();
    for _ in 0..readers {
        kids.spawn(&[
            "reader".to_owned(),
            name.clone(),
            s.reader_pace.as_micros().to_string(),
        ])?;
    }
    kids.expect_line("ready")?;
    // Let every reader reach its first wait.
    std::thread::sleep(Duration::from_millis(20));

    let mut pub_cpu = kit::histogram();
    let mut pub_wall = kit::histogram();
    let mut commit_cpu = kit::histogram();
    let period = s.producer_fps.map(|f| Duration::from_secs_f64(1.0 / f));
    let t0 = Instant::now();
    let mut frames = 0u64;
    loop {
        if let Some(period) = period {
            let next = t0 + period * frames as u32;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        if t0.elapsed() >= p.duration.unwrap_or(s.duration) {
            break;
        }
        if frames.is_multiple_of(64) {
            kit::check_interrupt()?;
        }
        let c = kit::thread_cpu_ns();
        let t = Instant::now();
        let c_commit = publish_split(group, &mut writer)?;
        let wall = t.elapsed().as_nanos() as u64;
        let c_end = kit::thread_cpu_ns();
        kit::record(&mut pub_wall, wall);
        kit::record(&mut pub_cpu, c_end - c);
        kit::record(&mut commit_cpu, c_end - c_commit);
        frames += 1;
    }
    let wall_ns = t0.elapsed().as_nanos() as u64;
    // Stops the ring (readers see it at their next wait timeout) and removes it.
    drop(writer);

    let mut run = Run {
        frames,
        wall_ns,
        pub_cpu,
        pub_wall,
        commit_cpu,
        reader_frames: Vec::new(),
        reader_cpu_ns: 0,
        torn: 0,
        errors: 0,
    };
    for out in kids.finish(Duration::from_secs(5))? {
        let v: serde_json::Value = serde_json::from_str(out.trim()).context("reader output")?;
        let get = |k: &str| v[k].as_u64().with_context(|| format!("reader output: {k}"));
        run.reader_frames.push(get("valid")?);
        run.reader_cpu_ns += get("cpu_ns")?;
        run.torn += get("torn")?;
        run.errors += get("errors")?;
    }
    Ok(run)
}

fn run(p: &Params, full: bool) -> Result<()> {
    let group = Group::new(p.cameras, PixelFormat::Rgb8, p.width, p.height);
    println!(
        "## readers: producer cost of 0/1/4/16 attached reader processes\n\n\
         Machine: {}\n\n\
         {} × {}×{} RGB8 ({:.2} MB per multi-frame), {SLOTS} slots; \
         {} rounds per scenario (reader counts forward, then reversed); medians over rounds{}\n",
        kit::Machine::this(),
        p.cameras,
        p.width,
        p.height,
        group.frame_len() as f64 / 1e6,
        p.rounds,
        if full {
            ""
        } else {
            " (SMOKE RUN, figures meaningless)"
        }
    );
    for &s in &p.scenarios {
        // runs[count index][round]
        let mut runs: Vec<Vec<Run>> = p.counts.iter().map(|_| Vec::new()).collect();
        for r in 0..p.rounds {
            let mut order: Vec<usize> = (0..p.counts.len()).collect();
            if r % 2 == 1 {
                order.reverse();
            }
            for i in order {
                runs[i].push(run_config(p, &group, s, p.counts[i])?);
            }
        }
        report(p, s, &runs);
    }
    Ok(())
}

fn report(p: &Params, s: Scenario, runs: &[Vec<Run>]) {
    println!(
        "### {}. {} ({} s per configuration)\n",
        s.key,
        s.title,
        p.duration.unwrap_or(s.duration).as_secs_f64()
    );
    let fps: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| r.iter().map(Run::fps).collect())
        .collect();
    let base = median(&fps[0]);
    let cpu_of = |rs: &[Run]| quantile(rs, |r| &r.pub_cpu, 0.5);
    let base_cpu = cpu_of(&runs[0]);
    let mut t = Table::new(&[
        "readers",
        "producer frames/s",
        "cost vs 0 readers",
        "frames/s per round",
        "per-round cost",
        "publish CPU p50",
        "CPU vs 0 readers",
        "of which commit CPU p50",
        "publish wall p50",
        "publish wall p99",
        "frames read per reader (median, min–max)",
        "readers' CPU (cores)",
        "torn",
    ]);
    for (i, rs) in runs.iter().enumerate() {
        let f = median(&fps[i]);
        let per_round: Vec<String> = fps[i]
            .iter()
            .zip(&fps[0])
            .map(|(x, b)| pct((1.0 - x / b) * 100.0))
            .collect();
        let cpu = cpu_of(rs);
        let w50 = quantile(rs, |r| &r.pub_wall, 0.5);
        let w99 = quantile(rs, |r| &r.pub_wall, 0.99);
        let all: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.reader_frames.iter().map(|&x| x as f64))
            .collect();
        let read = if all.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.0} ({:.0}–{:.0}) of {:.0}",
                median(&all),
                all.iter().copied().fold(f64::INFINITY, f64::min),
                all.iter().copied().fold(0.0, f64::max),
                median(&rs.iter().map(|r| r.frames as f64).collect::<Vec<_>>()),
            )
        };
        let cores = median(
            &rs.iter()
                .map(|r| r.reader_cpu_ns as f64 / r.wall_ns as f64)
                .collect::<Vec<_>>(),
        );
        t.row(vec![
            p.counts[i].to_string(),
            format!("{f:.1}"),
            if i == 0 {
                "baseline".to_owned()
            } else {
                pct((1.0 - f / base) * 100.0)
            },
            fps[i]
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            if i == 0 {
                "-".to_owned()
            } else {
                per_round.join(", ")
            },
            fmt_ns(cpu),
            if i == 0 {
                "baseline".to_owned()
            } else {
                pct((cpu / base_cpu - 1.0) * 100.0)
            },
            fmt_ns(quantile(rs, |r| &r.commit_cpu, 0.5)),
            fmt_ns(w50),
            fmt_ns(w99),
            read,
            format!("{cores:.2}"),
            format!(
                "{}{}",
                rs.iter().map(|r| r.torn).sum::<u64>(),
                match rs.iter().map(|r| r.errors).sum::<u64>() {
                    0 => String::new(),
                    e => format!(" ({e} read errors)"),
                }
            ),
        ]);
    }
    t.print();
}

/// The median over rounds of quantile `q` of a per-run histogram.
fn quantile(rs: &[Run], h: impl Fn(&Run) -> &Histogram<u64>, q: f64) -> f64 {
    median(
        &rs.iter()
            .map(|r| h(r).value_at_quantile(q) as f64)
            .collect::<Vec<_>>(),
    )
}

/// A signed percentage, without a "-0.0".
fn pct(x: f64) -> String {
    if x.abs() < 0.05 {
        "0.0 %".to_owned()
    } else {
        format!("{x:+.1} %")
    }
}
