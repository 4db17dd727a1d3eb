//! `camring read`: attach to a ring, read frames, verify them, show live stats.

use camring_protocol::report::Report;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use camring_reader::{Latency, OwnedFrame, ReadMode, Reader, Summary, Verdict, Verifier};
use camring_shm::clock::now_ns;
use camring_shm::{Follow, ProducerState, ReadError};
use clap::{Args, ValueEnum};

use crate::signals::StopFlag;

/// Which frame each read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// The newest frame, skipping any in between.
    Latest,
    /// Every frame in order; frames overwritten before they are read count as lapped.
    Next,
}

/// Options of `camring read`.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Ring name.
    #[arg(long)]
    pub ring: String,
    /// Read the newest frame or every frame in order.
    #[arg(long, value_enum, default_value = "latest")]
    pub mode: ModeArg,
    /// Check every synthetic camera image against its pattern.
    #[arg(long)]
    pub verify: bool,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// Wait up to this many seconds for the ring to appear.
    #[arg(long, default_value_t = 0.0)]
    pub wait: f64,
    /// Spin this many microseconds before sleeping, for the lowest wake-up latency.
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
    /// Copy each frame out of the ring (validated copy) instead of reading it in place.
    #[arg(long)]
    pub copy: bool,
    /// Sleep this many milliseconds after each frame (simulates a slow consumer).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// No live stats line.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let stop = StopFlag::install()?;
    let summary = consume(&args, &stop)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(if summary.corrupt > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn describe(state: ProducerState) -> String {
    match state {
        ProducerState::Live { pid } => format!("live (pid {pid})"),
        ProducerState::Stopped => "stopped".into(),
        ProducerState::Dead { pid } => format!("gone (pid {pid} died)"),
        ProducerState::Replaced => "replaced".into(),
    }
}

/// Reads until `stop` or the duration ends, and returns the summary.
pub fn consume(args: &ReadArgs, stop: &StopFlag) -> anyhow::Result<Summary> {
    // Every `OpenError` names the ring; its causes follow it once (main prints `{:#}`).
    let mut reader = Reader::open_wait(&args.ring, Duration::from_secs_f64(args.wait.max(0.0)))?;
    reader.set_spin(Duration::from_micros(args.spin_us));
    let mode = match args.mode {
        ModeArg::Latest => ReadMode::Latest,
        ModeArg::Next => ReadMode::Next,
    };
    let start = Instant::now();
    let end = args
        .duration
        .map(|d| start + Duration::from_secs_f64(d.max(0.0)));
    let mut summary = Summary::default();
    let mut latency = Latency::new();
    let mut window = Latency::new();
    let mut verifier = Verifier::new();
    let mut owned = OwnedFrame::default();
    let mut scratch: Vec<Vec<u8>> = Vec::new();
    let mut last_print = Instant::now();
    let mut window_frames = 0u64;
    let mut last_check = Instant::now();
    let mut producer = reader.producer();
    // Latency counts only frames published after we attached: the first read may return
    // a frame that waited in the ring before this reader existed.
    let attached_ns = now_ns();
    if !args.quiet {
        let sb = reader.layout();
        eprintln!(
            "camring read: ring {:?}: {} cameras, {} slots, producer {}",
            args.ring,
            sb.camera_count,
            sb.slot_count,
            describe(producer)
        );
    }
    loop {
        let now = Instant::now();
        if stop.raised() || end.is_some_and(|e| now >= e) {
            break;
        }
        let wait = end.map_or(Duration::from_millis(100), |e| {
            (e - now).min(Duration::from_millis(100))
        });
        let woke = reader.wait(wait);
        let fresh = reader.has_new();
        if !fresh || now.duration_since(last_check) > Duration::from_millis(500) {
            // Woken without a frame means the producer's state or generation changed;
            // otherwise look every 250 ms whether it died or was replaced.
            if (woke && !fresh) || last_check.elapsed() >= Duration::from_millis(250) {
                last_check = Instant::now();
                match reader.follow() {
                    Ok(Follow::NewGeneration) | Ok(Follow::Reattached) => {
                        if !args.quiet {
                            eprintln!(
                                "camring read: producer restarted (generation {}); resynced",
                                reader.generation()
                            );
                        }
                    }
                    Ok(Follow::Same) | Ok(Follow::Gone) => {}
                    Err(e) => {
                        if !args.quiet {
                            eprintln!("camring read: {}", Report(&e));
                        }
                    }
                }
                let state = reader.producer();
                if state != producer && !args.quiet {
                    eprintln!("camring read: producer {}", describe(state));
                }
                producer = state;
            }
            if !reader.has_new() {
                continue;
            }
        }
        let result = if args.copy {
            match reader.read_copy(mode, &mut owned) {
                Ok(true) => {
                    let received = now_ns();
                    if owned.header.publish_ns >= attached_ns {
                        let tick = owned.header.tick_ns;
                        record(&mut latency, &mut window, &owned.cameras, tick, received);
                    }
                    let verdict = if args.verify {
                        verifier.check_all(&owned.cameras, |i| &owned.payloads[i])
                    } else {
                        Verdict::Unchecked
                    };
                    Ok(Some(verdict))
                }
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
        } else {
            match reader.try_read(mode) {
                Ok(Some(frame)) => {
                    let received = now_ns();
                    let verdict = if args.verify {
                        // Checking reads every byte, so it checks a copy: the ring's bytes
                        // are only lent as racy views (camring_shm::SharedBytes).
                        frame.copy_payloads(&mut scratch);
                        verifier.check_all(frame.cameras(), |i| &scratch[i])
                    } else {
                        Verdict::Unchecked
                    };
                    // Only a frame the seqlock still vouches for after it was used counts.
                    match frame.validate() {
                        Ok(()) => {
                            let h = frame.header();
                            if h.publish_ns >= attached_ns {
                                record(
                                    &mut latency,
                                    &mut window,
                                    frame.cameras(),
                                    h.tick_ns,
                                    received,
                                );
                            }
                            Ok(Some(verdict))
                        }
                        Err(e) => Err(e),
                    }
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(Some(verdict)) => {
                summary.frames += 1;
                window_frames += 1;
                match verdict {
                    Verdict::Verified => summary.verified += 1,
                    Verdict::Unchecked => {}
                    Verdict::Corrupt(why) => {
                        summary.corrupt += 1;
                        if summary.first_corruption.is_none() {
                            eprintln!("camring read: CORRUPT frame accepted: {why}");
                            summary.first_corruption = Some(why);
                        }
                    }
                }
                if args.delay_ms > 0 {
                    std::thread::sleep(Duration::from_millis(args.delay_ms));
                }
            }
            Ok(None) | Err(ReadError::Torn) | Err(ReadError::Lapped) => {}
            Err(e @ ReadError::Corrupt(_)) => {
                if !args.quiet {
                    eprintln!("camring read: skipped an invalid slot: {}", Report(&e));
                }
            }
        }
        if !args.quiet && last_print.elapsed() >= Duration::from_secs(1) {
            let secs = last_print.elapsed().as_secs_f64();
            let s = reader.stats();
            let l = window.summary();
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "{:>7.1} fps  latency p50 {:>7.0} µs  p99 {:>7.0} µs  frames {}  verified {}  corrupt {}  torn {}  lapped {}  producer {}",
                window_frames as f64 / secs,
                l.p50,
                l.p99,
                summary.frames,
                summary.verified,
                summary.corrupt,
                s.torn,
                s.lapped,
                describe(producer),
            );
            window.clear();
            window_frames = 0;
            last_print = Instant::now();
        }
    }
    let s = reader.stats();
    summary.torn = s.torn;
    summary.lapped = s.lapped;
    summary.skipped = s.skipped;
    summary.invalid = s.corrupt;
    summary.resyncs = s.resyncs;
    summary.duration_s = start.elapsed().as_secs_f64();
    summary.fps = summary.frames as f64 / summary.duration_s.max(1e-9);
    summary.latency_us = latency.summary();
    Ok(summary)
}

/// Records the latency from the oldest capture in the frame (or the tick) to `received`.
fn record(
    all: &mut Latency,
    window: &mut Latency,
    cameras: &[camring_protocol::layout::CameraEntry],
    tick_ns: u64,
    received: u64,
) {
    let captured = cameras
        .iter()
        .filter(|c| !c.is_missing() && c.capture_ns != 0)
        .map(|c| c.capture_ns)
        .min()
        .unwrap_or(tick_ns);
    let ns = received.saturating_sub(captured);
    all.record_ns(ns);
    window.record_ns(ns);
}
