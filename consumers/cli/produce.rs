//! `camring produce`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use camring_producer::config::{self, DEFAULT_FPS, DEFAULT_QUALITY, DEFAULT_SLOTS};
use camring_producer::frame::Stop;
use camring_producer::group::{CameraConfig, Group, GroupConfig, DEFAULT_HOLD};
use camring_producer::output::{RingFormat, RingSpec};
use camring_producer::source::{parse_size, SourceSpec, SyntheticSpec};
use camring_protocol::layout::CameraEntry;
use camring_shm::{Origin, Writer, MODE_GROUP, MODE_OWNER};
use clap::Args;

use crate::signals::StopFlag;

/// Options of `camring produce`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = SOURCES_HELP)]
pub struct ProduceArgs {
    /// Ring name (the segment is /dev/shm/camring-NAME). Required unless --config.
    #[arg(long, required_unless_present = "config")]
    pub ring: Option<String>,
    /// A camera of the group, in order; repeat for each camera:
    /// synthetic[:WxH[@FPS]], camera:INDEX_OR_NAME[:WxH[@FPS]], http://... or https://...
    #[arg(long = "source", value_name = "SOURCE", conflicts_with = "cameras")]
    pub sources: Vec<SourceSpec>,
    /// Without --source: this many synthetic cameras.
    #[arg(long)]
    pub cameras: Option<u32>,
    /// Without --source: the synthetic cameras' size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size, conflicts_with = "sources")]
    pub size: (u32, u32),
    /// The group's frame rate (one multi-frame per tick).
    #[arg(long, default_value_t = DEFAULT_FPS)]
    pub fps: f64,
    /// What the ring stores: native (each camera as captured), jpeg (raw cameras
    /// encoded), or a raw format rgb8|bgr8|gray8|yuyv|nv12 (JPEG cameras decoded).
    #[arg(long, default_value = "native")]
    pub format: RingFormat,
    /// JPEG quality when encoding.
    #[arg(long, default_value_t = DEFAULT_QUALITY, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Number of slots in the ring.
    #[arg(long, default_value_t = DEFAULT_SLOTS)]
    pub slots: u32,
    /// Let the owner's group read the ring (mode 0660 instead of 0600).
    #[arg(long)]
    pub group: bool,
    /// Read the group (cameras, rates, rings to write) from a TOML file instead of the
    /// flags above; see producer/camring.example.toml.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ring", "sources", "cameras", "format", "quality", "slots", "group", "fps"])]
    pub config: Option<PathBuf>,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Testing aid: after this many frames, start writing a frame and stall in the middle
    /// of it (until killed), leaving its slot marked as being written.
    #[arg(long, hide = true)]
    pub stall_after: Option<u64>,
}

const SOURCES_HELP: &str = "\
Sources (one --source per camera, in the group's order):
  synthetic[:WxH[@FPS]]             the test pattern; its pixels carry the camera and
                                    frame number, so `camring read --verify` checks it
  camera:INDEX_OR_NAME[:WxH[@FPS]]  a V4L2 camera (build with --features camera; list
                                    them with `camring cameras`); MJPEG passes through
  http://... | https://...          MJPEG over HTTP (ESP32-CAM, mjpg-streamer, IP cameras)

Each camera runs on its own thread at its own pace. Every tick of the group clock
(--fps) takes each camera's newest image: fresh, repeated (nothing new yet) or missing
(nothing for a second) - a slow or dead camera never slows the group.

Examples:
  camring produce --ring cams --cameras 4 --size 1280x720 --format jpeg
  camring produce --ring mixed --source synthetic:640x480@30 \\
      --source http://192.168.1.50:81/stream --fps 30
  camring produce --config producer/camring.example.toml";

