//! `camring produce`.

use std::cell::Cell;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use camring_producer::{SyntheticConfig, SyntheticProducer};
use camring_protocol::layout::CameraEntry;
use camring_protocol::PixelFormat;
use camring_shm::{Origin, Writer, MODE_GROUP};
use clap::Args;

use crate::signals::StopFlag;

/// Options of `camring produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Ring name (the segment is /dev/shm/camring-NAME).
    #[arg(long)]
    pub ring: String,
    /// Number of synthetic cameras.
    #[arg(long, default_value_t = 4)]
    pub cameras: u32,
    /// Image size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Group frame rate.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Pixel format written into the ring.
    #[arg(long, default_value = "rgb8")]
    pub format: PixelFormat,
    /// JPEG quality (with --format jpeg).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Number of slots in the ring.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// Let the owner's group read the ring (mode 0660 instead of 0600).
    #[arg(long)]
    pub group: bool,
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

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    Ok((w, h))
}

pub fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let stop = StopFlag::install()?;
    let config = SyntheticConfig {
        cameras: args.cameras,
        width: args.size.0,
        height: args.size.1,
        format: args.format,
        quality: args.quality,
        fps: args.fps,
    };
    let mut ring = config.ring_config(args.slots)?;
    if args.group {
        ring.mode = MODE_GROUP;
    }
    let mut source = SyntheticProducer::new(config)?;
    let mut writer = Writer::create(&args.ring, &ring)?;
    let sb = *writer.layout();
    if !args.quiet {
        let how = match writer.origin() {
            Origin::Created => "created",
            Origin::TookOver => "took over (dead producer's ring, frame numbers continue)",
            Origin::Replaced => "replaced (dead producer's ring had another layout)",
        };
        eprintln!(
            "camring produce: ring {:?} {how}: {} x {}x{} {} at {} fps, {} slots of {} KiB, generation {}, pid {}",
            args.ring,
            args.cameras,
            args.size.0,
            args.size.1,
            args.format,
            args.fps,
            sb.slot_count,
            sb.slot_size / 1024,
            writer.generation(),
            std::process::id()
        );
    }
    let start = Instant::now();
    let end = args
        .duration
        .map(|d| start + Duration::from_secs_f64(d.max(0.0)));
    let last = Cell::new(Instant::now());
    let frames = Cell::new(0u64);
    let quiet = args.quiet;
    source
        .run(
            &mut writer,
            || {
                stop.raised()
                    || end.is_some_and(|e| Instant::now() >= e)
                    || args.stall_after.is_some_and(|n| frames.get() >= n)
            },
            |n| {
                frames.set(frames.get() + 1);
                if !quiet && last.get().elapsed() >= Duration::from_secs(5) {
                    let secs = start.elapsed().as_secs_f64();
                    eprintln!(
                        "camring produce: frame {n}, {:.1} fps average",
                        frames.get() as f64 / secs
                    );
                    last.set(Instant::now());
                }
            },
        )
        .context("producing")?;
    if args.stall_after.is_some() && !stop.raised() {
        stall_mid_write(&mut writer, &stop);
    }
    let frames = frames.get();
    drop(writer);
    if !args.quiet {
        eprintln!("camring produce: stopped after {frames} frames; ring removed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts a frame, writes half of its first camera, and waits (for SIGKILL, in tests).
fn stall_mid_write(writer: &mut Writer, stop: &StopFlag) {
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
    while !stop.raised() {
        std::thread::sleep(Duration::from_millis(50));
    }
}
