//! `camring demo`: a synthetic 4-camera producer (a child process) and a reader showing
//! live stats in this process. Ctrl-C stops both and leaves nothing in /dev/shm.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::read::{self, ModeArg, ReadArgs};
use crate::signals::StopFlag;

/// Options of `camring demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Ring name.
    #[arg(long, default_value = "demo")]
    pub ring: String,
    /// Number of cameras.
    #[arg(long, default_value_t = 4)]
    pub cameras: u32,
    /// Image size.
    #[arg(long, default_value = "640x480")]
    pub size: String,
    /// Group frame rate.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Pixel format.
    #[arg(long, default_value = "rgb8")]
    pub format: String,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let stop = StopFlag::install()?;
    let exe = std::env::current_exe().context("finding the camring binary")?;
    let mut child = Command::new(exe)
        .args([
            "produce",
            "--ring",
            &args.ring,
            "--cameras",
            &args.cameras.to_string(),
        ])
        .args([
            "--size",
            &args.size,
            "--fps",
            &args.fps.to_string(),
            "--format",
            &args.format,
        ])
        .spawn()
        .context("starting the producer")?;
    let read_args = ReadArgs {
        ring: args.ring.clone(),
        mode: ModeArg::Latest,
        verify: true,
        duration: args.duration,
        json: false,
        wait: 10.0,
        spin_us: 0,
        copy: false,
        delay_ms: 0,
        quiet: false,
    };
    eprintln!(
        "camring demo: reading ring {:?}; Ctrl-C stops everything",
        args.ring
    );
    let result = read::consume(&read_args, &stop);
    // Stop the producer: it removes its ring on SIGTERM.
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    for _ in 0..50 {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait()?.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        let _ = camring_shm::admin::remove(&args.ring, true);
    }
    let summary = result?;
    eprintln!(
        "camring demo: {} frames, {} verified, {} corrupt, latency p50 {:.0} µs p99 {:.0} µs",
        summary.frames,
        summary.verified,
        summary.corrupt,
        summary.latency_us.p50,
        summary.latency_us.p99
    );
    Ok(if summary.corrupt > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
