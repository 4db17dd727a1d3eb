//! `camring demo`: a synthetic 4-camera producer (a child process) and the WebSocket
//! bridge with the browser viewer (in this process). Prints the viewer's URL; Ctrl-C
//! stops both and leaves nothing in /dev/shm.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use camring_bridge::WsConfig;
use camring_protocol::control::DEFAULT_MAX_CLIENTS;
use clap::Args;

use crate::bridge::serve_ws;
use crate::signals::StopFlag;

/// Options of `camring demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Ring name (default: demo-PID, so that several demos can run at once).
    #[arg(long)]
    pub ring: Option<String>,
    /// Number of cameras.
    #[arg(long, default_value_t = 4)]
    pub cameras: u32,
    /// Image size.
    #[arg(long, default_value = "1280x720")]
    pub size: String,
    /// Group frame rate.
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Pixel format in the ring (jpeg: encoded once by the producer, forwarded as-is to
    /// clients at the default quality).
    #[arg(long, default_value = "jpeg")]
    pub format: String,
    /// Where the viewer is served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Require this token from every client.
    #[arg(long)]
    pub token: Option<String>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let stop = StopFlag::install()?;
    let ring = args
        .ring
        .clone()
        .unwrap_or_else(|| format!("demo-{}", std::process::id()));
    let exe = std::env::current_exe().context("finding the camring binary")?;
    let mut child = Command::new(exe)
        .args(["produce", "--ring", &ring, "-q"])
        .args(["--cameras", &args.cameras.to_string(), "--size", &args.size])
        .args(["--fps", &args.fps.to_string(), "--format", &args.format])
        .spawn()
        .context("starting the producer")?;
    eprintln!(
        "camring demo: producer (pid {}) writes ring {ring:?}; Ctrl-C stops everything",
        child.id()
    );
    let config = WsConfig {
        ring: ring.clone(),
        listen: args.listen,
        token: args.token.clone(),
        max_clients: DEFAULT_MAX_CLIENTS,
    };
    let served = serve_ws(config, &stop, args.duration);
    stop_producer(&mut child, &ring)?;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (the producer removes its ring), then SIGKILL and removal after 5 s.
fn stop_producer(child: &mut Child, ring: &str) -> anyhow::Result<()> {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    for _ in 0..50 {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = camring_shm::admin::remove(ring, true);
    Ok(())
}