impl ProduceArgs {
    /// The group these flags describe.
    fn group(&self) -> anyhow::Result<GroupConfig> {
        if let Some(path) = &self.config {
            return Ok(config::load(path)?);
        }
        let sources = if self.sources.is_empty() {
            let n = self.cameras.unwrap_or(4);
            anyhow::ensure!((1..=16).contains(&n), "--cameras must be 1..=16");
            let spec = SyntheticSpec {
                width: self.size.0,
                height: self.size.1,
                ..SyntheticSpec::default()
            };
            vec![SourceSpec::Synthetic(spec); n as usize]
        } else {
            self.sources.clone()
        };
        let ring = self.ring.clone().context("--ring is required")?;
        Ok(GroupConfig {
            fps: self.fps,
            hold: DEFAULT_HOLD,
            cameras: sources
                .into_iter()
                .enumerate()
                .map(|(i, s)| CameraConfig::new(i, s))
                .collect(),
            rings: vec![RingSpec {
                name: ring,
                format: self.format,
                quality: self.quality,
                slots: self.slots,
                mode: if self.group { MODE_GROUP } else { MODE_OWNER },
            }],
        })
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let stop_flag = StopFlag::install()?;
    let config = args.group()?;
    let mut group = match &args.config {
        Some(path) => Group::start(config).with_context(|| format!("{}", path.display()))?,
        None => Group::start(config)?,
    };
    if !args.quiet {
        for out in group.outputs() {
            let w = out.writer();
            let sb = w.layout();
            let how = match w.origin() {
                Origin::Created => "created",
                Origin::TookOver => "took over (dead producer's ring, frame numbers continue)",
                Origin::Replaced => "replaced (dead producer's ring had another layout)",
            };
            eprintln!(
                "camring produce: ring {:?} {how}: {} cameras, format {}, {} slots of {} KiB, generation {}, pid {}",
                w.name(),
                sb.camera_count,
                out.spec().format,
                sb.slot_count,
                sb.slot_size / 1024,
                w.generation(),
                std::process::id()
            );
        }
        for (i, c) in group.config().cameras.iter().enumerate() {
            eprintln!("camring produce: camera {i} {:?}: {}", c.name, c.source);
        }
        eprintln!("camring produce: group at {} fps", group.config().fps);
    }

    // The source threads sleep on `stop`; the signal handler only raises a flag, so a
    // watcher turns the flag into a stop.
    let stop = Stop::new();
    let watcher = {
        let stop = stop.clone();
        let flag = stop_flag.clone();
        std::thread::spawn(move || {
            while !flag.raised() && !stop.sleep(Duration::from_millis(50)) {}
            stop.stop();
        })
    };
    let start = Instant::now();
    let end = args
        .duration
        .map(|d| start + Duration::from_secs_f64(d.max(0.0)));
    let mut last = Instant::now();
    let mut frames = 0u64;
    let result = loop {
        if end.is_some_and(|e| Instant::now() >= e) || args.stall_after.is_some_and(|n| frames >= n)
        {
            break Ok(());
        }
        match group.tick(&stop) {
            Ok(Some(_)) => frames += 1,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
        if !args.quiet && last.elapsed() >= Duration::from_secs(5) {
            print_status(&group, frames, start.elapsed());
            last = Instant::now();
        }
    };
    if args.stall_after.is_some() && !stop.is_stopped() {
        stall_mid_write(group.writer_mut(0), &stop);
    }
    stop.stop();
    let _ = watcher.join();
    result.context("producing")?;
    drop(group);
    if !args.quiet {
        eprintln!("camring produce: stopped after {frames} frames; rings removed");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(group: &Group, frames: u64, elapsed: Duration) {
    let cams: Vec<String> = group
        .camera_stats()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}f/{}r/{}m{}",
                c.name,
                c.state,
                c.picks.fresh,
                c.picks.repeated,
                c.picks.missing,
                if c.feed.corrupt > 0 {
                    format!(" {} corrupt", c.feed.corrupt)
                } else {
                    String::new()
                }
            )
        })
        .collect();
    let dropped: Vec<String> = group
        .ring_stats()
        .iter()
        .filter(|(_, s)| s.dropped > 0)
        .map(|(name, s)| format!("; ring {name:?}: {} images could not be stored", s.dropped))
        .collect();
    eprintln!(
        "camring produce: {frames} frames, {:.1} fps, {} late ticks; {}{}",
        frames as f64 / elapsed.as_secs_f64(),
        group.missed_ticks(),
        cams.join("; "),
        dropped.concat()
    );
}

/// Starts a frame, writes half of its first camera, and waits (for SIGKILL, in tests).
fn stall_mid_write(writer: &mut Writer, stop: &Stop) {
    let cam = writer.layout().camera_layouts()[0];
    let mut loan = writer.loan();
    if let Ok(buf) = loan.push_camera(CameraEntry::default(), cam.max_len as usize) {
        let half = buf.len() / 2;
        buf[..half].fill(0xAB);
    }
    eprintln!(
        "camring produce: stalled in the middle of frame {}",
        loan.frame()
    );
    while !stop.sleep(Duration::from_millis(50)) {}
}
